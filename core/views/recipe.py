"""Exports of a run: JSON, CSV, Markdown, and a recipe with a `generate()` snippet that reproduces it.

The snippet seeds torch's global generator right before each `generate()` call. generate() draws one
multinomial sample per step from that generator, and the engine draws the same from a run-private
generator seeded the same way, so sampled runs come out the same too (tests check this).
"""

from __future__ import annotations

import csv
import io
import json
import platform
from pathlib import Path

import torch
import transformers

from core.models import registry
from core.playground import DecodeResult
from core.decoding import lineup as lineup_syntax
from core.decoding.settings import DecodeSettings


MOVED_OUT_OF_TRANSFORMERS_5 = ("penalty_alpha", "num_beam_groups")  # contrastive and group beam search
# generate() keywords that take one of transformers' config objects: the recipe's JSON holds its fields, the
# script calls its class with them
CONFIG_CLASSES = {"watermarking_config": "WatermarkingConfig"}
CUSTOM_MODEL_TYPES = ("playground-transformer-lm", "playground-lstm-lm")  # core/models/architectures.py


GPT2_TOKENIZER_HUB = "openai-community/gpt2"  # the hub's copy of assets/tokenizers/gpt2: the same ids
MODEL_ENV = "RECIPE_MODEL"  # the recipe's environment variable for the reader's copy of the model
TOKENIZER_ENV = "RECIPE_TOKENIZER"


def recipe(result: DecodeResult, runs: list[DecodeSettings], prompt: str) -> dict:
    """Everything that decides the runs: model and revision, dtype and device, the prompt ids, every
    setting with its seed, and the library versions.

    The model is named the way the recipe's reader can get it, never by a folder of this machine:
    `source` is a hub id (`source_kind` "hub"), a folder of this project's repository ("repository",
    e.g. assets/models/shakespeare-gpt2), or a folder's own name ("folder", a model this machine had)."""
    loaded_from = result.loaded_from or result.model
    return {
        "model": result.model, **_source(loaded_from), "revision": registry.model_revision(loaded_from),
        "prompt": prompt, "prompt_ids": result.prompt_ids, "device": result.device, "dtype": result.dtype,
        "runs": [{"name": s.name(), **s.params(), "generate_kwargs": _plain(s.generate_kwargs()), **_assistant(s),
                  **({} if s.runner.in_generate else {"not_in_generate": lineup_syntax.run_spec(s)})} for s in runs],
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__},
    }


def _plain(kwargs: dict) -> dict:
    """generate()'s keyword arguments as JSON takes them: a config object as its fields."""
    return {k: v.to_dict() if k in CONFIG_CLASSES else v for k, v in kwargs.items()}


def _kwarg(name: str, value) -> str:
    """One keyword argument of the script's generate() call: a config object as its class called with its fields."""
    if name in CONFIG_CLASSES and isinstance(value, dict):
        fields = ", ".join(f"{k}={v!r}" for k, v in value.items())
        return f"{name}={CONFIG_CLASSES[name]}({fields})"
    return f"{name}={value!r}"


def _source(name: str) -> dict:
    """Where a reader gets the model and its tokenizer, said without any path of this machine."""
    try:
        source = registry.resolve(name, allow_paths=True)
    except registry.ModelUnavailable:
        public = registry.public_name(name)
        return {"source": public, "source_kind": "folder", "tokenizer": public, "model_type": ""}
    if source.kind == "hub":
        return {"source": source.location, "source_kind": "hub", "tokenizer": source.location, "model_type": ""}
    folder = Path(source.location)
    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type", "")
    except (OSError, ValueError, AttributeError):
        model_type = ""
    try:
        where, kind = folder.relative_to(registry.ASSETS.parent).as_posix(), "repository"
    except ValueError:  # a folder of this machine (the command line's, or PLAYGROUND_MODEL_DIRS'): its name only
        where, kind = folder.name, "folder"
    own_tokenizer = registry.tokenizer_folder(str(folder)) == str(folder)
    return {"source": where, "source_kind": kind, "tokenizer": where if own_tokenizer else GPT2_TOKENIZER_HUB,
            "model_type": model_type}


def _assistant(s: DecodeSettings) -> dict:
    """An assisted run's draft model: where a reader gets it, and the knobs generate() reads from the
    draft's own generation_config (not from generate()'s keywords)."""
    if s.assistant_model is None:
        return {}
    return {"assistant": {"model": s.assistant_model, "source": _source(s.assistant_model)["source"],
                          "generation_config": {"num_assistant_tokens": s.num_assistant_tokens,
                                                "num_assistant_tokens_schedule": s.num_assistant_tokens_schedule,
                                                "assistant_confidence_threshold": s.assistant_confidence_threshold}}}


def _one_line(text) -> str:
    return " ".join(str(text).split())  # a folder's name may hold a line break, which would end a comment


def _where(rec: dict) -> str:
    """The recipe's one comment line on the model: where it is, and how to point the recipe at a copy."""
    name, source, kind = _one_line(rec["model"]), _one_line(rec["source"]), rec.get("source_kind", "hub")
    point = f"--model PATH (or {MODEL_ENV}=PATH)"
    if kind == "hub":
        return (f"# Model: {name} is {source} on the Hugging Face hub (downloaded on first use); for a copy "
                f"saved with save_pretrained, pass {point}.")
    if kind == "repository":
        return (f"# Model: {name} ships with Decoding Playground at {source} (found when run from the "
                f"repository's root); elsewhere pass your copy of that folder with {point}.")
    return (f"# Model: {name} is a model folder of the machine that made this recipe (looked for as ./{source}); "
            f"pass your copy with {point}.")


def _custom_architectures() -> str:
    """This project's own architectures, pasted in, so the script needs nothing of the project."""
    import core.models.architectures

    code = Path(core.models.architectures.__file__).read_text(encoding="utf-8")
    return "\n".join(["# ---- the model's architecture: core/models/architectures.py of Decoding Playground ----",
                      code.replace("from __future__ import annotations\n", ""),
                      "# ---- end of the architecture ----"])


def _snippet_header(rec: dict, custom: bool, separate_tokenizer: bool) -> list[str]:
    """Which model, versions and weights the script is for, and its imports."""
    header = [
        "# Reproduces Decoding Playground runs with transformers' generate(): python recipe.py [--model PATH]",
        f"# model {_one_line(rec['model'])} ({rec['revision']}); torch {rec['versions']['torch']}, "
        f"transformers {rec['versions']['transformers']}",
        _where(rec),
        *([f"# Tokenizer: GPT-2's, {rec['tokenizer']} on the hub (or assets/tokenizers/gpt2 of Decoding "
           f"Playground); pass --tokenizer PATH (or {TOKENIZER_ENV}=PATH) for a copy."] if separate_tokenizer else []),
        "import argparse",
        "import os",
    ]
    if not custom:
        header += ["import torch", "from transformers import AutoModelForCausalLM, AutoTokenizer"]
    return header


def _needs_ids(rec: dict) -> bool:
    """Whether a run's call tokenizes a setting that is text (bad words, a negative prompt, ...)."""
    return any(isinstance(v, str) and "ids(" in v or "ids(" in repr(v)
               for run in rec["runs"] for v in run["generate_kwargs"].values())


def _snippet_setup(rec: dict, separate_tokenizer: bool) -> list[str]:
    """Arguments, model, tokenizer, the prompt's ids and the pad token, before the runs."""
    kind = rec.get("source_kind", "hub")
    ids = ["def ids(text):  # a setting's text tokenized as typed, as the playground does (\" king\": word-initial)",
           "    return tokenizer(text, add_special_tokens=False).input_ids"] if _needs_ids(rec) else []
    return [
        "",
        "parser = argparse.ArgumentParser(description=\"Reproduces Decoding Playground runs with generate().\")",
        f"parser.add_argument(\"--model\", default=os.environ.get({MODEL_ENV!r}, {rec['source']!r}),",
        "                    help=\"the model: a hub id or a folder (default: %(default)s)\")",
        *([f"parser.add_argument(\"--tokenizer\", default=os.environ.get({TOKENIZER_ENV!r}, {rec['tokenizer']!r}),",
           "                    help=\"the tokenizer: a hub id or a folder (default: %(default)s)\")"]
          if separate_tokenizer else []),
        "args = parser.parse_args()",
        *(["if not os.path.isdir(args.model):  # else transformers would look for it on the hub",
           f"    parser.error(\"no model folder at \" + args.model + \": pass your copy of \" + {rec['model']!r}"
           " + \" with --model PATH\")"]
          if kind != "hub" else []),
        "MODEL = args.model",
        f"TOKENIZER = {'args.tokenizer' if separate_tokenizer else 'MODEL'}",
        f"DEVICE = torch.device({rec['device']!r})",
        f"model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.{rec['dtype']}).to(DEVICE).eval()",
        "tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)",
        f"prompt_ids = torch.tensor([{rec['prompt_ids']!r}], device=DEVICE)  # the prompt as the playground tokenized it",
        "pad = model.generation_config.pad_token_id",
        "if pad is None:",
        "    eos = model.config.eos_token_id",
        "    pad = eos[0] if isinstance(eos, list) else eos",
        *ids,
    ]


def _snippet_run(run: dict) -> list[str]:
    """One run's seed, generate() call and printed continuation; for a strategy generate() does not have,
    a comment saying so and how to reproduce it."""
    if "not_in_generate" in run:
        return ["", f"# {run['name']}",
                f"# generate() has no {run['strategy']}, so this script cannot run it; Decoding Playground's",
                f"# command line reproduces it: python -m core compare --model MODEL --prompt PROMPT "
                f"--lineup {_one_line(run['not_in_generate'])!r} --max-new-tokens {run['max_new_tokens']}"]
    kwargs = ", ".join(_kwarg(k, v) for k, v in run["generate_kwargs"].items())
    moved = [k for k in MOVED_OUT_OF_TRANSFORMERS_5 if k in run["generate_kwargs"]]
    draft = []
    if "assistant" in run:  # generate() takes the draft as a model, and its knobs from the draft's config
        a = run["assistant"]
        kwargs += ", assistant_model=assistant"
        draft = [f"# the draft model {_one_line(a['model'])}: {_one_line(a['source'])} (a hub id, or a folder of "
                 "Decoding Playground's repository)",
                 f"assistant = AutoModelForCausalLM.from_pretrained({a['source']!r}, dtype=model.dtype).to(DEVICE).eval()",
                 *[f"assistant.generation_config.{k} = {v!r}" for k, v in a["generation_config"].items()]]
    return [
        "",
        f"# {run['name']}",
        *draft,
        *([f"# ({', '.join(moved)}: transformers 5 moved this strategy out of its core; run this call with "
           "transformers==4.55.4, the last release that has it, or with the hub's custom_generate version)"]
          if moved else []),
        f"torch.manual_seed({run['seed']})  # this run's own seed",
        f"out = model.generate(prompt_ids, attention_mask=torch.ones_like(prompt_ids), pad_token_id=pad, {kwargs})",
        "print(tokenizer.decode(out[0, prompt_ids.shape[1]:]))",
    ]


def generate_snippet(rec: dict) -> str:
    """A standalone script that reproduces every run of the recipe with transformers' generate().

    It needs only the pinned torch and transformers and the model (a hub id, a folder of this project's
    repository, or the reader's copy passed with --model); it loads the weights in the app's dtype on the
    app's device, feeds the prompt ids the app decoded, and seeds torch's generator with each run's own
    seed before its call."""
    custom = rec.get("model_type") in CUSTOM_MODEL_TYPES
    separate_tokenizer = rec["tokenizer"] != rec["source"]
    body = _snippet_setup(rec, separate_tokenizer)
    configs = sorted({CONFIG_CLASSES[k] for run in rec["runs"] for k in run["generate_kwargs"] if k in CONFIG_CLASSES})
    if configs:
        body.insert(1, f"from transformers import {', '.join(configs)}")
    for run in rec["runs"]:
        body += _snippet_run(run)
    parts = (_snippet_header(rec, custom, separate_tokenizer)
             + ([_custom_architectures(), "from transformers import AutoTokenizer"] if custom else []) + body)
    return "\n".join(parts) + "\n"


def to_json(result: DecodeResult, rec: dict) -> str:
    return json.dumps({"recipe": rec, **result.to_dict()}, ensure_ascii=False, indent=1)


def to_csv(result: DecodeResult) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["run", "sequence", "step", "token_id", "token", "logprob_raw", "logprob_processed",
                     "rank_raw", "rank_processed", "entropy_raw", "top1_token", "top1_prob_raw"])
    for run in result.runs:
        for i, seq in enumerate(run.sequences):
            for s in seq.steps:
                writer.writerow([run.name, i, s.index, s.id, s.token, f"{s.logprob:.6f}",
                                 _fixed(s.processed_logprob, 6), s.rank, s.processed_rank, _fixed(s.entropy, 4),
                                 s.top[0].token, f"{s.top[0].prob:.6f}"])
    return buffer.getvalue()


def _fixed(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"  # empty: the backend could not give it


def to_markdown(result: DecodeResult) -> str:
    lines = [f"# Decoding Playground: {result.model}", "", f"**Prompt** ({len(result.prompt_ids)} tokens):", "",
             "```text", result.prompt_text, "```", "",
             "| run | sequence log-prob (raw) | perplexity | distinct-2 | text |", "| --- | --- | --- | --- | --- |"]
    for run in result.runs:
        f = run.best.figures()
        text = run.best.text.replace("|", "\\|").replace("\n", "↵")
        lines.append(f"| {run.name} | {f.sequence_logprob:.2f} | {f.perplexity:.1f} | "
                     f"{f.distinct_2:.2f} | {text} |")
    return "\n".join(lines) + "\n"
