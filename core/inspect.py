"""Looking inside a model: anatomy, attention weights over a prompt, the distribution at a prefix."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.custom_models import parameter_count
from core.engine import build_processors
from core.playground import Playground
from core.settings import DecodeSettings


@dataclass
class Anatomy:
    architecture: str
    layers: int
    heads: int | None
    head_size: int | None
    hidden: int
    context: int
    vocab: int
    parameters: int
    device: str
    dtype: str


def anatomy(pg: Playground) -> Anatomy:
    c = pg.model.config
    layers = getattr(c, "n_layer", None) or getattr(c, "num_hidden_layers", 0)
    heads = getattr(c, "n_head", None) or getattr(c, "num_attention_heads", None)
    hidden = getattr(c, "n_embd", None) or getattr(c, "hidden_size", 0)
    return Anatomy(type(pg.model).__name__, layers, heads, hidden // heads if heads else None, hidden,
                   pg.facts.context_length, pg.facts.vocab_size, parameter_count(pg.model), pg.device,
                   str(next(pg.model.parameters()).dtype).replace("torch.", ""))


@torch.inference_mode()
def attention_maps(pg: Playground, text: str, max_tokens: int = 64) -> tuple[list[str], torch.Tensor | None]:
    """Tokens of the text (at most max_tokens) and attention weights (layers, heads, T, T), or None
    for a model without attention. Recomputed from the model's own modules: its forward pass is
    left as it is (SDPA returns no weights), and the shared model is never reconfigured."""
    ids = pg.tokenizer.encode(text)[:max_tokens]
    tokens = [pg.token_text(i) for i in ids]
    x = torch.tensor([ids], device=pg.lm.device)
    model = pg.model
    if hasattr(model, "attention_maps"):
        return tokens, model.attention_maps(x).float().cpu()
    if getattr(model.config, "model_type", "") != "gpt2":
        return tokens, None
    hidden = model(x, output_hidden_states=True).hidden_states  # input of block i is hidden[i]
    t = len(ids)
    causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
    maps = []
    for block, h in zip(model.transformer.h, hidden):
        q, k, _ = block.attn.c_attn(block.ln_1(h)).split(model.config.n_embd, dim=2)
        heads, size = model.config.n_head, model.config.n_embd // model.config.n_head
        q = q.view(1, t, heads, size).transpose(1, 2)
        k = k.view(1, t, heads, size).transpose(1, 2)
        scores = (q @ k.transpose(-1, -2)).float() / math.sqrt(size)
        maps.append(scores.masked_fill(~causal, float("-inf")).softmax(-1)[0])
    return tokens, torch.stack(maps).cpu()


@torch.inference_mode()
def distribution_at(pg: Playground, ids: list[int], settings: DecodeSettings | None = None) -> dict:
    """The exact next-token distribution after `ids`: raw, and after `settings`' processors.

    Returns sorted raw probabilities (V,) with their token ids, the processed probabilities in the
    same order, and the raw logits (for the temperature demonstration)."""
    context = ids[-pg.facts.context_length:]
    logits = pg.lm.all_logits(torch.tensor([context], device=pg.lm.device))[0, -1].float()
    raw = F.softmax(logits, -1)
    processed = raw
    if settings is not None:
        scores = logits[None]
        seq = torch.tensor([context], device=logits.device)
        for _, proc in build_processors(settings):
            scores = proc(seq, scores)
        processed = F.softmax(scores[0], -1)
    order = raw.argsort(descending=True)
    return {"ids": order.cpu(), "raw": raw[order].cpu(), "processed": processed[order].cpu(),
            "logits": logits.cpu()}
