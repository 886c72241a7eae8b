"""Assisted (speculative) decoding: our engine against generate(), on shakespeare-gpt2 with shakespeare-draft.

    .venv/bin/python benchmarks/bench_speculative.py [--reps 5] [--new-tokens 64] [--num-assistant-tokens 5]

In one run, interleaved, each warmed up first: plain greedy, assisted greedy and prompt lookup with our
engine; generate() plain, with assistant_model= and with prompt_lookup_num_tokens=. Every greedy contender
must give the same tokens (checked). Printed: acceptance rate, tokens per target forward, draft forwards
per token, each contender's time as a ratio (the median over repeats of each repeat's own pair), and the
machine's load beside them.

Then the arithmetic: the measured cost of one draft forward against one target forward (c), and the
speed-up the measured acceptance would give at that c; and, *by arithmetic only* (no gpt2-large here:
the hub is unreachable), the speed-up on a pair whose target dominates the cost, gpt2-large with
distilgpt2 as the draft, at their ratio of forward FLOPs per token, over a range of acceptance rates:
tokens per check (1 - a^(g+1)) / (1 - a) for g drafted tokens at acceptance a (Leviathan et al. 2023,
eq. 1), cost per check g x c + 1 target forward (a check of g + 1 tokens costing about one forward,
as it does when the weights' reading dominates, on a GPU).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.decoding.settings import DecodeSettings  # noqa: E402
from core.models import registry  # noqa: E402
from core.playground import Playground  # noqa: E402

TARGET, DRAFT = "shakespeare-gpt2", "shakespeare-draft"
PROMPTS = ["Romeo.\n", "To be, or not to be", "KING.\nMy lords, "]
# forward FLOPs per token (2 x the weights' multiply-adds, read-out included) of the hub models
LARGE_PAIR = {"gpt2-large": 2 * (36 * 12 * 1280 ** 2 + 50257 * 1280), "distilgpt2": 2 * (6 * 12 * 768 ** 2 + 50257 * 768)}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(call):
    started = time.perf_counter()
    out = call()
    return time.perf_counter() - started, out


def count_forwards(model):
    calls = []
    return calls, model.register_forward_hook(lambda *_: calls.append(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--num-assistant-tokens", type=int, default=5)
    parser.add_argument("--lookup-tokens", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    target = Playground.load(TARGET, device="cpu")
    ours_draft = Playground.load(DRAFT, device="cpu")  # the process's one copy, which nothing changes
    # generate() reads the draft's knobs from its assistant's generation_config: a copy of its own
    theirs_draft = registry.load_hf_model(registry.resolve(DRAFT), torch.float32).eval()
    n = args.num_assistant_tokens
    theirs_draft.generation_config.num_assistant_tokens = n
    theirs_draft.generation_config.num_assistant_tokens_schedule = "constant"
    plain = DecodeSettings("greedy", max_new_tokens=args.new_tokens)
    assisted = plain.replace(assistant_model=DRAFT, num_assistant_tokens=n)
    lookup = plain.replace(prompt_lookup_num_tokens=args.lookup_tokens)
    pad = target.facts.pad_token_id
    print(f"{TARGET} ({target.parameters / 1e6:.1f}M) with {DRAFT} ({ours_draft.parameters / 1e6:.1f}M), CPU, "
          f"{torch.get_num_threads()} threads; {len(PROMPTS)} prompts x {args.new_tokens} new tokens; "
          f"{n} drafted per check; load before: {load()}")

    def ours(settings, prompt):
        return target.decode(prompt, settings).runs[0]

    def theirs(prompt_ids, **extra):
        ids = torch.tensor([prompt_ids])
        with torch.inference_mode():
            out = target.model.generate(ids, attention_mask=torch.ones_like(ids), pad_token_id=pad, do_sample=False,
                                        max_new_tokens=args.new_tokens, **extra)
        return out[0, ids.shape[1]:].tolist()

    contenders = {
        "ours plain": lambda p, ids: ours(plain, p),
        "ours assisted": lambda p, ids: ours(assisted, p),
        "ours prompt lookup": lambda p, ids: ours(lookup, p),
        "generate() plain": lambda p, ids: theirs(ids),
        "generate(assistant_model=)": lambda p, ids: theirs(ids, assistant_model=theirs_draft),
        "generate(prompt_lookup_num_tokens=)": lambda p, ids: theirs(ids, prompt_lookup_num_tokens=args.lookup_tokens),
    }
    prompt_ids = {p: target.encode_prompt(p, args.new_tokens)[0] for p in PROMPTS}
    tokens: dict = {}
    for name, call in contenders.items():  # warm-up, and the tokens each gives
        for p in PROMPTS:
            out = call(p, prompt_ids[p])
            tokens[(name, p)] = out if isinstance(out, list) else out.best.ids
    for p in PROMPTS:
        same = {name: tokens[(name, p)] == tokens[("ours plain", p)] for name in contenders}
        assert all(same.values()), (p, same)
    print("tokens: every contender gives plain greedy's tokens on every prompt (checked)")

    times = {name: [] for name in contenders}
    for _ in range(args.reps):
        for name, call in contenders.items():
            times[name].append(sum(timed(lambda p=p: call(p, prompt_ids[p]))[0] for p in PROMPTS))
    runs = {p: (ours(assisted, p), ours(lookup, p)) for p in PROMPTS}
    generated = sum(len(r.best.ids) for r, _ in runs.values())
    for label, index in (("assisted", 0), ("prompt lookup", 1)):
        spec = [r[index].speculation for r in runs.values()]
        drafted, accepted = sum(s.drafted for s in spec), sum(s.accepted for s in spec)
        forwards = sum(s.target_forwards for s in spec)
        print(f"{label:>14}: acceptance {accepted}/{drafted} = {accepted / max(1, drafted):.1%}; "
              f"{generated / forwards:.2f} tokens per target forward ({forwards} forwards for {generated} tokens); "
              f"{sum(s.draft_forwards for s in spec) / generated:.2f} draft forwards per token")

    def ratio(a, b):  # a's time over b's, per repeat, median
        return statistics.median(x / y for x, y in zip(times[a], times[b]))

    print(f"\nseconds for the {len(PROMPTS)} prompts (median of {args.reps}): "
          + ", ".join(f"{k} {statistics.median(v):.3f}" for k, v in times.items()))
    print(f"generate(assistant_model=) / ours assisted   = {ratio('generate(assistant_model=)', 'ours assisted'):.2f}x  "
          "(target: >= 1, the same tokens)")
    print(f"generate(prompt_lookup)   / ours lookup     = "
          f"{ratio('generate(prompt_lookup_num_tokens=)', 'ours prompt lookup'):.2f}x")
    print(f"ours plain / ours assisted                   = {ratio('ours plain', 'ours assisted'):.2f}x  (the draft's pay-off here)")
    print(f"ours plain / ours prompt lookup              = {ratio('ours plain', 'ours prompt lookup'):.2f}x")
    print(f"generate() plain / generate(assistant_model=) = {ratio('generate() plain', 'generate(assistant_model=)'):.2f}x")
    print(f"generate() plain / ours plain                = {ratio('generate() plain', 'ours plain'):.2f}x")
    print(f"load after: {load()}")

    # the arithmetic ------------------------------------------------------------------------------
    cost_t, cost_d, cost_check = forward_costs(target, ours_draft, n)
    spec = [r[0].speculation for r in runs.values()]
    checks = sum(s.target_forwards for s in spec)
    tau = generated / checks
    delta = sum(s.draft_forwards for s in spec) / checks
    c = cost_d / cost_t
    print(f"\nmeasured on this CPU: one target forward {cost_t * 1e3:.2f} ms, one draft forward {cost_d * 1e3:.2f} ms "
          f"(c = {c:.2f}; by FLOPs {flops_ratio():.2f}: at this size per-call overhead dominates), a check of "
          f"{n + 1} tokens {cost_check * 1e3:.2f} ms")
    predicted = tau * cost_t / (cost_check + delta * cost_d)
    print(f"per check: {tau:.2f} tokens, {delta:.2f} draft forwards -> plain / assisted = {predicted:.2f}x predicted "
          f"from these costs (measured above: {ratio('ours plain', 'ours assisted'):.2f}x)")
    c_large = LARGE_PAIR["distilgpt2"] / LARGE_PAIR["gpt2-large"]
    print(f"\nBy arithmetic, not measured: gpt2-large with distilgpt2 as draft, c = {c_large:.3f} (forward FLOPs per "
          f"token, {LARGE_PAIR['distilgpt2'] / 1e9:.2f} G / {LARGE_PAIR['gpt2-large'] / 1e9:.2f} G), a check costing one "
          "target forward:")
    print(f"  with our pair's measured profile ({tau:.2f} tokens and {delta:.2f} draft forwards per check): "
          f"{tau / (1 + delta * c_large):.2f}x")
    for gamma in (3, 5, 8):
        cells = []
        for a in (0.5, 0.6, 0.7, 0.8, 0.9):
            per_check = (1 - a ** (gamma + 1)) / (1 - a)
            cells.append(f"a={a:.1f}: {per_check / (1 + gamma * c_large):.2f}x")
        print(f"  g={gamma} drafted: " + ", ".join(cells))


def flops_ratio() -> float:
    from core.training.train import forward_flops_per_token

    return (forward_flops_per_token(Playground.load(DRAFT, device="cpu").model)
            / forward_flops_per_token(Playground.load(TARGET, device="cpu").model))


@torch.inference_mode()
def forward_costs(target, draft, n: int, reps: int = 50) -> tuple[float, float, float]:
    """Median seconds of one cached one-token forward of each model, and of a target check of n + 1 tokens,
    at a context of 64 tokens."""
    ids = torch.tensor([target.encode_prompt("To be, or not to be, that is the question:", 1)[0] * 4])[:, :64]

    def one(lm, width):
        samples = []
        for _ in range(reps):
            _, state = lm.extend(ids, None, keep=1)
            started = time.perf_counter()
            lm.extend(ids[:, :width], state, keep=width)
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)

    return one(target.lm, 1), one(draft.lm, 1), one(target.lm, n + 1)


if __name__ == "__main__":
    main()
