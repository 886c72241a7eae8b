"""Which adapter decodes a model: our own models through their own state (`core.models.lm.NativeLM`),
transformers' GPT-2 through the lean forward pass (`core.models.lean_gpt2`) unless transformers' own forward
is asked for, any other transformers model through `core.models.lm.HFCausalLM`.

A module of its own because the choice needs both `core.models.lm` and the lean forward, which itself builds
on `core.models.lm`'s `ModelFacts`.
"""

from __future__ import annotations

import torch

from core.errors import InvalidSetting
from core.models import lean_gpt2
from core.models.lm import HFCausalLM, NativeLM, StepModel, forward_choice


def engine_for(model: torch.nn.Module, forward: str | None = None) -> str:
    """Which adapter decodes `model` when `forward` is asked for: "native" (our own models, through their
    own state), "lean" (transformers' GPT-2, `core.models.lean_gpt2`, unless transformers' own forward is
    asked for) or "transformers" (any other transformers model, through its forward and KV cache)."""
    if all(hasattr(model, name) for name in ("prefill", "step", "select_rows")):
        return "native"
    chosen = forward_choice(forward)
    if chosen != "transformers":
        why_not = lean_gpt2.unsupported(model)
        if why_not is None:
            return "lean"
        if chosen == "lean":
            raise InvalidSetting(f"forward=lean cannot decode this model: {why_not}; use forward=auto or transformers.")
    return "transformers"


def adapter_for(model: torch.nn.Module, forward: str | None = None) -> StepModel:
    """The engine's view of `model` (`engine_for` says which)."""
    engine = engine_for(model, forward)
    if engine == "native":
        return NativeLM(model)
    if engine == "lean":
        return lean_gpt2.LeanGPT2(model)
    return HFCausalLM(model)
