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
from core.decoding.settings import DecodeSettings


MOVED_OUT_OF_TRANSFORMERS_5 = ("penalty_alpha", "num_beam_groups")  # contrastive and group beam search
CUSTOM_MODEL_TYPES = ("playground-transformer-lm", "playground-lstm-lm")  # core/models/architectures.py


def recipe(result: DecodeResult, runs: list[DecodeSettings], prompt: str) -> dict:
    """Everything that decides the runs: model and revision, dtype and device, the prompt ids, every
    setting with its seed, and the library versions."""
    source = _source(result.model)
    return {
        "model": result.model, "source": source["model"], "tokenizer": source["tokenizer"],
        "model_type": source["model_type"], "revision": registry.model_revision(result.model), "prompt": prompt,
        "prompt_ids": result.prompt_ids, "device": result.device, "dtype": result.dtype,
        "runs": [{"name": s.name(), **s.params(), "generate_kwargs": s.generate_kwargs()} for s in runs],
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__},
    }


def _source(name: str) -> dict:
    try:
        source = registry.resolve(name, allow_paths=True)
    except registry.ModelUnavailable:
        return {"model": name, "tokenizer": name, "model_type": ""}
    folder = source.location if source.kind != "hub" else None
    model_type = ""
    if folder:
        try:
            model_type = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")).get("model_type", "")
        except (OSError, ValueError, AttributeError):
            model_type = ""
    return {"model": source.location, "tokenizer": registry.tokenizer_folder(folder), "model_type": model_type}


def _custom_architectures() -> str:
    """This project's own architectures, pasted in, so the script needs nothing of the project."""
    import core.models.architectures

    code = Path(core.models.architectures.__file__).read_text(encoding="utf-8")
    return "\n".join(["# ---- the model's architecture: core/models/architectures.py of Decoding Playground ----",
                      code.replace("from __future__ import annotations\n", ""),
                      "# ---- end of the architecture ----"])


def generate_snippet(rec: dict) -> str:
    """A standalone script that reproduces every run of the recipe with transformers' generate().

    It needs only the pinned torch and transformers and the model (a hub id, or the folder the app
    loaded); it loads the weights in the app's dtype on the app's device, feeds the prompt ids the app
    decoded, and seeds torch's generator with each run's own seed before its call."""
    custom = rec.get("model_type") in CUSTOM_MODEL_TYPES
    header = [
        "# Reproduces Decoding Playground runs with transformers' generate(): python recipe.py",
        f"# model {rec['model']} ({rec['revision']}); torch {rec['versions']['torch']}, "
        f"transformers {rec['versions']['transformers']}",
    ]
    if not custom:
        header += ["import torch", "from transformers import AutoModelForCausalLM, AutoTokenizer"]
    body = [
        "",
        f"MODEL = {rec['source']!r}  # a hub id, or the folder the playground loaded (change it to your copy)",
        f"TOKENIZER = {rec['tokenizer']!r}",
        f"DEVICE = torch.device({rec['device']!r})",
        f"model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.{rec['dtype']}).to(DEVICE).eval()",
        "tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)",
        f"prompt_ids = torch.tensor([{rec['prompt_ids']!r}], device=DEVICE)  # the prompt as the playground tokenized it",
        "pad = model.generation_config.pad_token_id",
        "if pad is None:",
        "    eos = model.config.eos_token_id",
        "    pad = eos[0] if isinstance(eos, list) else eos",
    ]
    for run in rec["runs"]:
        kwargs = ", ".join(f"{k}={v!r}" for k, v in run["generate_kwargs"].items())
        moved = [k for k in MOVED_OUT_OF_TRANSFORMERS_5 if k in run["generate_kwargs"]]
        body += [
            "",
            f"# {run['name']}",
            *([f"# ({', '.join(moved)}: transformers 5 moved this strategy out of its core; run this call with "
               "transformers==4.55.4, the last release that has it, or with the hub's custom_generate version)"]
              if moved else []),
            f"torch.manual_seed({run['seed']})  # this run's own seed",
            f"out = model.generate(prompt_ids, attention_mask=torch.ones_like(prompt_ids), pad_token_id=pad, {kwargs})",
            "print(tokenizer.decode(out[0, prompt_ids.shape[1]:]))",
        ]
    parts = header + ([_custom_architectures(), "from transformers import AutoTokenizer"] if custom else []) + body
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
        lines.append(f"| {run.name} | {f['sequence_logprob']:.2f} | {f['perplexity']:.1f} | "
                     f"{f['distinct']['distinct_2']:.2f} | {text} |")
    return "\n".join(lines) + "\n"
