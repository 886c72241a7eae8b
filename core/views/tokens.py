"""Tokens as people read them: whitespace made visible, byte-level pieces shown as bytes, text made safe
for plotly labels, and why the processors removed a candidate."""

from __future__ import annotations

import codecs
import html
from functools import lru_cache

from core.decoding.processors import PROCESSORS


def visible(token: str) -> str:
    """A token with its whitespace made visible, for tables and figure labels."""
    return token.replace("\n", "↵").replace("\t", "⇥").replace(" ", "␣")


def plotly_text(text: str) -> str:
    """Untrusted text for a plotly label or hover: plotly reads a few HTML tags, so escape them."""
    return html.escape(text, quote=False)


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet, character -> byte (the inverse of `bytes_to_unicode`)."""
    try:
        from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode
    except ImportError:
        try:
            from transformers.convert_slow_tokenizer import bytes_to_unicode
        except ImportError:  # the same 10 lines as GPT-2's own
            def bytes_to_unicode():
                bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                      + list(range(ord("®"), ord("ÿ") + 1)))
                cs, n = bs[:], 0
                for b in range(256):
                    if b not in bs:
                        bs.append(b)
                        cs.append(256 + n)
                        n += 1
                return dict(zip(bs, map(chr, cs)))
    return {c: b for b, c in bytes_to_unicode().items()}


def _hex_bytes(error: UnicodeDecodeError):
    return "".join(f"<0x{b:02X}>" for b in error.object[error.start:error.end]), error.end


codecs.register_error("decoding_playground_hexbytes", _hex_bytes)


def token_label(tokenizer, token_id: int) -> str:
    """A token's text, except that bytes which are not a whole UTF-8 character (the pieces of a CJK
    character or an emoji, which decode to "�") are shown as `<0xE4><0xBD>`."""
    text = tokenizer.decode([int(token_id)])
    if "\ufffd" not in text:
        return text
    piece = tokenizer.convert_ids_to_tokens(int(token_id))
    decoder = _byte_decoder()
    if not isinstance(piece, str) or not piece or any(ch not in decoder for ch in piece):
        return text  # not a byte-level piece: nothing better to show
    return bytes(decoder[ch] for ch in piece).decode("utf-8", errors="decoding_playground_hexbytes")


def _banned_ids(step) -> set[int]:
    return {i for ids in step.banned.values() for i in ids}


def cut_reason(step, position: int) -> str | None:
    """Why the processors removed the step's `position`-th raw candidate, or None if they did not.

    A banned id says which ban; otherwise the cut is found from the survivor counts: the candidates
    are in raw order, which temperature keeps, so the k-th surviving one falls to the first cut that
    keeps the most likely tokens and kept fewer than k. (A processor that reorders, such as the
    repetition penalty, spoils that: then it says which processors could have cut it.) The names and
    what each processor does are its declaration's (`core.decoding.processors`)."""
    cand = step.top[position]
    if cand.processed_prob is None or cand.processed_prob > 0:
        return None
    for name, ids in step.banned.items():
        if cand.id in ids and name in PROCESSORS:
            return PROCESSORS[name].reason()
    cutters = [PROCESSORS[name] for name in step.kept if name in PROCESSORS]
    if not cutters:
        removers = [PROCESSORS[n] for n in step.banned if n in PROCESSORS and PROCESSORS[n].removes]
        return removers[0].reason() if removers else "removed by the processors"
    if not any(PROCESSORS[n].reorders for n in step.banned if n in PROCESSORS):
        return _first_cut(step, position, cutters) or _cut_by(cutters)
    return _cut_by(cutters)


def _first_cut(step, position: int, cutters: list) -> str | None:
    banned = _banned_ids(step)
    place = 1 + sum(1 for c in step.top[:position] if c.id not in banned)
    for p in cutters:
        if not p.prefix_cut or place > step.kept[p.name]:
            return p.reason()
    return None


def _cut_by(cutters: list) -> str:
    return "cut by " + " / ".join(p.label for p in cutters)
