"""Looking inside a model: anatomy, attention weights over a prompt, the distribution at a prefix.

(Formerly `core/inspect.py`: renamed so that it cannot be mistaken for the standard library's `inspect`.)"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import torch
import torch.nn.functional as F

from core.models.architectures import parameter_count
from core.decoding.processors import CUTS, PROCESSORS, build_processors
from core.views.tokens import token_label
from core.playground import Playground
from core.decoding.settings import DecodeSettings


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


ATTENTION_MAX_TOKENS = 256  # a heat-map wider than this has unreadable labels


@torch.inference_mode()
def attention_maps(pg: Playground, text: str, max_tokens: int = ATTENTION_MAX_TOKENS
                   ) -> tuple[list[str], torch.Tensor | None, int]:
    """Tokens of the text (the first min(max_tokens, context) of them), attention weights
    (layers, heads, T, T) or None for a model without attention, and how many tokens the whole text
    has (so a page can say how many it left out). Labels show byte tokens as bytes (`token_label`).
    Recomputed from the model's own modules: its forward pass is left as it is (SDPA returns no
    weights), and the shared model is never reconfigured."""
    all_ids = pg.tokenizer.encode(text)
    ids = all_ids[:min(max_tokens, pg.facts.context_length)]
    tokens = [token_label(pg.tokenizer, i) for i in ids]
    x = torch.tensor([ids], device=pg.lm.device)
    model = pg.model
    if not ids:  # nothing to attend over; None still means "this model has no attention"
        return tokens, (torch.zeros(0, 0, 0, 0) if _has_attention(model) else None), 0
    if hasattr(model, "attention_maps"):
        return tokens, model.attention_maps(x).float().cpu(), len(all_ids)
    if getattr(model.config, "model_type", "") != "gpt2":
        return tokens, None, len(all_ids)
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
    return tokens, torch.stack(maps).cpu(), len(all_ids)


def _has_attention(model) -> bool:
    return hasattr(model, "attention_maps") or getattr(model.config, "model_type", "") == "gpt2"


def _describe(applied: list, s: DecodeSettings) -> str:
    if not applied:
        return "raw"
    cut = any(p.does == CUTS for p in applied)
    return "after " + ", ".join(p.applied_label(s) for p in applied) + (" (renormalised)" if cut else "")


def _sorted_probs(scores: torch.Tensor) -> np.ndarray:
    return F.softmax(scores.double(), -1).sort(descending=True).values.cpu().numpy()


@torch.inference_mode()
def distribution_at(pg: Playground, ids: list[int], settings: DecodeSettings | None = None) -> dict:
    """The exact next-token distribution after `ids`: raw, and after `settings`' processors.

    Returns sorted raw probabilities (V,) with their token ids, the processed probabilities in the
    same order, and the raw logits (for the temperature demonstration). It also replays the
    processors one at a time, as the run applied them (transformers' warpers, in generate()'s order),
    and says what each cutting processor saw:

    - "before_cuts": {"label", "sorted"}: the distribution the first cutter sees (after penalties and
      temperature), sorted descending (numpy); with no cutter, the final distribution;
    - "stages": one {"name", "param", "label", "sorted", "kept"} per processor that cuts (top-k, top-p,
      min-p, typical-p, epsilon, eta): the distribution that cutter saw (renormalised over what earlier
      cuts left), sorted descending, and how many tokens it kept, which is the run's `kept[name]` at
      that step.
    Which processors cut, and how each is named, is their declaration's (`core.decoding.processors`).
    """
    context = ids[-pg.facts.context_length:]
    logits = pg.lm.all_logits(torch.tensor([context], device=pg.lm.device))[0, -1].float()
    raw = F.softmax(logits, -1)
    processed, stages, before_cuts = raw, [], None
    if settings is not None:
        scores, stages, before_cuts = _replay(torch.tensor([context], device=logits.device), logits[None], settings)
        processed = F.softmax(scores[0], -1)
    order = raw.argsort(descending=True)
    raw_sorted = raw[order].cpu()
    return {"ids": order.cpu(), "raw": raw_sorted, "processed": processed[order].cpu(), "logits": logits.cpu(),
            "before_cuts": before_cuts or {"label": "raw", "sorted": raw_sorted.double().numpy()},
            "stages": stages}


def _replay(seq: torch.Tensor, scores: torch.Tensor, settings: DecodeSettings):
    """The run's processors one at a time: the final scores, one stage per cut, and what the first cut saw."""
    stages: list[dict] = []
    applied: list = []
    before_cuts = None
    for name, proc in build_processors(settings):
        p = PROCESSORS[name]
        if p.does != CUTS:
            scores = proc(seq, scores)
            applied.append(p)
            continue
        label, sees = _describe(applied, settings), _sorted_probs(scores[0])
        before_cuts = before_cuts or {"label": label, "sorted": sees}
        new = proc(seq, scores)
        stages.append({"name": name, "param": getattr(settings, p.knobs[0]), "label": label, "sorted": sees,
                       "kept": int(torch.isfinite(new).sum())})
        applied.append(p)
        scores = new
    return scores, stages, before_cuts or {"label": _describe(applied, settings), "sorted": _sorted_probs(scores[0])}
