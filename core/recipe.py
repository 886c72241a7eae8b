"""Exports of a run: JSON, CSV, Markdown, and a recipe with a `generate()` snippet that reproduces it.

The snippet seeds torch's global generator right before each `generate()` call. generate() draws one
multinomial sample per step from that generator, and the engine draws the same from a run-private
generator seeded the same way, so sampled runs come out the same too (tests check this).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import platform
from functools import lru_cache
from pathlib import Path

import torch
import transformers

from core import models
from core.playground import DecodeResult
from core.settings import DecodeSettings


def model_revision(name: str) -> str:
    """A hub id's revision, or the sha256 of a local model's weights (what exactly was loaded)."""
    try:
        source = models.resolve(name, allow_paths=True)
    except models.ModelUnavailable:
        return "unknown"
    if source.kind == "hub":
        return "main"
    weights = sorted(Path(source.location).glob("*.safetensors"))
    if not weights:
        return "unknown"
    return "sha256:" + _digest(tuple((str(w), w.stat().st_size, w.stat().st_mtime_ns) for w in weights))


@lru_cache(maxsize=16)
def _digest(files: tuple[tuple[str, int, int], ...]) -> str:
    # keyed by path, size and mtime: hashing tens of MB once per process, not on every page rerun
    digest = hashlib.sha256()
    for path, _, _ in files:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


def recipe(result: DecodeResult, runs: list[DecodeSettings], prompt: str) -> dict:
    source = _source(result.model)
    return {
        "model": result.model, "source": source["model"], "tokenizer": source["tokenizer"],
        "revision": model_revision(result.model), "prompt": prompt, "prompt_ids": result.prompt_ids,
        "device": result.device,
        "runs": [{"name": s.name(), **s.params(), "generate_kwargs": s.generate_kwargs()} for s in runs],
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__},
    }


def _source(name: str) -> dict:
    try:
        source = models.resolve(name, allow_paths=True)
    except models.ModelUnavailable:
        return {"model": name, "tokenizer": name, "ours": False}
    folder = source.location if source.kind != "hub" else None
    return {"model": source.location, "tokenizer": models.tokenizer_folder(folder)}


def generate_snippet(rec: dict) -> str:
    """Python that reproduces every run of the recipe with plain transformers (run it from the repo)."""
    lines = [
        "# Reproduces the Decoding Playground runs with transformers' generate().",
        f"# torch {rec['versions']['torch']}, transformers {rec['versions']['transformers']}",
        "import torch",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        "import core.custom_models  # registers this project's own architectures (harmless for GPT-2)",
        "",
        f"model = AutoModelForCausalLM.from_pretrained({rec['source']!r}).eval()",
        f"tokenizer = AutoTokenizer.from_pretrained({rec['tokenizer']!r})",
        f"prompt_ids = torch.tensor([{rec['prompt_ids']!r}])  # the prompt as the playground tokenized it",
        "pad = model.generation_config.pad_token_id or model.config.eos_token_id",
    ]
    for run in rec["runs"]:
        kwargs = ", ".join(f"{k}={v!r}" for k, v in run["generate_kwargs"].items())
        lines += [
            "",
            f"# {run['name']}",
            f"torch.manual_seed({run['seed']})",
            f"out = model.generate(prompt_ids, attention_mask=torch.ones_like(prompt_ids), pad_token_id=pad, {kwargs})",
            "print(tokenizer.decode(out[0, prompt_ids.shape[1]:]))",
        ]
    return "\n".join(lines) + "\n"


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
                                 f"{s.processed_logprob:.6f}", s.rank, s.processed_rank, f"{s.entropy:.4f}",
                                 s.top[0].token, f"{s.top[0].prob:.6f}"])
    return buffer.getvalue()


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
