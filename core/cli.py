"""`python -m core decode|compare|pipeline|score|detect|models|download`: the engine headless, as JSON or a table.

Flags mirror generate()'s keyword arguments and defaults, so `--num-beams 5 --no-repeat-ngram-size 2`
gives what `model.generate(..., num_beams=5, no_repeat_ngram_size=2)` gives. Bad input prints one line
on stderr and exits with status 2; nothing the user types ends in a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from core import text_tables
from core.backends import add_backend_args
from core.errors import InvalidSetting, PlaygroundError


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


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _text_bias(text: str) -> tuple[str, float]:
    """TEXT=BIAS (the last '=' splits, so a text may hold one)."""
    words, eq, bias = text.rpartition("=")
    try:
        if not eq:
            raise ValueError(text)
        return words, float(bias)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected TEXT=BIAS with a number for BIAS, got {text[:60]!r}") from None


def _pair(text: str) -> tuple[int, float]:
    """START,FACTOR: a whole number and a number."""
    start, comma, factor = text.partition(",")
    try:
        return int(start), float(factor)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START,FACTOR (a whole number and a number), got {text[:60]!r}") from None


# how a flag reads each kind of setting: argparse's type, a switch for true/false, and for a list its nargs or append
_FLAG_KINDS = {"int": {"type": int}, "optional_int": {"type": int}, "float": {"type": float}, "optional_float": {"type": float},
               "bool": {"type": _bool, "nargs": "?", "const": True}, "bool_or_never": {"type": _bool_or_never},
               "choice": {"type": str}, "model": {"type": str},
               "texts": {"type": str, "nargs": "+", "metavar": "TEXT"}, "text": {"type": str, "metavar": "TEXT"},
               "text_biases": {"type": _text_bias, "action": "append", "metavar": "TEXT=BIAS"},
               "pair": {"type": _pair, "metavar": "START,FACTOR"}}


def add_knob_flag(p: argparse.ArgumentParser, name: str, knob, default, choices=None) -> None:
    """The flag of one setting, from its declaration: a true/false setting is also a switch (`--watermark`),
    texts take several values (`--bad-words " king" " queen"`), TEXT=BIAS repeats."""
    p.add_argument("--" + name.replace("_", "-"), help=knob.help, choices=choices or knob.choices or None,
                   default=None if knob.kind == "text_biases" else default, **_FLAG_KINDS[knob.kind])


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


LINEUP_HELP = ("the app's line-up syntax, one run per line or separated by ';', e.g. "
               "'greedy; beam(num_beams=5); sample(temperature=0.7,top_k=0,top_p=0.95)' "
               "(default: the Compare page's line-up)")


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
    for name, knob in KNOBS.items():
        if knob.flag:
            add_knob_flag(d, name, knob, None if name == "num_beams" else getattr(defaults, name),
                          STRATEGIES if name == "strategy" else None)

    c = sub.add_parser("compare", help="a line-up of runs on one prompt, decoded as one batch")
    _common(c)
    _prompt_args(c)
    c.add_argument("--lineup", default=None, help=LINEUP_HELP)
    c.add_argument("--models", nargs="+", metavar="NAME", default=None,
                   help="model against model: decode the line-up on each of these models (2 to 4; instead of "
                        "--model) side by side, and score every run under every other model (cross-perplexity)")
    for p in (d, c):
        p.add_argument("--recipe", metavar="FILE", default=None,
                       help="also write a standalone Python script that reproduces the runs with generate()")
        p.add_argument("--html", metavar="FILE", default=None,
                       help="also write the run as one self-contained HTML page that opens offline")

    pl = sub.add_parser("pipeline", help="one step of one run of a line-up: the distribution after each processor")
    _common(pl)
    _prompt_args(pl)
    pl.add_argument("--lineup", default=None, help=LINEUP_HELP)
    pl.add_argument("--run", type=int, default=0, help="which run of the line-up, counted from 0")
    pl.add_argument("--step", type=int, default=0, help="which step of the run, counted from 0 (the first new token)")

    s = sub.add_parser("score", help="per-token log-prob, rank and surprisal of a given text")
    _common(s)
    s.add_argument("--text", required=True)

    add_detect_parser(sub)
    add_report_parser(sub)
    sub.add_parser("build-heldout", help="rewrite assets/human/ from the training corpus' held-out split")
    _add_quick(sub)
    return parser


def settings_from_args(a: argparse.Namespace):
    from core.decoding.settings import KNOBS, DecodeSettings

    values = {name: getattr(a, name) for name, knob in KNOBS.items() if knob.flag}
    for name, knob in KNOBS.items():  # a list flag's values as the settings hold them: a tuple
        if knob.flag and knob.kind in ("texts", "text_biases"):
            values[name] = tuple(values[name] or ())
    if values["num_beams"] is None:
        values["num_beams"] = 5 if a.strategy == "beam" else 1
    return DecodeSettings(max_new_tokens=a.max_new_tokens, seed=a.seed, **values)


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
        return run_report(args)
    if args.command == "build-heldout":
        from core import report

        report.write_heldout_file()
        return 0
    if args.command == "models":
        for name, status in registry.model_statuses().items():
            print(f"{name:<28}{status}")
        return 0
    from core.backends import open_playground

    if args.command == "download":
        print(registry.download(args.name))
        return 0
    if args.command == "compare" and args.models:
        return run_model_comparison(args)
    if args.command == "detect":
        settings, threshold = detect_settings(args)  # checked before the model loads
    pg = open_playground(args.model or registry.default_model(), backend=args.backend, server=args.server,
                         device=args.device, allow_paths=True, full_vocabulary=args.full_vocabulary,
                         forward=args.forward)
    if args.command == "detect":
        from core import watermark

        found = watermark.detect_text(pg, args.text, settings, threshold)
        print(json.dumps({"model": pg.label, **found.to_dict()}, ensure_ascii=False) if args.json
              else text_tables.detection_table(found))
        return 0
    if args.command == "score":
        result = pg.score(args.text)
        print(json.dumps(result.to_dict(), ensure_ascii=False) if args.json else text_tables.score_table(result))
        return 0
    if args.command == "pipeline":
        return run_pipeline(pg, args)
    if args.command == "decode":
        runs = [settings_from_args(args)]
    else:
        runs = _lineup(args, pg)
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
    print(result.to_json() if args.json else text_tables.decode_table(result))
    return 0


def _lineup(args, pg):
    from core.decoding import lineup as lineup_syntax
    from core.playground import default_lineup

    if args.lineup is None:
        return default_lineup(args.max_new_tokens, args.seed)
    runs = lineup_syntax.parse_lineup(args.lineup, max_new_tokens=args.max_new_tokens, seed=args.seed)
    lineup_syntax.validate_lineup(runs, pg.check)
    return runs


def run_pipeline(pg, args) -> int:
    from core.pipeline import pipeline_at

    runs = _lineup(args, pg)
    if not args.truncate:  # refuse a prompt that does not fit before decoding anything
        pg.encode_prompt(args.prompt, max(s.max_new_tokens for s in runs), truncate=False)
    view = pipeline_at(pg, args.prompt, runs, args.run, args.step, top_n=args.top_n)
    print(json.dumps(view.to_dict(), ensure_ascii=False) if args.json else text_tables.pipeline_table(view))
    return 0


def run_model_comparison(args) -> int:
    """`compare --models A B ...`: the line-up on every model, side by side, and the cross-perplexities."""
    from core import model_comparison
    from core.backends import open_models
    from core.decoding import lineup as lineup_syntax
    from core.playground import default_lineup

    if args.model:
        raise InvalidSetting("Give the models of a comparison with --models alone (the first takes --model's place).")
    if args.recipe or args.html:
        raise InvalidSetting("--recipe and --html export one model's runs; leave --models out for them.")
    if not 2 <= len(args.models) <= model_comparison.MAX_MODELS:
        raise InvalidSetting(f"--models takes 2 to {model_comparison.MAX_MODELS} models, got {len(args.models)}.")
    if args.lineup is not None:
        runs = lineup_syntax.parse_lineup(args.lineup, max_new_tokens=args.max_new_tokens, seed=args.seed)
    else:
        runs = default_lineup(args.max_new_tokens, args.seed)
    models, notices = open_models(args.models, backend=args.backend, servers=[args.server] if args.server else [],
                                  device=args.device, allow_paths=True, full_vocabulary=args.full_vocabulary,
                                  forward=args.forward)
    model_comparison.check_models(models)
    for pg in models:
        lineup_syntax.validate_lineup(runs, pg.check)
    result = model_comparison.compare_models(models, args.prompt, runs, truncate=args.truncate, top_n=args.top_n)
    result.notices[:0] = notices
    for notice in result.notices:
        print(f"note: {notice}", file=sys.stderr)
    print(result.to_json() if args.json else text_tables.comparison_table(result))
    return 0


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        raise PlaygroundError(f"Could not write {path}: {exc.strerror or exc}.") from None


# `python -m core detect ...` ------------------------------------------------------------------------
def add_detect_parser(subparsers) -> argparse.ArgumentParser:
    from core import watermark
    from core.decoding.processors import PROCESSORS
    from core.decoding.settings import KNOBS

    w = subparsers.add_parser("detect", help="look for the green-list watermark in a text (transformers' "
                                             "WatermarkDetector), given the marked run's watermark flags")
    _common(w)
    w.add_argument("--text", required=True, help="the text to look for a watermark in")
    w.add_argument("--z-threshold", type=float, default=watermark.DEFAULT_THRESHOLD,
                   help=f"call the text marked above this z-score (default {watermark.DEFAULT_THRESHOLD:g}, the paper's)")
    for name in PROCESSORS["watermark"].knobs:  # the marked run's flags; --watermark itself changes nothing here
        add_knob_flag(w, name, KNOBS[name], KNOBS[name].default)
    return w


def detect_settings(args):
    """The watermark the detector looks for, from the same flags as the marked run's, and the threshold."""
    from core import watermark
    from core.decoding.knobs import check_knob
    from core.decoding.processors import PROCESSORS
    from core.decoding.settings import KNOBS, DecodeSettings

    values = {name: getattr(args, name) for name in PROCESSORS["watermark"].knobs}
    values["watermark"] = True
    settings = DecodeSettings(**values)
    for name in values:
        check_knob(name, getattr(settings, name), KNOBS[name], {})
    return settings, watermark.check_threshold(args.z_threshold)


# `python -m core report ...` ------------------------------------------------------------------------
def add_report_parser(subparsers) -> argparse.ArgumentParser:
    from core import limits, report
    from core.decoding.settings import DEFAULT_MAX_NEW_TOKENS

    r = subparsers.add_parser("report", help="N samples per strategy with Holtzman et al.'s figures, beside human text")
    r.add_argument("--model", default=None, help="shipped model name, GPT-2 hub id, or a saved-model folder")
    r.add_argument("--device", default=None, help="cpu, cuda or auto (default: CUDA when present)")
    r.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_backend_args(r)
    r.add_argument("--prompt", action="append", default=None,
                   help="text for the model to continue (repeatable); default: the first "
                        f"{report.DEFAULT_PROMPT_COUNT} held-out passages' prompts")
    r.add_argument("--prompts-file", default=None,
                   help="JSON lines with prompt (and optionally continuation: human text), or one prompt a line")
    r.add_argument("--samples", type=int, default=report.DEFAULT_SAMPLES,
                   help=f"samples per sampling strategy (1-{limits.MAX_SAMPLES})")
    r.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    r.add_argument("--seed", type=int, default=0, help="run i of the line-up draws from seed + i")
    r.add_argument("--lineup", default=None,
                   help="the app's line-up syntax, runs separated by ; (default: the paper's rows; with --sweep, "
                        f"the base runs, default {report.DEFAULT_BASE}: pure sampling)")
    r.add_argument("--sweep", action="append", default=None, metavar="KNOB=START:STOP:COUNT",
                   help="sweep a setting over COUNT evenly spaced values (or KNOB=V1,V2,...) on each base run, N "
                        "samples per point, instead of the line-up report (repeatable, one knob each; "
                        "e.g. top_p=0.5:1.0:6)")
    r.add_argument("--csv", metavar="FILE", default=None, help="also write the table (one row per strategy or "
                                                                "point, the human row last) as CSV")
    r.add_argument("--human-file", default=str(report.HUMAN_FILE), help="human passages (JSON lines: prompt, continuation)")
    r.add_argument("--human-count", type=int, default=None,
                   help="human passages scored (default: as many as samples per sampling strategy x prompts)")
    return r


def prompts_from_args(args) -> list:
    from core import report

    prompts = [report.Passage(p, "") for p in args.prompt or []]
    if args.prompts_file:
        prompts += report.read_prompts_file(args.prompts_file)
    if not prompts:
        prompts = [report.Passage(p.prompt, "", p.id) for p in report.load_passages(args.human_file)[:report.DEFAULT_PROMPT_COUNT]]
    return prompts


def run_report(args) -> int:
    """Check every input before loading the model, then print the report (JSON or a table)."""
    from core import report
    from core.backends import open_playground
    from core.models import registry

    if args.sweep:
        return run_sweep(args)
    runs = report.report_lineup(args.lineup if args.lineup is not None else report.DEFAULT_LINEUP,
                                samples=args.samples, max_new_tokens=args.max_new_tokens, seed=args.seed)
    prompts = prompts_from_args(args)
    report.check_request(prompts, runs, args.human_count)
    heldout = report.load_passages(args.human_file) if args.human_count != 0 else []
    pg = open_playground(args.model or registry.default_model(), backend=args.backend, server=args.server,
                         device=args.device, allow_paths=True, full_vocabulary=args.full_vocabulary,
                         forward=args.forward)
    result = report.make_report(pg, prompts, runs, human=heldout, human_count=args.human_count)
    for notice in result.notices:
        print(f"note: {notice}", file=sys.stderr)
    if args.csv:
        _write(args.csv, result.to_csv())
    print(result.to_json() if args.json else text_tables.format_table(result))
    return 0


def run_sweep(args) -> int:
    """`report --sweep ...`: the sweeps and base runs checked before the model loads, then against it."""
    from core import report
    from core.backends import open_playground
    from core.models import registry

    specs = report.parse_sweeps(args.sweep)
    base = report.base_runs(args.lineup, samples=args.samples, max_new_tokens=args.max_new_tokens, seed=args.seed)
    prompts = prompts_from_args(args)
    report.check_prompts(prompts, args.human_count)
    report.sweep.check_budget(prompts, report.sweep.sweep_points(base, specs))
    heldout = report.load_passages(args.human_file) if args.human_count != 0 else []
    pg = open_playground(args.model or registry.default_model(), backend=args.backend, server=args.server,
                         device=args.device, allow_paths=True, full_vocabulary=args.full_vocabulary,
                         forward=args.forward)
    result = report.make_sweep(pg, prompts, base, specs, human=heldout, human_count=args.human_count)
    for notice in result.notices:
        print(f"note: {notice}", file=sys.stderr)
    if args.csv:
        _write(args.csv, result.to_csv())
    print(result.to_json() if args.json else text_tables.format_sweep_table(result))
    return 0


