"""Where the model runs. `local` (the default): in this process, through our own engine, with the whole
trace. `vllm`: on a vLLM server, through its OpenAI-compatible API (`core.backends.vllm`), with what
the server returns and a sentence for everything it cannot give. Both are a `Playground` to their
callers, so the pages and the command line do not change."""

from __future__ import annotations

import argparse

from core.errors import InvalidSetting

BACKENDS = ("local", "vllm")


def add_backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default="local", choices=BACKENDS,
                   help="local: our engine in this process (the whole trace); vllm: a vLLM server (--server)")
    p.add_argument("--server", default=None, help="the vLLM server's address, e.g. http://127.0.0.1:8000")
    p.add_argument("--full-vocabulary", action="store_true",
                   help="vllm: ask for the whole distribution at every step (entropy, curve, processed "
                        "probabilities; answers of about 0.3 MB a step for 8k tokens)")
    from core.models.lm import FORWARD_ENV, FORWARDS

    p.add_argument("--forward", default=None, choices=FORWARDS,
                   help=f"local: the forward pass that decodes; auto (default, or ${FORWARD_ENV}): the lean one for "
                        "GPT-2 (preallocated KV cache), transformers' for other models; transformers: always theirs")


def open_playground(name: str, *, backend: str = "local", server: str | None = None, device: str | None = None,
                    allow_paths: bool = False, full_vocabulary: bool = False, forward: str | None = None):
    """The model `name` on the chosen backend; one sentence when that cannot be had."""
    if backend == "vllm" and forward not in (None, "auto"):
        raise InvalidSetting("--forward chooses the forward pass in this process; a vLLM server runs its own.")
    if backend == "vllm":
        if not server:
            raise InvalidSetting("--backend vllm needs --server, the vLLM server's address "
                                 "(for example http://127.0.0.1:8000).")
        from core.backends.vllm import connect

        return connect(server, name, full_vocabulary=full_vocabulary)
    if backend != "local":
        raise InvalidSetting(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}.")
    if server:
        raise InvalidSetting("--server is for --backend vllm; the local backend runs the model in this process.")
    from core.playground import Playground

    return Playground.load(name, device=device, allow_paths=allow_paths, forward=forward)


def open_models(names: list[str], *, backend: str = "local", servers: list[str] = (), device: str | None = None,
                allow_paths: bool = False, full_vocabulary: bool = False, connect=None, forward: str | None = None):
    """Several models for a comparison, and the notices that say where each runs. Locally, each is loaded
    once per process. On vLLM, each model goes to the first of `servers` that serves it (a server serves
    one model, so a comparison wants one server per model), and a model no server serves runs in this
    process beside them, said in a notice. `connect(url, name)` opens a server's model (default
    `core.backends.vllm.connect`; the app passes its cached one)."""
    from core.errors import PlaygroundError

    if backend == "local":
        return [open_playground(n, device=device, allow_paths=allow_paths, forward=forward) for n in names], []
    if backend != "vllm":
        raise InvalidSetting(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}.")
    if not servers:
        raise InvalidSetting("--backend vllm needs --server, the vLLM server's address "
                             "(for example http://127.0.0.1:8000).")
    if connect is None:
        from core.backends.vllm import connect as vllm_connect

        def connect(url, name):
            return vllm_connect(url, name, full_vocabulary=full_vocabulary)
    opened, notices = [], []
    for name in names:
        reasons = []
        for url in servers:
            try:
                opened.append(connect(url, name))
                break
            except PlaygroundError as exc:
                reasons.append(str(exc))
        else:
            opened.append(open_playground(name, device=device, allow_paths=allow_paths, forward=forward))
            notices.append(f"{opened[-1].label} runs in this process beside the vLLM server(s): "
                           f"{reasons[0] if reasons else 'no server serves it'}")
    return opened, notices
