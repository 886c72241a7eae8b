"""A lean forward pass for transformers' `GPT2LMHeadModel`, behind the engine's `StepModel` interface.

transformers' forward spends a GPT-2 step on more than the arithmetic: its `DynamicCache` concatenates
every layer's keys and values onto a new tensor at every step (and the engine's beam reorder copies
them again, layer by layer), and the mask and output-capturing machinery runs per call. This adapter
runs the model's own modules (its LayerNorms, `Conv1D`s and MLPs, so any activation works) in
transformers' order of operations, and changes only:

- the KV cache: one preallocated tensor (layers, 2, rows, heads, capacity, head size) written in place,
  attended over its filled part with `F.scaled_dot_product_attention` (what transformers' default
  "sdpa" attention calls, with the same scale and causal rule); a reorder of beams copies only the rows
  that moved, each once, straight from its source (`lm.row_moves`);
- the head, from 4 rows on: `hidden @ W.T` with W.T kept once, contiguous (V x H floats more memory,
  once per model), which on a CPU is much faster than `F.linear` on the (V, H) weight and, from 4 rows
  on, gives its very bits (the same GEMM). Below 4 rows BLAS takes a matrix-vector path whose sums run
  in another order (logits differ by ~1e-7), so there the head is `F.linear`, as in transformers.
  `__init__` checks the equality on this machine's BLAS and keeps `F.linear` everywhere if it fails.

So the logits are transformers' own, bit for bit, at the same batch size: the parity suites run
through it unchanged (`core.models.forwards.adapter_for` picks it for every GPT-2), and tests/test_lean_forward.py compares
every part with transformers' forward with torch.equal. `PLAYGROUND_FORWARD=transformers` (or
`--forward transformers`) switches back to transformers' forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.models.lm import ModelFacts, model_facts, reorder_in_place

# From this many rows on, the transposed head gives F.linear's bits (BLAS's GEMM rather than its GEMV).
TRANSPOSED_HEAD_ROWS = 4
# Positions are allocated in chunks of this many: a step never allocates, except once per chunk, when
# the cache grows by one chunk (a copy of its filled part). At most this many positions sit unused.
CAPACITY_CHUNK = 64


@dataclass
class KVCache:
    """Every layer's keys and values: kv[layer, 0] keys, kv[layer, 1] values, each (rows, heads, capacity,
    head size), filled for positions [0, length)."""
    kv: torch.Tensor
    length: int

    @property
    def capacity(self) -> int:
        return self.kv.shape[4]


def unsupported(model: torch.nn.Module) -> str | None:
    """Why the lean forward cannot run `model` with transformers' numbers, or None when it can."""
    from transformers import GPT2LMHeadModel

    if type(model) is not GPT2LMHeadModel:
        return f"it runs only transformers' GPT2LMHeadModel, not {type(model).__name__}"
    c = model.config
    if getattr(c, "_attn_implementation", "sdpa") != "sdpa":
        return f"the model is loaded with {c._attn_implementation!r} attention, not 'sdpa'"
    if c.add_cross_attention or c.scale_attn_by_inverse_layer_idx:
        return "the model uses cross-attention or scales attention by the layer index"
    if model.lm_head.bias is not None:
        return "the model's lm_head has a bias"
    if model.training:
        return "the model is in training mode (dropout)"
    return None


class LeanGPT2:
    """transformers' GPT2LMHeadModel decoded with a preallocated KV cache and a transposed head.
    Never mutates the model; the transposed head is a copy made once."""

    engine = "lean"  # what results and the sidebar call this forward pass

    def __init__(self, model: torch.nn.Module):
        why_not = unsupported(model)
        if why_not is not None:
            raise ValueError(f"The lean forward cannot run this model: {why_not}.")
        self.model = model
        self.device = next(model.parameters()).device
        self.facts: ModelFacts = model_facts(model)
        c = model.config
        self.blocks = list(model.transformer.h)
        self.wte = model.transformer.wte.weight
        self.wpe = model.transformer.wpe.weight
        self.ln_f = model.transformer.ln_f
        self.heads = c.n_head
        self.head_dim = c.n_embd // c.n_head
        self.embed = c.n_embd
        self.scale = self.head_dim ** -0.5 if c.scale_attn_weights else 1.0
        self.head = model.lm_head.weight
        self.head_t = self._transposed_head()  # (H, V), or None where it would not give F.linear's bits

    # the StepModel calls ---------------------------------------------------------------------------
    @torch.inference_mode()
    def prefill(self, input_ids, *, hidden_states=False):
        cache = self._empty(1, input_ids.shape[1] + 1)  # room for the first new token at least
        return self._forward(input_ids, cache, hidden_states)

    @torch.inference_mode()
    def step(self, input_ids, state, *, hidden_states=False):
        return self._forward(input_ids, state, hidden_states)

    def select_rows(self, state: KVCache, rows: torch.Tensor) -> KVCache:
        n = state.length
        if rows.shape[0] == state.kv.shape[2]:
            # same batch: copy only the rows whose source changed, each once (greedy and sampling rows never move)
            reorder_in_place([state.kv[..., :n, :]], 2, rows)
            return state
        # growing (the prompt's row repeated for every run), shrinking (runs that finished): one gather
        return KVCache(state.kv.index_select(2, rows), n)

    # assisted decoding: a block of tokens a pass, logits at its last `keep` positions, and the cache cut back
    @torch.inference_mode()
    def extend(self, input_ids, state: KVCache | None, *, keep: int):
        """input_ids (1, N) after the `state`'s tokens (None: from the start) -> logits (1, keep, V) in float32
        at the last `keep` positions, and the state."""
        cache = state if state is not None else self._empty(1, input_ids.shape[1] + 1)
        return self._forward(input_ids, cache, False, keep=keep)

    def crop(self, state: KVCache, length: int) -> None:
        """Forget every position from `length` on (they are written over when the cache grows again)."""
        state.length = min(state.length, length)

    @torch.inference_mode()
    def all_logits(self, input_ids):
        # scoring is one pass without a cache: transformers' own forward, as before
        return self.model(input_ids=input_ids, use_cache=False).logits.float()

    # the forward pass ------------------------------------------------------------------------------
    @torch.inference_mode()
    def _transposed_head(self) -> torch.Tensor | None:
        """W.T, contiguous, if `x @ W.T` equals `F.linear(x, W)` bit for bit on this machine from
        TRANSPOSED_HEAD_ROWS rows on (checked on random rows of a few batch sizes); else None."""
        head_t = self.head.detach().t().contiguous()
        generator = torch.Generator(device=self.device).manual_seed(0)
        for rows in (TRANSPOSED_HEAD_ROWS, TRANSPOSED_HEAD_ROWS + 1, 16, 33):
            x = torch.randn(rows, self.embed, generator=generator, device=self.device).to(self.head.dtype)
            if not torch.equal(x @ head_t, F.linear(x, self.head)):
                return None
        return head_t

    def _logits(self, last: torch.Tensor) -> torch.Tensor:
        """The head on the last position's hidden states (R, H) -> (R, V) float32 logits."""
        if self.head_t is not None and last.shape[0] >= TRANSPOSED_HEAD_ROWS:
            return (last @ self.head_t).float()
        return F.linear(last, self.head).float()

    def _empty(self, rows: int, needed: int) -> KVCache:
        capacity = min(-(-needed // CAPACITY_CHUNK) * CAPACITY_CHUNK, self.facts.context_length)
        kv = torch.empty((len(self.blocks), 2, rows, self.heads, capacity, self.head_dim),
                         dtype=self.wte.dtype, device=self.device)
        return KVCache(kv, 0)

    def _room(self, cache: KVCache, needed: int) -> KVCache:
        """The cache with capacity for `needed` positions: itself, or a copy into one more chunk."""
        if needed <= cache.capacity:
            return cache
        grown = self._empty(cache.kv.shape[2], needed)
        grown.kv[..., :cache.length, :].copy_(cache.kv[..., :cache.length, :])
        grown.length = cache.length
        return grown

    def _forward(self, input_ids, cache: KVCache, hidden_states: bool, keep: int = 0):
        """input_ids (R, T) continuing `cache` -> last-position logits (R, V) in float32, the cache
        advanced by T positions, and with `hidden_states` the final LayerNorm's output (R, T, H). With
        `keep`, the logits of the last `keep` positions instead, (R, keep, V)."""
        rows, t = input_ids.shape
        start = cache.length
        if start + t > self.facts.context_length:
            raise ValueError(f"{start + t} tokens are past this model's {self.facts.context_length} positions.")
        cache = self._room(cache, start + t)
        end = start + t
        positions = torch.arange(start, end, device=input_ids.device)
        # as GPT2Model: inputs_embeds + position_embeds (dropout is off in eval mode)
        x = F.embedding(input_ids, self.wte) + F.embedding(positions, self.wpe)[None]
        # transformers' sdpa path: causal when a block of new tokens starts an empty cache; one new token
        # sees every cached position; a block continuing a cache needs the offset causal mask
        mask = None
        if t > 1 and start > 0:
            mask = torch.ones(t, end, dtype=torch.bool, device=x.device).tril(diagonal=start)
        causal = t > 1 and start == 0
        for i, block in enumerate(self.blocks):
            x = x + self._attention(block, block.ln_1(x), cache.kv[i], start, end, mask, causal)
            x = x + block.mlp(block.ln_2(x))
        cache.length = end
        x = self.ln_f(x)
        if keep:
            return self._logits(x[:, -keep:, :].reshape(rows * keep, self.embed)).view(rows, keep, -1), cache
        logits = self._logits(x[:, -1, :])
        return (logits, cache, x) if hidden_states else (logits, cache)

    def _attention(self, block, h, kv, start: int, end: int, mask, causal: bool):
        """One block's self-attention output (before the residual), writing its keys and values into
        the cache at positions [start, end)."""
        rows, t, _ = h.shape
        q, k, v = block.attn.c_attn(h).split(self.embed, dim=2)
        q = q.view(rows, t, self.heads, self.head_dim).transpose(1, 2)
        kv[0, :, :, start:end] = k.view(rows, t, self.heads, self.head_dim).transpose(1, 2)
        kv[1, :, :, start:end] = v.view(rows, t, self.heads, self.head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, kv[0, :, :, :end], kv[1, :, :, :end], attn_mask=mask,
                                             is_causal=causal, scale=self.scale)
        return block.attn.c_proj(out.transpose(1, 2).reshape(rows, t, self.embed))
