"""Parity of generate()'s controls (issue 19, item 2) with `model.generate()` of the app's transformers,
token for token: each control alone and all together, on greedy, beam and sampling runs (sampling through
the same seed, as the recipe does), on several prompts.

`python tests/controls_parity.py` prints the table (control x strategy x prompt: equal or not) on a tiny
GPT-2 with GPT-2's real tokenizer and on the shipped default model; tests/test_controls.py holds a part
of it as tests. Each control's values are picked from the plain greedy text of its prompt (a word it
wrote, a token they chose), so that the controls act on the runs they are applied to.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.decoding.knobs import TokenTexts  # noqa: E402
from core.decoding.settings import DecodeSettings  # noqa: E402
from core.playground import Playground  # noqa: E402

NEW_TOKENS = 16
STRATEGIES = {
    "greedy": DecodeSettings("greedy", max_new_tokens=NEW_TOKENS),
    "beam 3 (2 returned)": DecodeSettings("beam", num_beams=3, num_return_sequences=2, max_new_tokens=NEW_TOKENS),
    "sample (seed 7)": DecodeSettings("sample", top_k=0, seed=7, max_new_tokens=NEW_TOKENS),
}


def _alone(pg: Playground, token_id: int) -> str | None:
    """The token's text if it tokenizes back to that one token as typed, else None."""
    text = pg.token_text(token_id)
    return text if text.strip() and "\ufffd" not in text and pg.encode_text(text) == [token_id] else None


def picks(pg: Playground, prompt: str) -> list[str]:
    """Texts of single tokens the plain sampled and greedy runs chose (in their order, the end of text left
    out), that tokenize back to themselves."""
    result = pg.compare(prompt, [STRATEGIES["sample (seed 7)"], STRATEGIES["greedy"]])
    ids = [i for run in result.runs for i in run.best.ids]
    found = [t for t in (_alone(pg, i) for i in ids if i not in pg.facts.eos_token_ids) if t is not None]
    return list(dict.fromkeys(found)) or [" the"]


def controls(pg: Playground, prompt: str) -> dict[str, dict]:
    """Each control's settings for this prompt, and all of them together ("all")."""
    words = picks(pg, prompt)
    word = lambda i: words[i % len(words)]  # noqa: E731
    one = {
        "stop_strings": {"stop_strings": (word(3).strip()[-2:] or word(3), "\n\n")},
        "min_new_tokens": {"min_new_tokens": 12},
        "bad_words": {"bad_words": (word(0), word(1) + word(2))},
        "suppress_tokens": {"suppress_tokens": (word(1),)},
        "sequence_bias": {"sequence_bias": ((word(0), -8.0), (word(2), 3.5))},
        "exponential_decay_length_penalty": {"exponential_decay_length_penalty": (3, 1.5)},
        "top_h": {"top_h": 0.6},
        "guidance_scale": {"guidance_scale": 4.0},
        "negative_prompt": {"guidance_scale": 4.0, "negative_prompt": "The king" + word(2)},
    }
    together = {k: v for name, c in one.items() if name != "negative_prompt" for k, v in c.items()}
    return {**one, "all": together}


def not_applied(settings: DecodeSettings, control: str = "") -> str:
    """Why the control means nothing on this run ("" where it does): top-h alone only where it samples
    (generate() and the engine apply a warper only there), a negative prompt only on one row (generate()
    takes no more)."""
    if control == "top_h" and not settings.do_sample:
        return "n/a (generate() applies top-h only when sampling)"
    if settings.negative_prompt and settings.runner.rows_needed(settings) != 1:
        return "n/a (generate() takes a negative prompt on one row only)"
    return ""


def applies(settings: DecodeSettings, control: str = "") -> bool:
    return not not_applied(settings, control)


def equal(pg: Playground, prompt: str, settings: DecodeSettings) -> tuple[bool, list]:
    """(our tokens equal generate()'s, our sequences' (ids, finish reason, finish detail)) for one run."""
    result = pg.decode(prompt, settings)
    ids = torch.tensor([result.prompt_ids])
    torch.manual_seed(settings.seed)  # the recipe's way: generate() samples from the global generator
    out = pg.model.generate(ids, attention_mask=torch.ones_like(ids), pad_token_id=pg.facts.pad_token_id,
                            **settings.generate_kwargs(TokenTexts(pg.tokenizer)))
    same = len(result.runs[0].sequences) <= out.shape[0]
    for i, seq in enumerate(result.runs[0].sequences):
        expected = out[i, ids.shape[1]:].tolist()
        same &= seq.ids == expected[:len(seq.ids)] and all(t == pg.facts.pad_token_id for t in expected[len(seq.ids):])
    return same, [(q.ids, q.finish_reason, q.finish_detail) for q in result.runs[0].sequences]


def eos_model(folder: Path, out: Path, prompt: str) -> Playground:
    """The model of `folder` with a token it writes in `prompt`'s sampled run declared its end of text,
    so that min_new_tokens and the length decay have an end of text to act on."""
    from transformers import AutoModelForCausalLM

    first = Playground.load(str(folder), device="cpu", allow_paths=True)
    ids = first.decode(prompt, STRATEGIES["sample (seed 7)"]).runs[0].best.ids
    eos = next((t for i, t in enumerate(ids) if i >= 8 and t not in ids[:i]), ids[-1])  # first written after step 8
    model = AutoModelForCausalLM.from_pretrained(folder)
    for config in (model.config, model.generation_config):
        config.eos_token_id = eos
        config.pad_token_id = eos
    model.save_pretrained(out)
    first.tokenizer.save_pretrained(out)
    return Playground.load(str(out), device="cpu", allow_paths=True)


def table(pg: Playground, prompts: list[str], title: str) -> list[str]:
    lines = [f"## {title}", "", "| control | strategy | " + " | ".join(f"prompt {i + 1}" for i in range(len(prompts))) + " |",
             "| --- | --- |" + " --- |" * len(prompts)]
    cases = [controls(pg, p) for p in prompts]
    for name in cases[0]:
        for label, base in STRATEGIES.items():
            cells = []
            for prompt, case in zip(prompts, cases):
                s = base.replace(**case[name])
                if not applies(s, name):
                    cells.append(not_applied(s, name))
                    continue
                same, finished = equal(pg, prompt, s)
                stops = [d for _, r, d in finished if r == "stop_string"]
                cells.append(("equal" if same else "DIFFERENT") + (f" (stopped at {stops[0]!r})" if stops else ""))
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conftest import PROMPTS, save_tiny_gpt2

    with tempfile.TemporaryDirectory() as tmp:
        tiny = eos_model(save_tiny_gpt2(Path(tmp) / "tiny"), Path(tmp) / "tiny-eos", PROMPTS[0])
        lines = table(tiny, PROMPTS, "tiny GPT-2 (GPT-2's tokenizer; a token it writes declared end of text)")
    shipped = Playground.load("shakespeare-gpt2", device="cpu")
    lines += [""] + table(shipped, ["ROMEO.\n", "To be, or not to be", "Enter the King, with his train."],
                          "shakespeare-gpt2 (the shipped default)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
