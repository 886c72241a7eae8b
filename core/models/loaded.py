"""Every model this process uses, loaded once and shared: the app's model, a Compare's other models, an
amateur or a draft a strategy names.

A request may use more than one model (contrastive decoding's amateur, speculative decoding's draft,
model against model on Compare). Each is loaded here once per process, by what it resolves to (the
registry's source, the device, the dtype), and handed out as the same `LoadedModel` to every caller: the
weights are frozen (`requires_grad_(False)`, `eval()`) and nothing ever changes them, so sharing is safe
between sessions and threads. Two threads asking for the same model at once wait for one load.

At most `max_loaded()` models are kept (`PLAYGROUND_MAX_MODELS`, 4 by default), least recently asked
for dropped first: a visitor cycling through every GPT-2 size must not keep them all in memory. A
dropped model is freed once nobody holds it; one still held by a caller is loaded again if asked for,
so keep the bound above the models one request uses at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.models import registry
from core.models.forwards import adapter_for, engine_for
from core.models.lm import StepModel

DEFAULT_MAX_LOADED = 4


def max_loaded() -> int:
    try:
        value = int(os.environ.get("PLAYGROUND_MAX_MODELS", "") or DEFAULT_MAX_LOADED)
    except ValueError:
        value = DEFAULT_MAX_LOADED
    return max(1, value)


@dataclass(eq=False)  # compared and hashed by identity: one object per loaded model
class LoadedModel:
    """One model in memory: its weights, the engine's view of it and its tokenizer. Never changed."""
    name: str  # as asked for (a registry name, or a folder on the command line)
    source: registry.ModelSource
    model: Any  # the torch module (anatomy, attention, generate() in tests)
    lm: StepModel
    tokenizer: Any
    parameters: int = field(init=False)
    # what the floors above build on this model once (a Playground per name), kept exactly as long as it is
    built: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.parameters = sum(p.numel() for p in self.model.parameters())
        self.built[("lm", self.lm.engine)] = self.lm

    def adapter(self, forward: str | None = None) -> StepModel:
        """The engine's view of the model through `forward` (`core.models.lm.FORWARDS`; None:
        $PLAYGROUND_FORWARD or auto): `lm` when it is that one, else built once and kept (the lean one
        holds a transposed copy of the head, so it is never built twice)."""
        key = ("lm", engine_for(self.model, forward))
        if key not in self.built:
            self.built.setdefault(key, adapter_for(self.model, forward))
        return self.built[key]


def tokenizer_digest(tokenizer) -> str:
    """What the tokenizer maps to which id, as a digest: two models whose digests are equal read and write
    the same token ids (one prompt's ids for both, an amateur's or a draft's logits over the same tokens)."""
    vocab = sorted(tokenizer.get_vocab().items())
    special = sorted((k, str(v)) for k, v in tokenizer.special_tokens_map.items())
    return hashlib.sha256(json.dumps([vocab, special], ensure_ascii=False).encode()).hexdigest()[:16]


_LOADED: OrderedDict[tuple, LoadedModel] = OrderedDict()
_LOCK = threading.Lock()
_LOADING: dict[tuple, threading.Lock] = {}  # one lock per model being loaded, so two loads of it never overlap


def load(name: str, *, device: str | None = None, allow_paths: bool = False) -> LoadedModel:
    """The model `name` on `device` (None: CUDA when present), loaded on first use and shared afterwards.
    One sentence (`ModelUnavailable`) when it cannot be had."""
    source = registry.resolve(name, allow_paths=allow_paths)
    torch_device, dtype = registry.pick_device(device)
    key = (source.kind, source.location, _stamp(source), str(torch_device), str(dtype))
    with _LOCK:
        if key in _LOADED:
            _LOADED.move_to_end(key)
            return _LOADED[key]
        loading = _LOADING.setdefault(key, threading.Lock())
    with loading:
        with _LOCK:
            if key in _LOADED:  # another thread loaded it while this one waited
                _LOADED.move_to_end(key)
                return _LOADED[key]
        try:
            model = registry.load_hf_model(source, dtype).to(torch_device).eval()
            model.requires_grad_(False)  # shared by every session: nothing may train or change it
            folder = source.location if source.kind != "hub" else None
            loaded = LoadedModel(name, source, model, adapter_for(model), registry.load_tokenizer(folder))
        except BaseException:
            with _LOCK:
                _LOADING.pop(key, None)
            raise
        with _LOCK:  # stored and its lock dropped in one step: a thread arriving now finds it stored
            _LOADED[key] = loaded
            _LOADING.pop(key, None)
            while len(_LOADED) > max_loaded():
                _LOADED.popitem(last=False)
        return loaded


def _stamp(source: registry.ModelSource) -> tuple:
    """A folder's weight files as they are now (names, sizes, times): a folder written again since (a model
    retrained in this process) is loaded again, not served from before. A hub snapshot never changes."""
    if source.kind == "hub":
        return ()
    folder = Path(source.location)
    return tuple((name, (folder / name).stat().st_size, (folder / name).stat().st_mtime_ns)
                 for name in registry.WEIGHT_FILES if (folder / name).is_file())


def loaded_now() -> list[LoadedModel]:
    """The models this process holds, least recently asked for first."""
    with _LOCK:
        return list(_LOADED.values())
