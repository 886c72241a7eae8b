"""`python -m core decode|compare|score|models|download`: the engine headless, as JSON or a table.

Flags mirror generate()'s keyword arguments and defaults, so `--num-beams 5 --no-repeat-ngram-size 2`
gives what `model.generate(..., num_beams=5, no_repeat_ngram_size=2)` gives. Bad input prints one line
on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from core.errors import PlaygroundError
from core.settings import DecodeSettings

def _bool_or_never(text: str):
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    if lowered == "never":
        return "never"
    raise argparse.ArgumentTypeError(f"expected true, false or never, got {text!r}")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="shipped model name, GPT-2 hub id, or a saved-model folder")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default: CUDA when present)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _prompt_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt", required=True, help="text for the model to continue")
    p.add_argument("--max-new-tokens", type=int, default=20)
    p.add_argument("--seed", type=int, default=0, help="seeds each sampling run's own generator")
    p.add_argument("--top-n", type=int, default=10, help="candidates recorded per step")
    p.add_argument("--truncate", action="store_true",
                   help="cut a prompt that does not fit the context from the left instead of refusing")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    d = sub.add_parser("decode", help="one strategy on one prompt")
    _common(d)
    _prompt_args(d)
    d.add_argument("--strategy", choices=("greedy", "beam", "sample"), default="greedy")
    d.add_argument("--num-beams", type=int, default=None, help="beam width (beam: default 5)")
    d.add_argument("--length-penalty", type=float, default=1.0)
    d.add_argument("--early-stopping", type=_bool_or_never, default=False)
    d.add_argument("--num-return-sequences", type=int, default=1)
    d.add_argument("--no-repeat-ngram-size", type=int, default=0)
    d.add_argument("--repetition-penalty", type=float, default=1.0)
    d.add_argument("--temperature", type=float, default=1.0)
    d.add_argument("--top-k", type=int, default=50, help="0 turns it off; generate()'s default is 50")
    d.add_argument("--top-p", type=float, default=1.0)
    d.add_argument("--min-p", type=float, default=None)
    d.add_argument("--typical-p", type=float, default=1.0)

    c = sub.add_parser("compare", help="the default line-up (greedy, beams, temperatures, top-k, top-p)")
    _common(c)
    _prompt_args(c)

    s = sub.add_parser("score", help="per-token log-prob, rank and surprisal of a given text")
    _common(s)
    s.add_argument("--text", required=True)

    sub.add_parser("models", help="list the models this machine can offer")
    dl = sub.add_parser("download", help="fetch a GPT-2 family model into the Hugging Face cache")
    dl.add_argument("name")
    return parser


def settings_from_args(a: argparse.Namespace) -> DecodeSettings:
    num_beams = a.num_beams if a.num_beams is not None else (5 if a.strategy == "beam" else 1)
    return DecodeSettings(
        strategy=a.strategy, max_new_tokens=a.max_new_tokens, num_beams=num_beams,
        length_penalty=a.length_penalty, early_stopping=a.early_stopping,
        num_return_sequences=a.num_return_sequences, no_repeat_ngram_size=a.no_repeat_ngram_size,
        repetition_penalty=a.repetition_penalty, temperature=a.temperature, top_k=a.top_k, top_p=a.top_p,
        min_p=a.min_p, typical_p=a.typical_p, seed=a.seed)


def _table(result) -> str:
    lines = [f"model {result.model} on {result.device}; prompt {len(result.prompt_ids)} tokens"]
    lines += [f"note: {n}" for n in result.notices]
    for run in result.runs:
        f = run.best.figures()
        lines.append(f"\n== {run.name}  (sequence log-prob {f['sequence_logprob']:.2f}, "
                     f"perplexity {f['perplexity']:.2f}, distinct-2 {f['distinct']['distinct_2']:.2f})")
        lines.append(run.best.text)
        lines.append(f"{'step':>4}  {'token':<16}{'logprob':>9}{'rank':>6}  top choices (raw prob)")
        for st in run.best.steps:
            tops = ", ".join(f"{c.token!r} {c.prob:.1%}" for c in st.top[:3])
            lines.append(f"{st.index:>4}  {st.token!r:<16}{st.logprob:>9.3f}{st.rank:>6}  {tops}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except PlaygroundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 130


def _run(args) -> int:
    from core import models
    from core.playground import Playground, default_lineup

    if args.command == "models":
        for name in models.available_models():
            print(name)
        return 0
    if args.command == "download":
        print(models.download(args.name))
        return 0
    name = args.model or models.default_model()
    pg = Playground.load(name, device=args.device, allow_paths=True)
    if args.command == "score":
        result = pg.score(args.text)
        if args.json:
            print(json.dumps(result.to_dict(), ensure_ascii=False))
        else:
            print(f"perplexity {result.perplexity:.2f} over {len(result.tokens)} tokens")
            for t in result.tokens:
                print(f"{t.token!r:<18}{t.logprob:>9.3f}{t.rank:>7}{t.surprisal_bits:>8.2f} bits")
        return 0
    runs = [settings_from_args(args)] if args.command == "decode" else default_lineup(args.max_new_tokens, args.seed)
    result = pg.compare(args.prompt, runs, truncate=args.truncate, top_n=args.top_n)
    for notice in result.notices:
        print(f"note: {notice}", file=sys.stderr)
    print(result.to_json() if args.json else _table(result))
    return 0
