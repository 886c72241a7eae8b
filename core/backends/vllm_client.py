"""A vLLM server's OpenAI-compatible HTTP API, as `core.backends.vllm` needs it: bounded requests, and
one sentence for every way they fail.

Every request has a timeout and a cap on the size of its answer, and an answer is input from outside:
whatever its shape, a caller gets a `PlaygroundError` with one sentence (`as_sentence`). An API key, if
any, comes from the `VLLM_API_KEY` environment variable only.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlparse

from core.errors import InvalidSetting, PlaygroundError

CONNECT_TIMEOUT_S = 5.0  # a server that does not accept a connection in 5 s is down or unreachable
SECONDS_PER_TOKEN = 2.0  # a generous bound on the server's time per generated token, under load
MAX_RESPONSE_BYTES = 256 * 2**20  # a whole-vocabulary answer: about 0.3 MB per step for 8k tokens
MAX_NAME_CHARS = 100  # of a served model's name, as the server gives it
MAX_CONTEXT = 1 << 20  # a context length beyond any model's


@dataclass(frozen=True)
class ServerModel:
    name: str
    max_model_len: int


class VLLMServer:
    """A vLLM server's HTTP API: bounded requests, and one sentence for every way they fail."""

    def __init__(self, url: str, *, api_key: str | None = None):
        self.url = check_server_url(url)
        self.api_key = api_key if api_key is not None else os.environ.get("VLLM_API_KEY") or None

    def _request(self, path: str, body: dict | None, timeout: float):
        request = urllib.request.Request(self.url + path, method="GET" if body is None else "POST",
                                         data=None if body is None else json.dumps(body).encode())
        request.add_header("Content-Type", "application/json")
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise PlaygroundError(self._refusal(exc)) from None
        except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise PlaygroundError(f"The vLLM server at {self.url} did not answer within {timeout:.0f} s; it may "
                                      "be overloaded or still starting.") from None
            raise PlaygroundError(f"The vLLM server at {self.url} does not answer ({_reason(reason)}); start it, "
                                  "or check the address.") from None
        if len(raw) > MAX_RESPONSE_BYTES:
            raise PlaygroundError(f"The vLLM server's answer is over {MAX_RESPONSE_BYTES // 2**20} MiB; ask for "
                                  "fewer tokens or turn the whole vocabulary off.")
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise PlaygroundError(f"The server at {self.url} did not answer with JSON; is it a vLLM server?") from None

    def _refusal(self, exc: urllib.error.HTTPError) -> str:
        if exc.code == 503:
            return f"The vLLM server at {self.url} is starting or overloaded (HTTP 503); try again shortly."
        if exc.code in (401, 403):
            return f"The vLLM server at {self.url} refused the key (HTTP {exc.code}); set VLLM_API_KEY."
        try:
            detail = json.loads(exc.read(64 * 1024)).get("error", {}).get("message", "")
        except (ValueError, AttributeError, OSError):
            detail = ""
        detail = " ".join(str(detail).split())[:300]
        return f"The vLLM server refused the request (HTTP {exc.code}){': ' + detail if detail else ''}."

    def models(self) -> list[ServerModel]:
        data = self._request("/v1/models", None, CONNECT_TIMEOUT_S + 5)
        try:
            # names and lengths are a stranger's values: shown only as plain text, cut short, lengths bounded
            return [ServerModel(str(m["id"])[:MAX_NAME_CHARS], min(int(m.get("max_model_len") or 0), MAX_CONTEXT))
                    for m in data["data"]]
        except (KeyError, TypeError, ValueError, OverflowError):
            raise PlaygroundError(f"The server at {self.url} did not list its models; is it a vLLM server?") from None

    def version(self) -> str:
        try:
            return str(self._request("/version", None, CONNECT_TIMEOUT_S + 5).get("version", "?"))
        except (PlaygroundError, AttributeError):
            return "?"

    def complete(self, body: dict, max_tokens: int) -> dict:
        return self._request("/v1/completions", body, CONNECT_TIMEOUT_S + 30 + SECONDS_PER_TOKEN * max_tokens)


def check_server_url(url: str) -> str:
    """An http(s) address with a host and nothing else (no credentials, query or fragment)."""
    text = (url or "").strip().rstrip("/")
    parsed = urlparse(text)
    try:
        port_ok = parsed.port is None or 0 < parsed.port < 65536
    except ValueError:
        port_ok = False
    if (parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.username or parsed.password
            or parsed.query or parsed.fragment or not port_ok or len(text) > 300 or any(c.isspace() for c in text)):
        raise InvalidSetting("The vLLM server address must look like http://host:port (no user, password or "
                             "query), for example http://127.0.0.1:8000.")
    return text


def _reason(reason) -> str:
    text = str(getattr(reason, "strerror", None) or reason)
    return " ".join(text.split())[:120] or "no answer"


# answers ---------------------------------------------------------------------------------------------
def choices(data) -> list[dict]:
    found = data.get("choices") if isinstance(data, dict) else None
    if not found:
        raise PlaygroundError("The vLLM server's answer has no choices; is it a vLLM server?")
    return found


def token_id(key: str) -> int:
    """'token_id:123' (return_tokens_as_token_ids) -> 123: keyed by id, tokens that decode alike stay apart."""
    try:
        return int(str(key).rpartition(":")[2])
    except ValueError:
        raise PlaygroundError("The vLLM server named tokens by text; it must accept return_tokens_as_token_ids.") from None


class Malformed(Exception):
    """An answer that parses but holds what vLLM never sends (a token id outside the vocabulary)."""


def as_sentence(call):
    """A server's answer is input from outside: whatever shape it has, a caller gets one sentence."""
    def checked(*args, **kwargs):
        try:
            return call(*args, **kwargs)
        except PlaygroundError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError, Malformed) as exc:
            raise PlaygroundError(f"The vLLM server's answer is not what vLLM sends ({type(exc).__name__}); check "
                                  "that the address is a vLLM server serving this model.") from None
    return checked
