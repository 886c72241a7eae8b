"""The pipeline at a step (core/decoding/pipeline.py): for every processor declared, its last stage is the
trace's processed distribution and the softmax of generate(output_scores=True)'s scores at that step, on
greedy, beam and sampling runs; each stage says what its processor did; the command line's contract."""

import json

import pytest
import torch
import torch.nn.functional as F

from conftest import PROMPTS
from core.cli import main
from core.text_tables import pipeline_table
from core.decoding.knobs import TokenTexts, check_knob
from core.pipeline import RAW, pipeline_at, replayable, stages_at
from core.decoding.processors import BANS, CUTS, PROCESSORS, RESHAPES, RunContext, build_processors, ordered
from core.decoding.settings import KNOBS, DecodeSettings, validate
from core.errors import InvalidSetting
from core.views import pipeline_view

N = 10  # new tokens a run decodes
# a value that turns each processor on, for those declared today; a processor declared later without one here
# is turned on by a value from its knob's range (`turned_on`), or the test names it
ON = {"repetition_penalty": {"repetition_penalty": 1.3}, "no_repeat_ngram": {"no_repeat_ngram_size": 2},
      "temperature": {"temperature": 0.7}, "top_k": {"top_k": 20}, "top_p": {"top_p": 0.8}, "min_p": {"min_p": 0.05},
      "typical_p": {"typical_p": 0.8}, "epsilon": {"epsilon_cutoff": 3e-4}, "eta": {"eta_cutoff": 3e-4},
      # generate()'s other controls (core/decoding/processors/controls.py)
      "guidance": {"guidance_scale": 1.5}, "sequence_bias": {"sequence_bias": ((" the", -5.0), (" of", 2.0))},
      "bad_words": {"bad_words": (" the", " of the")}, "min_new_tokens": {"min_new_tokens": 5},
      "exponential_decay_length_penalty": {"exponential_decay_length_penalty": (2, 1.5)},
      "suppress_tokens": {"suppress_tokens": (" the",)}, "top_h": {"top_h": 0.6}}
BASE = {"greedy": DecodeSettings("greedy", max_new_tokens=N),
        "beam": DecodeSettings("beam", num_beams=3, max_new_tokens=N),
        "sample": DecodeSettings("sample", top_k=0, max_new_tokens=N, seed=5)}
LIMITS = {"vocab_size": 50257, "context_length": 128}


def _candidates(k):
    if k.kind == "bool":  # a switch (the watermark): on
        return [True]
    if k.kind == "int":
        low = k.low if isinstance(k.low, int) else 0
        return [low + 1, low + 2, low + 3]
    low, high = (b if isinstance(b, (int, float)) else None for b in (k.low, k.high))
    if low is not None and high is not None:
        return [low + (high - low) * f for f in (0.5, 0.1, 0.9, 0.01)]
    return [1.5, 0.5, 2.0]


def turned_on(p, base: DecodeSettings) -> DecodeSettings | None:
    """`base` with `p` on: the value in ON, else the first value from its first knob's range that turns it on."""
    if p.name in ON:
        return base.replace(**ON[p.name])
    for value in _candidates(KNOBS[p.knobs[0]]):
        s = base.replace(**{p.knobs[0]: value})
        try:
            check_knob(p.knobs[0], value, KNOBS[p.knobs[0]], LIMITS)
            validate(s, **LIMITS)
        except InvalidSetting:
            continue
        if p.active(s):
            return s
    return None


CASES = [(p.name, kind) for p in ordered() if p.build is not None
         for kind in BASE if (kind == "sample" or not p.sampling_only)
         and replayable(BASE[kind].replace(**ON.get(p.name, {})))]  # guidance on beams: refused, one sentence


def generate(pg, prompt_ids, settings):
    ids = torch.tensor([prompt_ids])
    torch.manual_seed(settings.seed)  # as the recipe does: sampling then draws the engine's tokens
    return pg.model.generate(ids, attention_mask=torch.ones_like(ids), pad_token_id=pg.facts.pad_token_id,
                             output_scores=True, return_dict_in_generate=True,
                             **settings.generate_kwargs(TokenTexts(pg.tokenizer)))


def test_every_processor_declared_is_covered():
    """A new declaration is in CASES, on every strategy its mode allows, with settings that turn it on."""
    assert {"repetition_penalty", "no_repeat_ngram", "temperature", "top_k", "top_p"} <= {name for name, _ in CASES}
    assert {kind for name, kind in CASES if name == "repetition_penalty"} == {"greedy", "beam", "sample"}
    for name, kind in CASES:
        assert turned_on(PROCESSORS[name], BASE[kind]) is not None, f"give {name} a value that turns it on in ON"


@pytest.mark.parametrize("name, kind", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_last_stage_is_the_trace_and_generates_scores(playground, name, kind):
    settings = turned_on(PROCESSORS[name], BASE[kind])
    result = playground.compare(PROMPTS[0], [settings], keep_distributions=True)
    seq = result.runs[0].best
    out = generate(playground, result.prompt_ids, settings)
    prompt_len = len(result.prompt_ids)
    assert seq.ids == out.sequences[0, prompt_len:prompt_len + len(seq.ids)].tolist()
    built = [n for n, _ in build_processors(settings, RunContext(
        "cpu", prompt_len, playground.facts.eos_token_ids, TokenTexts(playground.tokenizer), playground.lm))]
    assert name in built
    for k in sorted({0, len(seq.steps) // 2, len(seq.steps) - 1}):
        view = pipeline_at(playground, PROMPTS[0], [settings], 0, k, result=result)
        step = seq.steps[k]
        assert [st.processor for st in view.stages] == ["", *built]
        assert pipeline_view.stage_names(view) == [RAW, *(PROCESSORS[n].knobs[0] for n in built)]
        last = view.stages[-1]
        ours = F.softmax(step.distribution, -1)  # the trace's processed distribution (beam: its scores, renormalised)
        row = out.beam_indices[0, k].item() if settings.is_beam else 0
        theirs = F.softmax(out.scores[k][row], -1)
        for expected in (ours, theirs):
            assert torch.equal(last.probs > 0, expected > 0), (k, "kept sets differ")
            assert torch.allclose(last.probs, expected, atol=1e-5), k
        assert last.chosen_rank == step.processed_rank and view.token_id == step.id
        assert last.chosen_prob == pytest.approx(ours[step.id].item(), abs=1e-5)
        assert view.stages[0].chosen_rank == step.rank and view.stages[0].entropy == pytest.approx(step.entropy, abs=1e-4)
        assert last.entropy == pytest.approx(step.processed_entropy, abs=1e-4)
        for st in view.stages[1:]:
            if PROCESSORS[st.processor].does == CUTS:
                assert st.kept == step.kept[st.processor], (k, st.processor)
            if PROCESSORS[st.processor].does == BANS and st.changed <= len(st.changed_ids):
                assert sorted(st.changed_ids) == sorted(step.banned[st.processor]), (k, st.processor)


def test_each_stage_says_what_its_processor_did(playground):
    """Repetition penalty, top-k and top-p, each against what it is defined to do (transformers' classes)."""
    settings = DecodeSettings("sample", repetition_penalty=1.3, temperature=1.5, top_k=20, top_p=0.9, seed=3,
                              no_repeat_ngram_size=3, max_new_tokens=N)
    result = playground.compare(PROMPTS[1], [settings])
    seq = result.runs[0].best
    view = pipeline_at(playground, PROMPTS[1], [settings], 0, 4, result=result, top_n=5)
    names = [st.name for st in view.stages]
    assert names == ["raw", "repetition_penalty", "no_repeat_ngram_size", "temperature", "top_k", "top_p"]
    raw, penalty, no_repeat, temperature, top_k, top_p = view.stages
    prefix = result.prompt_ids + seq.ids[:4]
    # the penalty changes exactly the tokens already in the input, and removes none
    assert penalty.acted and penalty.changed == len(set(prefix)) and penalty.kept == raw.kept
    assert set(penalty.changed_ids) <= set(prefix) and penalty.did.startswith(f"down-weighted {len(set(prefix))} token")
    # no 3-gram repeats yet in this prompt: the ban does nothing, and says so
    if no_repeat.changed == 0:
        assert not no_repeat.acted and no_repeat.did == "does nothing at this step"
    assert temperature.did == "reshapes every token's score (temperature 1.5)" and temperature.kept == raw.kept
    # top-k keeps the 20 most likely of what it saw; top-p the smallest prefix of those reaching 0.9
    assert top_k.kept == 20 and top_k.changed == temperature.kept - 20
    assert top_k.did == f"cut {temperature.kept - 20:,} tokens, keeps 20"
    assert set(top_k.changed_ids).isdisjoint(t.id for t in top_k.top)
    order = temperature.probs.sort(descending=True)
    renormalised = order.values[:20] / order.values[:20].sum()
    expected = int((renormalised.cumsum(0) < 0.9).sum()) + 1  # TopPLogitsWarper keeps the token crossing top_p
    assert top_p.kept == min(expected, 20) == seq.steps[4].kept["top_p"]
    assert top_p.probs.sum().item() == pytest.approx(1.0, abs=1e-5) and len(top_p.top) == min(5, top_p.kept)
    for st in view.stages:  # the chosen token survives every stage, with its rank among what is left
        assert 0 < st.chosen_prob <= 1 and 1 <= st.chosen_rank <= st.kept and st.top[0].prob >= st.chosen_prob
    assert {"min-p", "typical-p", "epsilon", "eta"} <= set(view.not_applied)
    assert not {"repetition penalty", "no-repeat-n-gram", "temperature", "top-k", "top-p"} & set(view.not_applied)


def test_a_greedy_run_has_no_warper_stages_and_a_beam_run_says_whose_path(playground):
    runs = [DecodeSettings("greedy", max_new_tokens=6), DecodeSettings("beam", num_beams=3, max_new_tokens=6,
                                                                        no_repeat_ngram_size=2)]
    greedy = pipeline_at(playground, PROMPTS[0], runs, 0, 2)
    assert [st.name for st in greedy.stages] == ["raw"] and greedy.scores == "logits"
    assert greedy.stages[0].chosen_rank == 1  # greedy takes the top of the raw distribution
    beam = pipeline_at(playground, PROMPTS[0], runs, 1, 2)
    assert [st.name for st in beam.stages] == ["raw", "no_repeat_ngram_size"] and beam.scores == "log-probs"
    assert "beam_indices" in beam.sequence and "best returned hypothesis" in beam.sequence


def test_group_beam_search_and_positions_out_of_range_are_one_sentence(playground):
    runs = [DecodeSettings("greedy", max_new_tokens=3)]
    for run, step, fragment in [(1, 0, "run=1 is not a run of this line-up: its 1 run(s) are numbered from 0 to 0."),
                                (-1, 0, "run=-1 is not a run"), (0, 3, "step=3 is not a step of run 0 (greedy): its 3 "
                                                                       "step(s) are numbered from 0 to 2."),
                                (0, -1, "step=-1 is not a step")]:
        with pytest.raises(InvalidSetting) as exc:
            pipeline_at(playground, PROMPTS[0], runs, run, step)
        assert fragment in str(exc.value) and str(exc.value).count(". ") == 0
    group = DecodeSettings("beam", num_beams=4, num_beam_groups=2, diversity_penalty=1.0, max_new_tokens=3)
    with pytest.raises(InvalidSetting, match="diverse beam search lowers each group's tokens"):
        pipeline_at(playground, PROMPTS[0], [group], 0, 0)
    for beams in (1, 3):  # refused before anything is decoded (the amateur is not even loaded)
        contrast = DecodeSettings("contrastive_decoding", amateur_model="shakespeare-lstm", num_beams=beams)
        with pytest.raises(InvalidSetting, match="^The pipeline cannot be shown for contrastive decoding vs shakespeare-lstm"):
            pipeline_at(playground, PROMPTS[0], [contrast], 0, 0)


def test_stages_at_reads_a_given_path(playground):
    """The replay itself, on a path of one's own: each stage is the processors so far applied to the logits."""
    settings = DecodeSettings("sample", top_k=10, temperature=0.5)
    ids = playground.tokenizer.encode(PROMPTS[0])
    stages = stages_at(playground, ids, settings, chosen=ids[-1], top_n=3)
    logits = playground.lm.all_logits(torch.tensor([ids]))[0, -1]
    assert torch.allclose(stages[1].probs, F.softmax(logits / 0.5, -1), atol=1e-6)
    kept = F.softmax(logits / 0.5, -1).topk(10)
    assert torch.allclose(stages[2].probs[kept.indices], kept.values / kept.values.sum(), atol=1e-6)
    assert [st.does for st in stages] == [RAW, RESHAPES, CUTS]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_line_prints_the_stages(capsys, tiny_dir, playground):
    lineup = "greedy; sample(repetition_penalty=1.3,top_k=20,top_p=0.9)"
    code, out, err = run_cli(capsys, "pipeline", "--model", tiny_dir, "--prompt", PROMPTS[0], "--lineup", lineup,
                             "--run", 1, "--step", 3, "--max-new-tokens", 6, "--seed", 2, "--top-n", 4, "--json")
    assert code == 0, err
    got = json.loads(out)
    assert [s["name"] for s in got["stages"]] == ["raw", "repetition_penalty", "top_k", "top_p"]
    for stage in got["stages"]:
        assert {"name", "kept", "entropy", "chosen_rank", "chosen_prob", "top"} <= set(stage)
        assert len(stage["top"]) <= 4 and all(set(t) == {"id", "token", "prob"} for t in stage["top"])
    runs = [DecodeSettings("greedy", max_new_tokens=6, seed=2),
            DecodeSettings("sample", repetition_penalty=1.3, top_k=20, top_p=0.9, max_new_tokens=6, seed=3)]
    same = pipeline_at(playground, PROMPTS[0], runs, 1, 3, top_n=4).to_dict()
    assert got["stages"] == json.loads(json.dumps(same["stages"])) and got["token"] == same["token"]
    assert got["stages"][2]["kept"] == 20 and got["run"] == 1 and got["step"] == 3
    table = pipeline_table(pipeline_at(playground, PROMPTS[0], runs, 1, 3, top_n=4)).splitlines()
    assert table[1].startswith("stage") and [line.split()[0] for line in table[2:6]] == [s["name"] for s in got["stages"]]
    assert "keeps 20" in table[4]
    code, out, err = run_cli(capsys, "pipeline", "--model", tiny_dir, "--prompt", PROMPTS[0], "--lineup", lineup,
                             "--max-new-tokens", 6, "--run", 0, "--step", 6)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "step=6 is not a step of run 0 (greedy): its 6 step(s) are numbered from 0 to 5." in err
