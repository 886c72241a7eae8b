"""`python -m core decode|compare|score|models|download`: the engine headless, as JSON or a table.

Flags mirror generate()'s keyword arguments and defaults, so `--num-beams 5 --no-repeat-ngram-size 2`
gives what `model.generate(..., num_beams=5, no_repeat_ngram_size=2)` gives. Bad input prints one line
on stderr and exits with status 2; nothing the user types ends in a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from core.backends import add_backend_args
from core.errors import PlaygroundError


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one `error:` line (not the whole usage) and exit 2, like our errors."""

    def error(self, message):
        self.exit(2, f"error: {message} (see `{self.prog} --help`).\n")


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
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default: CUDA when present)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_backend_args(p)


def _prompt_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt", required=True, help="text for the model to continue")
    from core.decoding.settings import DEFAULT_MAX_NEW_TOKENS

    p.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    p.add_argument("--seed", type=int, default=0,
                   help="seeds each sampling run's own generator (run i of a line-up gets seed + i)")
    p.add_argument("--top-n", type=int, default=10, help="candidates recorded per step")
    p.add_argument("--truncate", action="store_true",
                   help="cut a prompt that does not fit the context from the left instead of refusing")


QUICK = ("models", "download")  # commands answered without the decoding stack (torch, transformers)


def _quick_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m core", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_quick(sub)
    return parser


def _add_quick(sub) -> None:
    sub.add_parser("models", help="list the models this machine can offer")
    dl = sub.add_parser("download", help="fetch a GPT-2 family model into the Hugging Face cache")
    dl.add_argument("name")


def build_parser() -> argparse.ArgumentParser:
    # the flags come from the settings' declarations, which the strategy classes hold: importing them
    # imports torch, so `models` and `download` use _quick_parser instead
    from core.decoding.settings import KNOBS, STRATEGIES, DecodeSettings

    parser = _Parser(prog="python -m core", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    d = sub.add_parser("decode", help="one strategy on one prompt")
    _common(d)
    _prompt_args(d)
    # one flag per setting declared in core.decoding.settings, with its default and help (--num-beams defaults
    # to None: 5 for beam search, else 1)
    defaults = DecodeSettings()
    types = {"int": int, "float": float, "optional_float": float, "bool_or_never": _bool_or_never, "choice": str}
    for name, knob in KNOBS.items():
        if knob.flag:
            d.add_argument("--" + name.replace("_", "-"), type=types[knob.kind], help=knob.help,
                           default=None if name == "num_beams" else getattr(defaults, name),
                           choices=STRATEGIES if name == "strategy" else None)

    c = sub.add_parser("compare", help="a line-up of runs on one prompt, decoded as one batch")
    _common(c)
    _prompt_args(c)
    c.add_argument("--lineup", default=None,
                   help="the app's line-up syntax, one run per line or separated by ';', e.g. "
                        "'greedy; beam(num_beams=5); sample(temperature=0.7,top_k=0,top_p=0.95)' "
                        "(default: the Compare page's line-up)")
    for p in (d, c):
        p.add_argument("--recipe", metavar="FILE", default=None,
                       help="also write a standalone Python script that reproduces the runs with generate()")
        p.add_argument("--html", metavar="FILE", default=None,
                       help="also write the run as one self-contained HTML page that opens offline")

    s = sub.add_parser("score", help="per-token log-prob, rank and surprisal of a given text")
    _common(s)
    s.add_argument("--text", required=True)

    from core.report import add_report_parser

    add_report_parser(sub)
    _add_quick(sub)
    return parser


def settings_from_args(a: argparse.Namespace):
    from core.decoding.settings import KNOBS, DecodeSettings

    values = {name: getattr(a, name) for name, knob in KNOBS.items() if knob.flag}
    if values["num_beams"] is None:
        values["num_beams"] = 5 if a.strategy == "beam" else 1
    return DecodeSettings(max_new_tokens=a.max_new_tokens, seed=a.seed, **values)


def _score_table(result) -> str:
    lines = [f"perplexity {result.perplexity:.2f} over {len(result.tokens)} scored tokens "
             f"(the first token, {result.first_token!r}, has no context and is not scored)",
             f"{'token':<18}{'logprob':>9}{'rank':>7}{'surprisal':>15}"]
    lines += [f"{t.token!r:<18}{t.logprob:>9.3f}{t.rank:>7}{t.surprisal_bits:>10.2f} bits" for t in result.tokens]
    return "\n".join(lines)


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
    argv = sys.argv[1:] if argv is None else list(argv)
    args = (_quick_parser() if argv[:1] and argv[0] in QUICK else build_parser()).parse_args(argv)
    try:
        return _run(args)
    except PlaygroundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader (`| head`) has gone: stop quietly, and keep Python from complaining at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a bug of ours: still one line, with a way to see the whole story
        if os.environ.get("PLAYGROUND_DEBUG"):
            raise
        print(f"error: internal error ({type(exc).__name__}: {str(exc)[:200]}); run again with "
              "PLAYGROUND_DEBUG=1 for the traceback.", file=sys.stderr)
        return 1


def _run(args) -> int:
    from core.models import registry

    if args.command == "report":
        from core.report import run_report

        return run_report(args)
    if args.command == "models":
        for name, status in registry.model_statuses().items():
            print(f"{name:<28}{status}")
        return 0
    from core.decoding import lineup as lineup_syntax
    from core.backends import open_playground
    from core.playground import default_lineup

    if args.command == "download":
        print(registry.download(args.name))
        return 0
    pg = open_playground(args.model or registry.default_model(), backend=args.backend, server=args.server,
                         device=args.device, allow_paths=True, full_vocabulary=args.full_vocabulary)
    if args.command == "score":
        result = pg.score(args.text)
        print(json.dumps(result.to_dict(), ensure_ascii=False) if args.json else _score_table(result))
        return 0
    if args.command == "decode":
        runs = [settings_from_args(args)]
    elif args.lineup is not None:
        runs = lineup_syntax.parse_lineup(args.lineup, max_new_tokens=args.max_new_tokens, seed=args.seed)
        lineup_syntax.validate_lineup(runs, pg.check)
    else:
        runs = default_lineup(args.max_new_tokens, args.seed)
    result = pg.compare(args.prompt, runs, truncate=args.truncate, top_n=args.top_n)
    for notice in result.notices:
        print(f"note: {notice}", file=sys.stderr)
    if args.recipe or args.html:
        from core.views import recipe

        rec = recipe.recipe(result, runs, args.prompt)
        snippet = recipe.generate_snippet(rec)
        if args.recipe:
            _write(args.recipe, snippet)
        if args.html:
            from core.views import html_export

            page = "beam" if args.command == "decode" and runs[0].is_beam else "compare"
            _write(args.html, html_export.export_html(result, rec, snippet, page=page))
    print(result.to_json() if args.json else _table(result))
    return 0


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        raise PlaygroundError(f"Could not write {path}: {exc.strerror or exc}.") from None
