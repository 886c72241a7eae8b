"""Contrastive and diverse (group) beam search, token for token against transformers 4.55.4's generate().

transformers 5 no longer ships `_contrastive_search` and `_group_beam_search`; 4.55.4 is the last
release that does. It runs in a venv of its own (scripts/reference_venv.sh, made once and reused under
.cache/), and tests/reference/generate_455.py prints its generate() outputs as JSON for the models
these tests save with save_pretrained.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROMPTS, save_tiny_gpt2
from core.playground import Playground
from core.decoding.settings import DecodeSettings

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "contrastive 0.6, top-k 4": DecodeSettings("contrastive", penalty_alpha=0.6, top_k=4),
    "contrastive 0.3, top-k 8": DecodeSettings("contrastive", penalty_alpha=0.3, top_k=8),
    "contrastive 1.0, top-k 2 + no-repeat 2": DecodeSettings("contrastive", penalty_alpha=1.0, top_k=2,
                                                              no_repeat_ngram_size=2),
    "contrastive 0.6, top-k 5 + repetition 1.3": DecodeSettings("contrastive", penalty_alpha=0.6, top_k=5,
                                                                 repetition_penalty=1.3),
    "beam 4, 2 groups, diversity 0.5": DecodeSettings("beam", num_beams=4, num_beam_groups=2, diversity_penalty=0.5),
    "beam 6, 3 groups, diversity 1.0, 3 returned": DecodeSettings(
        "beam", num_beams=6, num_beam_groups=3, diversity_penalty=1.0, num_return_sequences=3),
    "beam 4, 4 groups of 1, diversity 2.0, 4 returned": DecodeSettings(
        "beam", num_beams=4, num_beam_groups=4, diversity_penalty=2.0, num_return_sequences=4),
    "beam 4, 2 groups, early stop, length penalty 0.6, no-repeat 2": DecodeSettings(
        "beam", num_beams=4, num_beam_groups=2, diversity_penalty=0.5, early_stopping=True, length_penalty=0.6,
        no_repeat_ngram_size=2, num_return_sequences=2),
    "beam 6, 2 groups, never stop early, length penalty 2": DecodeSettings(
        "beam", num_beams=6, num_beam_groups=2, diversity_penalty=0.7, early_stopping="never", length_penalty=2.0),
}
MAX_NEW_TOKENS = 16


@pytest.fixture(scope="session")
def reference_python():
    """The reference venv's python, built on first use; no venv is a failure, never a skip."""
    script = ROOT / "scripts" / "reference_venv.sh"
    proc = subprocess.run(["bash", str(script)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.fail(f"The transformers 4.55.4 reference venv could not be built by scripts/{script.name} "
                    f"(exit {proc.returncode}: {last}), so contrastive and group beam search cannot be "
                    "checked against it.", pytrace=False)
    return proc.stdout.strip().splitlines()[-1]


def reference(python: str, folder, cases: list[tuple[list[int], dict]]) -> list[dict]:
    request = {"model": str(folder), "cases": [{"prompt_ids": ids, "kwargs": kw} for ids, kw in cases]}
    proc = subprocess.run([python, str(ROOT / "tests" / "reference" / "generate_455.py")], input=json.dumps(request),
                          capture_output=True, text=True, timeout=600, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def assert_same(pg: Playground, settings: DecodeSettings, run, expected: dict, label: str) -> None:
    wanted = settings.num_return_sequences if settings.is_beam else 1
    assert len(run.sequences) == wanted == len(expected["sequences"]), label
    for i, seq in enumerate(run.sequences):
        theirs = expected["sequences"][i]
        assert seq.ids == theirs[:len(seq.ids)], f"{label}, sequence {i}"
        # anything generate() has past our sequence is padding after an end-of-text
        assert all(t == pg.facts.pad_token_id for t in theirs[len(seq.ids):]), f"{label}, sequence {i}"
        if settings.is_beam:
            assert seq.beam_score == pytest.approx(expected["scores"][i], abs=1e-5), f"{label}, sequence {i}"


def check_model(python, folder, prompts=PROMPTS, cases=CASES) -> int:
    pg = Playground.load(str(folder), device="cpu", allow_paths=True)
    runs, requests = [], []
    for prompt in prompts:
        for label, settings in cases.items():
            settings = settings.replace(max_new_tokens=MAX_NEW_TOKENS)
            result = pg.decode(prompt, settings)
            runs.append((f"{label} on {prompt!r}", settings, result.runs[0]))
            requests.append((result.prompt_ids, {**settings.generate_kwargs(), "pad_token_id": pg.facts.pad_token_id}))
    for (label, settings, run), expected in zip(runs, reference(python, folder, requests)):
        assert_same(pg, settings, run, expected, label)
    # the cases must exercise the strategies: neither is what its plain counterpart would give
    plain = {"contrastive": DecodeSettings("greedy"), "beam": DecodeSettings("beam", num_beams=4)}
    for strategy, baseline in plain.items():
        ours = {tuple(r.best.ids) for _, s, r in runs if s.strategy == strategy}
        base = {tuple(pg.decode(p, baseline.replace(max_new_tokens=MAX_NEW_TOKENS)).runs[0].best.ids) for p in prompts}
        assert ours - base, f"every {strategy} case gave what {baseline.name()} gives"
    return len(runs)


@pytest.mark.parametrize("seed", [0, 1, 2], ids=lambda s: f"model-seed-{s}")
def test_same_tokens_as_transformers_4_55(reference_python, tmp_path, seed):
    folder = save_tiny_gpt2(tmp_path / f"parity-{seed}", seed=seed)
    assert check_model(reference_python, folder) == len(PROMPTS) * len(CASES)


def test_end_of_text_ends_sequences_as_in_transformers_4_55(reference_python, tmp_path):
    """Declare as end-of-text a token the model is known to produce: both stop, and finish, alike."""
    from transformers import GPT2LMHeadModel

    folder = save_tiny_gpt2(tmp_path / "eos", seed=5)
    first = Playground.load(str(folder), device="cpu", allow_paths=True)
    ends = set()
    for settings in CASES.values():
        ends.update(first.decode(PROMPTS[0], settings.replace(max_new_tokens=MAX_NEW_TOKENS)).runs[0].best.ids[2:6])
    model = GPT2LMHeadModel.from_pretrained(folder)
    eos = sorted(ends)[0]
    for config in (model.config, model.generation_config):
        config.eos_token_id = eos
        config.pad_token_id = eos
    model.save_pretrained(tmp_path / "eos-declared")
    check_model(reference_python, tmp_path / "eos-declared", prompts=PROMPTS[:2])
    pg = Playground.load(str(tmp_path / "eos-declared"), device="cpu", allow_paths=True)
    finished = [seq.finish_reason for s in CASES.values()
                for seq in pg.decode(PROMPTS[0], s.replace(max_new_tokens=MAX_NEW_TOKENS)).runs[0].sequences]
    assert "eos" in finished, "the end-of-text path was never exercised"
