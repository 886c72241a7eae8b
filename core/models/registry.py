"""Where models come from: shipped folders in assets/, local folders, and the GPT-2 family on the hub.

Loading is safe: transformers' loaders with `trust_remote_code=False` (safetensors, or pickles with
`weights_only=True`), and names are resolved against this registry, never executed. The hub is tried
only after the local cache misses, and only when it answers within seconds: offline, the user gets one
sentence on how to get the weights instead of a stack of retries.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
import hashlib
import json
import re
from functools import lru_cache
from urllib.parse import urlparse

from core.errors import ModelUnavailable

ASSETS = Path(__file__).resolve().parents[2] / "assets"
SHIPPED_MODELS = ASSETS / "models"
GPT2_TOKENIZER = ASSETS / "tokenizers" / "gpt2"

# Short names the app offers, and the hub repositories they stand for.
GPT2_FAMILY = {
    "gpt2": "openai-community/gpt2",
    "distilgpt2": "distilbert/distilgpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
}
HUB_TIMEOUT_S = 3.0
DEFAULT_MODEL = "shakespeare-gpt2"  # the embedded default, once assets/models ships it


@dataclass(frozen=True)
class ModelSource:
    name: str  # what the user chose
    kind: str  # "shipped", "local" or "hub"
    location: str  # folder path, or hub repository id


def model_dirs() -> list[Path]:
    """Folders whose sub-folders are offered as models: assets/models, plus PLAYGROUND_MODEL_DIRS."""
    extra = [Path(p) for p in os.environ.get("PLAYGROUND_MODEL_DIRS", "").split(os.pathsep) if p]
    return [SHIPPED_MODELS, *extra]


def shipped_models() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in model_dirs():
        if root.is_dir():
            for sub in sorted(root.iterdir()):
                if (sub / "config.json").is_file():
                    found.setdefault(sub.name, sub)
    return found


def available_models() -> list[str]:
    """Every name the app may offer: configured folders first, then the GPT-2 family."""
    return [*shipped_models(), *GPT2_FAMILY]


def hub_cache_dir() -> Path:
    """Where huggingface_hub keeps downloads (its own environment variables, in its order)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def is_cached(repo_id: str) -> bool:
    """Are a hub model's config and weights already downloaded? (A look at the cache; no network.)"""
    snapshots = hub_cache_dir() / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    if not snapshots.is_dir():
        return False
    return any((snap / "config.json").is_file() and any((snap / w).exists() for w in WEIGHT_FILES)
               for snap in snapshots.iterdir())


def model_statuses() -> dict[str, str]:
    """Each offered name with where it would load from, so nothing looks available that is not."""
    statuses = {name: f"ready ({folder})" for name, folder in shipped_models().items()}
    for name, repo in GPT2_FAMILY.items():
        statuses[name] = ("ready (Hugging Face cache)" if is_cached(repo)
                          else f"not on this machine: `python -m core download {name}` with internet")
    return statuses


def default_model() -> str:
    """The embedded default if shipped, else the first configured folder, else GPT-2."""
    shipped = shipped_models()
    if DEFAULT_MODEL in shipped:
        return DEFAULT_MODEL
    return next(iter(shipped), "gpt2")


def resolve(name: str, *, allow_paths: bool = False) -> ModelSource:
    """Map a user's model name to where it is loaded from; unknown names get one sentence."""
    name = (name or "").strip()
    shipped = shipped_models()
    if name in shipped:
        return ModelSource(name, "shipped", str(shipped[name]))
    if name in GPT2_FAMILY:
        return ModelSource(name, "hub", GPT2_FAMILY[name])
    if name in GPT2_FAMILY.values():
        return ModelSource(name, "hub", name)
    if allow_paths and Path(name).expanduser().is_dir():
        folder = Path(name).expanduser().resolve()
        if not (folder / "config.json").is_file():
            raise ModelUnavailable(f"The folder {folder} has no config.json, so it is not a saved model.")
        return ModelSource(name, "local", str(folder))
    choices = ", ".join(available_models())
    where = " or a folder saved with save_pretrained" if allow_paths else ""
    raise ModelUnavailable(f"Unknown model {name!r}: choose one of {choices}{where}.")


def public_name(name: str) -> str:
    """How a model is named in anything a run exports: a shipped or hub name as it is, a folder by its own
    name. A folder's path would tell whoever reads the export this machine's folders and its user, and
    would not exist on their machine anyway."""
    name = (name or "").strip()
    if name in shipped_models() or name in GPT2_FAMILY or name in GPT2_FAMILY.values():
        return name
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve().name or "model"
    return path.name if any(sep in name for sep in ("/", os.sep)) else name


def pick_device(device: str | None = None):
    """CUDA when present (bf16 where the GPU supports it, else fp16), else CPU in fp32."""
    import torch

    if device not in (None, "auto", "cpu") and not re.fullmatch(r"cuda(:\d{1,2})?", str(device)):
        raise ModelUnavailable(f"device must be auto, cpu, cuda or cuda:N, got {device!r}.")
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelUnavailable("CUDA was asked for but no CUDA GPU is visible; use --device cpu.")
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.device(device), dtype
    return torch.device("cpu"), torch.float32


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """Can we open a TCP connection to the hub within `timeout` seconds? (DNS included)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    answer: list[bool] = []

    def probe():
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                answer.append(True)
        except OSError:
            answer.append(False)

    # a thread, because name resolution ignores socket timeouts and can hang on a closed network
    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(answer and answer[0])


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def check_folder(folder: Path) -> None:
    """Refuse, in one sentence, a folder that is no loadable model before transformers sees it."""
    config_path = folder / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelUnavailable(f"The folder {folder} has an unreadable config.json ({type(exc).__name__}), "
                               "so it is not a saved model.") from None
    if not isinstance(config, dict):
        raise ModelUnavailable(f"The folder {folder} has a config.json that is not a JSON object.")
    if "auto_map" in config:
        raise ModelUnavailable(f"The folder {folder} asks for custom code (auto_map in config.json); the "
                               "playground never runs code from a model folder.")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise ModelUnavailable(f"The folder {folder} has no weights (model.safetensors or pytorch_model.bin).")


def _from_pretrained(location: str, dtype, **kwargs):
    from transformers import AutoModelForCausalLM

    import core.models.architectures  # noqa: F401 - registers our own architectures with the Auto classes
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # keeps the command line's stderr to what the user needs

    hf_logging.set_verbosity_error()  # no warning lines before our one-line errors
    try:
        return AutoModelForCausalLM.from_pretrained(location, dtype=dtype, trust_remote_code=False, **kwargs)
    except OSError:
        raise  # "not found": the callers decide (the hub path tries the network next)
    except Exception as exc:  # a refused pickle, a malformed config or weights: one sentence, no traceback
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise ModelUnavailable(f"The model at {location} could not be loaded safely ({type(exc).__name__}"
                               f"{': ' + first if first else ''}).") from None


def load_hf_model(source: ModelSource, dtype):
    if source.kind != "hub":
        check_folder(Path(source.location))
        try:
            return _from_pretrained(source.location, dtype, local_files_only=True)
        except OSError as exc:
            raise ModelUnavailable(f"The model at {source.location} could not be read ({exc.__class__.__name__}).") from None
    try:
        return _from_pretrained(source.location, dtype, local_files_only=True)
    except OSError:
        pass  # not in the local cache: try the hub below
    if not hub_reachable():
        raise ModelUnavailable(
            f"The weights of {source.name} are not on this machine and the Hugging Face hub cannot be "
            f"reached; on a machine with internet run `python -m core download {source.name}` (or copy a "
            "folder saved with save_pretrained here and pass its path).")
    return _from_pretrained(source.location, dtype)


def tokenizer_folder(folder: str | None) -> str:
    """The folder's own tokenizer when it has one, else the shipped GPT-2 tokenizer."""
    if folder and any((Path(folder) / f).is_file() for f in ("tokenizer.json", "vocab.json", "tokenizer_config.json")):
        return str(folder)
    return str(GPT2_TOKENIZER)


def load_tokenizer(folder: str | None):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_folder(folder), local_files_only=True)


def download(name: str) -> str:
    """Fetch a GPT-2 family model into the Hugging Face cache (needs internet)."""
    source = resolve(name)
    if source.kind != "hub":
        return f"{name} is stored locally at {source.location}; nothing to download."
    if not hub_reachable():
        raise ModelUnavailable("The Hugging Face hub cannot be reached from this machine, so nothing was downloaded.")
    import torch

    _from_pretrained(source.location, torch.float32)
    return f"{name} is in the Hugging Face cache now."


def model_revision(name: str) -> str:
    """A hub id's cached snapshot, or the sha256 of a local model's weights (what exactly was loaded)."""
    try:
        source = resolve(name, allow_paths=True)
    except ModelUnavailable:
        return "unknown"
    if source.kind == "hub":
        snapshots = hub_cache_dir() / f"models--{source.location.replace('/', '--')}" / "snapshots"
        found = sorted(p.name for p in snapshots.iterdir()) if snapshots.is_dir() else []
        return f"hub:{found[-1]}" if found else "hub:main"
    weights = sorted(Path(source.location).glob("*.safetensors")) or sorted(Path(source.location).glob("*.bin"))
    if not weights:
        return "unknown"
    return "sha256:" + _digest(tuple((str(w), w.stat().st_size, w.stat().st_mtime_ns) for w in weights))


@lru_cache(maxsize=16)
def _digest(files: tuple[tuple[str, int, int], ...]) -> str:
    # keyed by path, size and mtime: hashing tens of MB once per process, not on every page rerun
    digest = hashlib.sha256()
    for path, _, _ in files:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]
