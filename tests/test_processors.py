"""The logits processors' declarations (core/decoding/processors/): each processor is declared once, and
a new one is one file."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROMPTS
from core.decoding.processors import BANS, CUTS, RESHAPES, build_processors, ordered
from core.decoding.settings import KNOBS, DecodeSettings
from core.views import charts, internals, tokens

ROOT = Path(__file__).resolve().parents[1]


def test_every_declaration_reads_declared_settings_in_generates_order():
    # generate()'s _get_logits_processor (5.23): guidance, sequence bias, the penalties, bad words, the length
    # rules, suppressed tokens; then the warpers, top-h after temperature; the watermark last
    assert [p.name for p in ordered()] == [
        "guidance", "sequence_bias", "diversity_penalty", "repetition_penalty", "no_repeat_ngram", "bad_words",
        "min_new_tokens", "exponential_decay_length_penalty", "suppress_tokens", "temperature", "top_h",
        "plausibility", "top_k", "top_p", "min_p", "typical_p", "epsilon", "eta", "watermark"]
    for p in ordered():
        assert p.does in (RESHAPES, CUTS, BANS) and p.label and all(name in KNOBS for name in p.knobs), p.name
    every = DecodeSettings("sample", temperature=0.7, top_k=40, top_p=0.9, min_p=0.05, typical_p=0.9,
                           epsilon_cutoff=3e-4, eta_cutoff=3e-4, repetition_penalty=1.2, no_repeat_ngram_size=3,
                           watermark=True)
    assert [name for name, _ in build_processors(every)] == [
        "repetition_penalty", "no_repeat_ngram", "temperature", "top_k", "top_p", "min_p", "typical_p", "epsilon", "eta",
        "watermark"]
    assert [name for name, _ in build_processors(every.replace(strategy="greedy"))] == [
        "repetition_penalty", "no_repeat_ngram", "watermark"]  # warpers only where generate() samples; the
    # watermark after them all, in every mode (generate() appends it last)


@pytest.mark.parametrize("cutoff, name", [("epsilon_cutoff", "epsilon"), ("eta_cutoff", "eta")])
def test_the_sampling_lab_replays_epsilon_and_eta(playground, cutoff, name):
    """distribution_at raised KeyError on these: it named the processors from a list of its own."""
    settings = DecodeSettings("sample", temperature=1.5, top_k=0, max_new_tokens=4, seed=1, **{cutoff: 3e-4})
    result = playground.decode(PROMPTS[0], settings)
    seq = result.runs[0].best
    at = internals.distribution_at(playground, result.prompt_ids + seq.ids[:2], settings)
    assert [(s["name"], s["label"]) for s in at["stages"]] == [(name, "after temperature 1.5")]
    assert at["stages"][0]["kept"] == seq.steps[2].kept[name] == int((at["processed"] > 0).sum())
    fig = charts.cumulative_figure(at)
    assert {t.meta["processor"]: t.meta["kept"] for t in fig.data if t.meta} == seq.steps[2].kept
    assert any(t.name.startswith(f"{name}=0.0003 keeps") for t in fig.data)


def test_hover_cards_name_the_cut_from_its_declaration(playground):
    """A candidate epsilon removed was 'removed by the processors': the figures knew four cuts by name."""
    seq = playground.decode(PROMPTS[0], DecodeSettings("sample", top_k=0, epsilon_cutoff=0.05, max_new_tokens=4,
                                                       seed=1)).runs[0].best
    reasons = [tokens.cut_reason(step, i) for step in seq.steps for i in range(len(step.top))
               if step.top[i].processed_prob == 0]
    assert reasons and set(reasons) == {"cut by epsilon"}


ODD_BAN = '''"""A processor written for the test: it bans every token with an odd id."""
from core.decoding.knobs import knob
from core.decoding.processors import BANS, Processor, register


def _ban_odd_ids(input_ids, scores):
    banned = scores.clone()
    banned[:, 1::2] = float("-inf")
    return banned


register(Processor(
    name="odd_ban", label="odd-id ban", does=BANS, knobs=("ban_odd_ids",), order=40,
    settings={"ban_odd_ids": knob(0, "ban every token with an odd id (1 = on)", kind="int", low=0, high=1,
                                  keyword=False)},
    active=lambda s: s.ban_odd_ids == 1, build=lambda s, device: _ban_odd_ids,
    applied=lambda s: "odd ids banned", in_name=lambda s: "odd ids banned"))
'''

PROBE = '''import json
from streamlit.testing.v1 import AppTest
from core.backends.vllm import VLLMPlayground
from core.decoding.settings import DecodeSettings
from core.playground import Playground
from core.views import internals

at = AppTest.from_file("pages/1_compare.py", default_timeout=180)
at.query_params.update(lineup="greedy\\ngreedy(ban_odd_ids=1)", max_new_tokens="4")
at.run()
pg = Playground.load("shakespeare-gpt2", device="cpu")
replay = internals.distribution_at(pg, pg.tokenizer.encode("ROMEO."), DecodeSettings("sample", ban_odd_ids=1, top_k=50))
print(json.dumps({
    "page": {"exception": bool(at.exception), "warnings": [w.value for w in at.warning],
             "runs": [h.value for h in at.subheader], "link": at.query_params["lineup"]},
    "replay": {"odd": [p for i, p in zip(replay["ids"].tolist(), replay["processed"].tolist()) if i % 2],
               "even": sum(p for i, p in zip(replay["ids"].tolist(), replay["processed"].tolist()) if i % 2 == 0),
               "before_cuts": replay["before_cuts"]["label"],
               "stages": [(s["name"], s["label"]) for s in replay["stages"]]},
    "vllm": VLLMPlayground.unsupported(DecodeSettings("greedy", ban_odd_ids=1)),
}))
'''


@pytest.fixture(scope="module")
def with_odd_ban(tmp_path_factory):
    """A copy of the app with one new file, core/decoding/processors/odd_ban.py, and nothing else changed."""
    root = tmp_path_factory.mktemp("app")
    shutil.copytree(ROOT / "core", root / "core", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "pages", root / "pages", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("ui.py", "streamlit_app.py", ".streamlit"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, root / name)
        elif (ROOT / name).exists():
            shutil.copy(ROOT / name, root / name)
    (root / "assets").symlink_to(ROOT / "assets")
    (root / "core/decoding/processors/odd_ban.py").write_text(ODD_BAN, encoding="utf-8")
    return root


def _run(root, *argv):
    return subprocess.run([sys.executable, *argv], cwd=root, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HOME": str(root)})


ODD_IDS = list(range(1, 40, 2))  # the first MAX_BANNED_LISTED ids a step lists as banned


def test_a_new_processor_is_a_flag_and_shows_in_the_trace(with_odd_ban):
    assert "--ban-odd-ids" in _run(with_odd_ban, "-m", "core", "decode", "--help").stdout
    proc = _run(with_odd_ban, "-m", "core", "decode", "--prompt", "ROMEO.", "--ban-odd-ids", "1",
                "--max-new-tokens", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout)["runs"][0]
    assert run["strategy"] == "greedy" and len(run["ids"]) == 5 and all(i % 2 == 0 for i in run["ids"])
    assert all(step["banned"]["odd_ban"] == ODD_IDS for step in run["steps"])
    proc = _run(with_odd_ban, "-m", "core", "decode", "--prompt", "ROMEO.", "--ban-odd-ids", "2")
    assert proc.returncode == 2 and proc.stderr.startswith("error: ban_odd_ids must be a whole number from 0 to 1")


def test_a_new_processor_is_a_lineup_setting_beside_the_others(with_odd_ban):
    proc = _run(with_odd_ban, "-m", "core", "compare", "--prompt", "ROMEO.", "--max-new-tokens", "4", "--json",
                "--lineup", "sample(top_k=20); sample(top_k=20,ban_odd_ids=1)")
    assert proc.returncode == 0, proc.stderr
    plain, banning = json.loads(proc.stdout)["runs"]
    assert banning["name"] == "top-k 20 + odd ids banned" and all(i % 2 == 0 for i in banning["ids"])
    for step in banning["steps"]:
        assert step["banned"] == {"odd_ban": ODD_IDS} and step["kept"]["top_k"] == 20
    assert all(step["banned"] == {} and step["kept"]["top_k"] == 20 for step in plain["steps"])


def test_a_new_processor_is_a_url_parameter_replayed_in_the_sampling_lab_and_refused_on_vllm(with_odd_ban):
    proc = _run(with_odd_ban, "-c", PROBE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    page = seen["page"]
    assert not page["exception"] and not page["warnings"], page
    assert page["runs"] == ["greedy", "greedy + odd ids banned"] and "greedy(ban_odd_ids=1)" in page["link"]
    replay = seen["replay"]
    assert replay["odd"] and set(replay["odd"]) == {0.0} and replay["even"] == pytest.approx(1.0, abs=1e-5)
    assert replay["before_cuts"] == "after odd ids banned" and replay["stages"] == [["top_k", "after odd ids banned"]]
    assert seen["vllm"] == "vLLM's API has no ban_odd_ids"
