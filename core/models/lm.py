"""The narrow interface the engine decodes through, and its adapter for transformers' causal LMs.

The engine never calls a model directly: it prefills a prompt once, steps one token per row, and
reorders (or drops, or repeats) batch rows of the model's state. A transformer keeps a KV cache, an
RNN keeps its hidden state; both fit behind these three calls. Contrastive search also asks prefill and
step for the last layer's hidden states.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from transformers.cache_utils import DynamicLayer

from core.errors import InvalidSetting, quote

# Which forward pass decodes a transformers model: "auto" (the lean one where it runs the model, else
# transformers'), "lean" (refuse a model it cannot run) or "transformers" (transformers' own forward).
FORWARDS = ("auto", "lean", "transformers")
FORWARD_ENV = "PLAYGROUND_FORWARD"
# what each adapter's `engine` means, for the sidebar (a backend elsewhere names itself: vllm)
ENGINES = {
    "lean": "GPT-2 through our lean forward pass (one preallocated KV cache, scaled_dot_product_attention, the "
            f"head's weight kept transposed): transformers' tokens, faster. {FORWARD_ENV}=transformers (or "
            "--forward transformers) decodes with transformers' own forward instead.",
    "transformers": f"transformers' own forward pass and KV cache ({FORWARD_ENV}=auto picks the lean one for GPT-2).",
    "native": "the model's own prefill and step (the shipped Shakespeare Transformer and LSTM).",
    "vllm": "the vLLM server's own.",
}


@dataclass(frozen=True)
class ModelFacts:
    context_length: int  # positions the model can see, prompt and generated tokens together
    vocab_size: int  # width of the logits
    eos_token_ids: tuple[int, ...]  # generation stops when one of these is produced
    pad_token_id: int | None  # what finished rows are filled with, as generate() does
    state_bytes_per_token: int  # memory one row's state grows by per token (KV cache), for beam checks


class StepModel(Protocol):
    facts: ModelFacts
    device: torch.device
    engine: str  # which forward pass this is, as results and the sidebar name it

    def prefill(self, input_ids: torch.Tensor, *, hidden_states: bool = False) -> tuple:
        """input_ids (1, T) -> last-position logits (1, V) in float32, and the state; with
        hidden_states=True also the last layer's hidden states (1, T, H) (what contrastive search
        compares: a transformer's final hidden state, the LSTM's top-layer output)."""

    def step(self, input_ids: torch.Tensor, state: Any, *, hidden_states: bool = False) -> tuple:
        """input_ids (R, 1) -> logits (R, V) in float32, and the advanced state; with
        hidden_states=True also the last layer's hidden states (R, 1, H)."""

    def select_rows(self, state: Any, rows: torch.Tensor) -> Any:
        """Keep, repeat or reorder batch rows: new row i is old row rows[i]."""

    def all_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids (B, T) -> logits (B, T, V) in float32 at every position (for scoring)."""


def _eos_ids(config) -> tuple[int, ...]:
    eos = getattr(config, "eos_token_id", None)
    if eos is None:
        return ()
    return tuple(eos) if isinstance(eos, (list, tuple)) else (int(eos),)


def model_facts(model: torch.nn.Module) -> ModelFacts:
    """What the engine must know about a transformers-format model, read from its config."""
    config = model.config
    eos = tuple(i for i in _eos_ids(config) if 0 <= i < config.vocab_size)
    generation_config = getattr(model, "generation_config", None)
    pad = getattr(generation_config, "pad_token_id", None)
    dtype_bytes = next(model.parameters()).element_size()
    layers = getattr(config, "num_hidden_layers", getattr(config, "n_layer", 1))
    hidden = getattr(config, "hidden_size", getattr(config, "n_embd", 1))
    return ModelFacts(
        context_length=int(getattr(config, "max_position_embeddings", None) or config.n_positions),
        vocab_size=int(config.vocab_size),
        eos_token_ids=eos,
        # generate() pads finished rows with pad_token_id, falling back to the first EOS id
        pad_token_id=pad if pad is not None else (eos[0] if eos else None),
        state_bytes_per_token=2 * layers * hidden * dtype_bytes,
    )


def forward_choice(forward: str | None = None) -> str:
    """The forward pass asked for: `forward` if given, else $PLAYGROUND_FORWARD, else auto."""
    chosen = forward if forward is not None else os.environ.get(FORWARD_ENV, "auto")
    if chosen not in FORWARDS:
        raise InvalidSetting(f"forward must be one of {', '.join(FORWARDS)}, got {quote(chosen)} (from --forward or "
                             f"${FORWARD_ENV}); auto picks the lean forward for GPT-2.")
    return chosen


def row_moves(rows: list[int]) -> list[tuple[str, int, int | None]]:
    """The copies that make new row i hold old row rows[i] in place (a batch of the same size), each row
    copied once, straight from its source: ("copy", row, source) in an order that reads every source
    before it is overwritten; beams that swap places (a cycle) first set one row aside, ("save", row,
    None), and later copies read it as ("restore", row, saved row). Rows that stay are not touched.
    transformers' reorder_cache instead copies every row, moved or not, into a new cache (index_select);
    the gather-then-write this replaces copied each moved row twice."""
    pending = {row: source for row, source in enumerate(rows) if source != row}
    readers = Counter(pending.values())  # how many pending copies still read each row
    moves, aside = [], set()
    while pending:
        ready = [row for row in pending if not readers[row]]
        if not ready:  # every row left to write is still read: a cycle; set one of its rows aside
            row = next(iter(pending))
            moves.append(("save", row, None))
            aside.add(row)
            readers[row] = 0  # those that read it now read what was set aside
            ready = [row]
        for row in ready:
            source = pending.pop(row)
            moves.append(("restore" if source in aside else "copy", row, source))
            if source not in aside:
                readers[source] -= 1
    return moves


@torch.inference_mode()
def reorder_in_place(tensors: list[torch.Tensor], dim: int, rows: torch.Tensor) -> None:
    """Apply `row_moves(rows)` to every tensor's rows along `dim` (views of a cache, written in place)."""
    aside = {}
    for kind, row, source in row_moves(rows.tolist()):
        if kind == "save":
            aside[row] = [t.select(dim, row).clone() for t in tensors]
        for i, t in enumerate(tensors):
            if kind == "copy":
                t.select(dim, row).copy_(t.select(dim, source))
            elif kind == "restore":
                t.select(dim, row).copy_(aside[source][i])


class NativeLM:
    """A model of core.models.architectures: it keeps its state (KV cache or LSTM state) itself."""

    engine = "native"

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.device = next(model.parameters()).device
        self.facts = model_facts(model)

    @torch.inference_mode()
    def prefill(self, input_ids, *, hidden_states=False):
        return self.model.prefill(input_ids, hidden_states=hidden_states)

    @torch.inference_mode()
    def step(self, input_ids, state, *, hidden_states=False):
        return self.model.step(input_ids, state, hidden_states=hidden_states)

    def select_rows(self, state, rows):
        return self.model.select_rows(state, rows)

    @torch.inference_mode()
    def all_logits(self, input_ids):
        return self.model(input_ids).logits.float()


class HFCausalLM:
    """A transformers `*ForCausalLM` behind the engine's interface. Never mutates the model."""

    engine = "transformers"

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.device = next(model.parameters()).device
        self.facts = model_facts(model)

    @torch.inference_mode()
    def prefill(self, input_ids, *, hidden_states=False):
        out = self.model(input_ids=input_ids, use_cache=True, logits_to_keep=1, output_hidden_states=hidden_states)
        return _outputs(out, hidden_states)

    @torch.inference_mode()
    def step(self, input_ids, state, *, hidden_states=False):
        out = self.model(input_ids=input_ids, past_key_values=state, use_cache=True, logits_to_keep=1,
                         output_hidden_states=hidden_states)
        return _outputs(out, hidden_states)

    def select_rows(self, state, rows):
        layers = getattr(state, "layers", [])
        if layers and all(type(layer) is DynamicLayer for layer in layers) and layers[0].keys is not None \
                and rows.shape[0] == layers[0].keys.shape[0]:
            # Same batch size: copy only the rows whose source changed, each once (`row_moves`); reorder_cache
            # would copy every row of every layer, although greedy and sampling rows never move.
            reorder_in_place([t for layer in layers for t in (layer.keys, layer.values)], 0, rows)
            return state
        # growing, shrinking or other cache types: DynamicCache's own index_select per layer
        state.reorder_cache(rows)
        return state

    @torch.inference_mode()
    def all_logits(self, input_ids):
        return self.model(input_ids=input_ids, use_cache=False).logits.float()

    # assisted decoding: several tokens per pass, and the cache cut back to what was accepted
    @torch.inference_mode()
    def extend(self, input_ids, state, *, keep: int):
        """input_ids (1, N) after the `state`'s tokens (None: from the start) -> logits (1, keep, V) in float32
        at the last `keep` positions, and the state."""
        out = self.model(input_ids=input_ids, past_key_values=state, use_cache=True, logits_to_keep=keep)
        return out.logits[:, -keep:].float(), out.past_key_values

    def crop(self, state, length: int) -> None:
        """Cut the cache back to its first `length` tokens."""
        extra = state.get_seq_length() - length
        if extra > 0:
            state.crop(-extra)


def can_rewind(lm) -> bool:
    """Whether a model can check drafted tokens: several tokens a pass, and a cache it can cut back."""
    return all(hasattr(lm, name) for name in ("extend", "crop"))


def _outputs(out, hidden_states: bool) -> tuple:
    """(logits, cache) of a transformers forward pass, and its last layer's hidden states if asked."""
    logits = out.logits[:, -1, :].float()
    if hidden_states:
        return logits, out.past_key_values, out.hidden_states[-1]
    return logits, out.past_key_values
