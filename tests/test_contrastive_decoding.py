"""Contrastive decoding (Li et al. 2023; issue 20, item 3): the scores against the paper's equations written
out on hand-made tensors, and whole runs (greedy and beam search) on the shipped models against plain loops
that recompute every forward pass without a cache."""

import math

import pytest
import torch

from core import cli
from core.backends.vllm import VLLMPlayground
from core.decoding import lineup as lineup_syntax
from core.decoding.settings import DecodeSettings
from core.decoding.strategies.contrastive_decoding import contrastive_scores
from core.errors import InvalidSetting
from core.playground import Playground

EXPERT = "shakespeare-gpt2"
PROMPTS = ["Romeo.\n", "To be, or not to be", "KING HENRY.\nWhat say you, my lord?"]


def paper_scores(expert_logits: list[float], amateur_logits: list[float], alpha: float, tau: float,
                 min_plausible: int = 1) -> list[float]:
    """The paper's equations, token by token: V_head = {x : p_EXP(x) >= alpha max_w p_EXP(w)} (at least
    `min_plausible` tokens: the authors' code keeps 2 per beam), and
    CD(x) = log p_EXP(x) - log p_AMA(x) on V_head, -inf elsewhere, with p_AMA = softmax(amateur logits / tau)."""
    z_exp = sum(math.exp(v) for v in expert_logits)
    p_exp = [math.exp(v) / z_exp for v in expert_logits]
    z_ama = sum(math.exp(v / tau) for v in amateur_logits)
    p_ama = [math.exp(v / tau) / z_ama for v in amateur_logits]
    threshold = min(alpha * max(p_exp), sorted(p_exp, reverse=True)[min_plausible - 1])
    return [math.log(pe) - math.log(pa) if pe >= threshold else -math.inf for pe, pa in zip(p_exp, p_ama)]


@pytest.mark.parametrize("alpha, tau, min_plausible", [(0.1, 1.0, 1), (0.5, 0.5, 1), (0.0, 2.0, 1), (1.0, 1.0, 1),
                                                       (0.9, 1.0, 2), (0.1, 0.7, 2)])
def test_the_scores_are_the_papers_equations_on_hand_made_tensors(alpha, tau, min_plausible):
    expert = [[2.0, 1.5, 0.2, -1.0, -3.0, 0.9], [0.0, 0.0, 0.1, -5.0, 3.0, 2.9]]
    amateur = [[3.0, -0.5, 0.2, 1.0, 0.0, -2.0], [1.0, 2.0, -1.0, 0.5, 4.0, 0.0]]
    expert_lp = torch.log_softmax(torch.tensor(expert, dtype=torch.float64), dim=-1)
    got, plausible = contrastive_scores(expert_lp, torch.tensor(amateur, dtype=torch.float64), alpha, tau,
                                        min_plausible)
    for row in range(2):
        want = paper_scores(expert[row], amateur[row], alpha, tau, min_plausible)
        assert [math.isinf(w) for w in want] == torch.isinf(got[row]).tolist()
        finite = [w for w in want if not math.isinf(w)]
        assert got[row][torch.isfinite(got[row])].tolist() == pytest.approx(finite, abs=1e-12)
        assert int(plausible[row]) == len(finite)
    if alpha == 1.0:  # only the expert's most likely token is plausible
        assert plausible.tolist() == [1, 1]
    if alpha == 0.0:  # nothing is cut
        assert plausible.tolist() == [6, 6]


def test_the_paper_picks_what_neither_model_alone_would():
    """The paper's Figure 1 in miniature: the expert prefers a token the amateur likes even more; contrastive
    decoding picks the plausible token the expert likes most *relative to* the amateur."""
    expert = torch.log_softmax(torch.tensor([[3.0, 2.6, 0.0, -2.0]]), dim=-1)  # 0 > 1 >> 2, 3
    amateur = torch.tensor([[5.0, 1.0, 0.0, 4.0]])  # the amateur loves 0 and 3
    scores, plausible = contrastive_scores(expert, amateur, 0.1, 1.0)
    assert plausible.tolist() == [2] and int(scores.argmax()) == 1  # 3 is implausible, 0 is the amateur's too


# whole runs against plain loops -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def expert():
    return Playground.load(EXPERT, device="cpu")


def _logits(model, ids: list[int]) -> torch.Tensor:
    """Every forward pass from scratch (no cache): the next token's raw logits, float64."""
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1].double()


def tensor_scores(expert_logits, amateur_logits, alpha, tau, min_plausible=1) -> torch.Tensor:
    """`paper_scores` over a whole vocabulary at once (the same equations, as tensor operations)."""
    p_exp = torch.softmax(expert_logits, -1)
    threshold = torch.minimum(alpha * p_exp.max(), p_exp.sort(descending=True).values[min_plausible - 1])
    scores = p_exp.log() - torch.log_softmax(amateur_logits / tau, -1)
    return torch.where(p_exp >= threshold, scores, -math.inf)


def test_the_tensor_reference_is_the_token_by_token_one():
    e, a = torch.randn(50, dtype=torch.float64) * 3, torch.randn(50, dtype=torch.float64) * 3
    for alpha, tau, keep in [(0.1, 1.0, 1), (0.05, 0.5, 2)]:
        want = paper_scores(e.tolist(), a.tolist(), alpha, tau, keep)
        assert tensor_scores(e, a, alpha, tau, keep).tolist() == pytest.approx(want, abs=1e-12)


def loop_greedy(expert_model, amateur_model, prompt_ids, steps, alpha, tau) -> list[int]:
    ids = list(prompt_ids)
    for _ in range(steps):
        scores = tensor_scores(_logits(expert_model, ids), _logits(amateur_model, ids), alpha, tau)
        ids.append(int(scores.argmax()))
        if ids[-1] == 0:  # the shipped models' end of text
            break
    return ids[len(prompt_ids):]


@pytest.mark.parametrize("amateur", ["shakespeare-lstm", "shakespeare-transformer-lm"])
def test_greedy_contrastive_decoding_is_the_plain_loop_token_for_token(expert, amateur):
    other = expert.other(amateur)
    for prompt, (alpha, tau) in zip(PROMPTS[:2], [(0.1, 1.0), (0.3, 0.5)] if amateur.endswith("lstm") else
                                    [(0.1, 1.5), (0.2, 1.0)]):
        s = DecodeSettings("contrastive_decoding", amateur_model=amateur, cd_alpha=alpha, amateur_temperature=tau,
                           max_new_tokens=10)
        result = expert.decode(prompt, s)
        run = result.runs[0].best
        assert run.ids == loop_greedy(expert.model, other.model, result.prompt_ids, 10, alpha, tau), (prompt, alpha)
        plain = expert.decode(prompt, DecodeSettings("greedy", max_new_tokens=10)).runs[0].best.ids
        assert run.ids != plain  # the amateur changes the text (else this test would hold for plain greedy too)
        for step in run.steps:
            assert 1 <= step.kept["plausibility"] <= expert.facts.vocab_size
            assert step.processed_rank == 1  # the chosen token is the contrastive distribution's best


def test_with_cd_alpha_1_only_the_experts_best_token_is_plausible(expert):
    s = DecodeSettings("contrastive_decoding", amateur_model="shakespeare-lstm", cd_alpha=1.0, max_new_tokens=12)
    plain = expert.decode(PROMPTS[0], DecodeSettings("greedy", max_new_tokens=12)).runs[0].best
    run = expert.decode(PROMPTS[0], s).runs[0].best
    assert run.ids == plain.ids and all(step.kept["plausibility"] == 1 for step in run.steps)


def loop_beam(expert_model, amateur_model, prompt_ids, steps, beams, alpha, tau) -> tuple[list[int], float]:
    """Beam search over the summed scores, every hypothesis recomputed from scratch: keep the `beams` best
    (hypothesis, token) pairs by summed score, at least 2 plausible tokens per hypothesis. (No end of text
    may turn up: the test asserts so, since then transformers' finished-hypothesis rules would apply.)"""
    hyps = [(list(prompt_ids), 0.0)]
    for _ in range(steps):
        candidates = []
        for ids, total in hyps:
            scores = tensor_scores(_logits(expert_model, ids), _logits(amateur_model, ids), alpha, tau, 2)
            for token in torch.isfinite(scores).nonzero().flatten().tolist():
                candidates.append((total + float(scores[token]), ids + [token]))
        candidates.sort(key=lambda c: -c[0])
        assert all(c[1][-1] != 0 for c in candidates[:2 * beams]), "an end of text among the best candidates"
        hyps = [(ids, total) for total, ids in candidates[:beams]]
    best_ids, best = hyps[0]
    return best_ids[len(prompt_ids):], best


def test_beam_contrastive_decoding_is_the_plain_beam_loop(expert):
    other = expert.other("shakespeare-transformer-lm")
    s = DecodeSettings("contrastive_decoding", amateur_model="shakespeare-transformer-lm", num_beams=3,
                       max_new_tokens=6)
    result = expert.decode(PROMPTS[1], s)
    want, total = loop_beam(expert.model, other.model, result.prompt_ids, 6, 3, 0.1, 1.0)
    best = result.runs[0].best
    assert best.ids == want
    assert best.beam_score == pytest.approx(total / 6, abs=1e-3)  # the summed scores over length ** 1.0
    assert result.runs[0].beam_tree and result.runs[0].name.startswith("contrastive decoding vs shakespeare-")


# the second model: loaded once, never changed, counted in the budget, refused where it cannot be used ---------
def test_the_amateur_is_the_process_s_one_copy_and_stays_unchanged(expert):
    amateur = Playground.load("shakespeare-lstm", device="cpu")
    assert expert.other("shakespeare-lstm") is amateur
    before = [p.clone() for p in amateur.model.parameters()]
    expert.decode(PROMPTS[0], DecodeSettings("contrastive_decoding", amateur_model="shakespeare-lstm", num_beams=2,
                                             max_new_tokens=4))
    assert all(torch.equal(a, b) for a, b in zip(before, amateur.model.parameters()))


def test_the_budget_counts_the_amateur(expert, monkeypatch):
    amateur = expert.other("shakespeare-lstm")
    s = DecodeSettings("contrastive_decoding", amateur_model="shakespeare-lstm", num_beams=2, max_new_tokens=3)
    monkeypatch.setenv("PLAYGROUND_BUDGET", str(2 * 3 * (expert.parameters + amateur.parameters)))
    expert.decode(PROMPTS[0], s)  # exactly the budget
    with pytest.raises(InvalidSetting, match="plus 2 rows on shakespeare-lstm"):
        expert.decode(PROMPTS[0], s.replace(max_new_tokens=4))
    expert.decode(PROMPTS[0], DecodeSettings("beam", num_beams=2, max_new_tokens=4))  # the expert alone fits


@pytest.mark.parametrize("settings, fragment", [
    (DecodeSettings("contrastive_decoding"), "needs amateur_model"),
    (DecodeSettings("contrastive_decoding", amateur_model="no-such-model"), "amateur_model='no-such-model' cannot"),
    (DecodeSettings("contrastive_decoding", amateur_model="shakespeare-lstm", cd_alpha=1.5), "cd_alpha must be in"),
    (DecodeSettings("contrastive_decoding", amateur_model="shakespeare-lstm", amateur_temperature=0.0),
     "amateur_temperature must be from"),
    # against itself every plausible token scores 0 (at temperature 1), and greedy would pick the lowest id
    (DecodeSettings("contrastive_decoding", amateur_model=EXPERT), "is the model that decodes"),
    (DecodeSettings("contrastive_decoding", amateur_model=EXPERT, num_beams=2, amateur_temperature=0.5),
     "is the model that decodes"),
])
def test_bad_settings_are_one_sentence_naming_the_setting(expert, settings, fragment):
    with pytest.raises(Exception) as refused:
        expert.decode(PROMPTS[0], settings.replace(max_new_tokens=3))
    assert fragment in str(refused.value) and "\n" not in str(refused.value)


def test_an_amateur_with_another_tokenizer_is_refused(expert, tiny_dir):
    cli_expert = Playground.load(EXPERT, device="cpu", allow_paths=True)  # as the command line loads it
    with pytest.raises(InvalidSetting, match="reads other token ids than shakespeare-gpt2"):
        cli_expert.decode(PROMPTS[0], DecodeSettings("contrastive_decoding", amateur_model=str(tiny_dir),
                                                     max_new_tokens=3))


def test_vllm_refuses_contrastive_decoding_by_name():
    for beams in (1, 3):
        s = DecodeSettings("contrastive_decoding", amateur_model="shakespeare-lstm", num_beams=beams)
        assert VLLMPlayground.unsupported(s).startswith("vLLM has no contrastive decoding")


def test_the_command_line_and_the_line_up_carry_the_amateur(capsys):
    code = cli.main(["decode", "--model", EXPERT, "--device", "cpu", "--prompt", PROMPTS[0], "--strategy",
                     "contrastive_decoding", "--amateur-model", "shakespeare-lstm", "--cd-alpha", "0.2",
                     "--amateur-temperature", "0.5", "--max-new-tokens", "5", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    import json

    run = json.loads(out.out)["runs"][0]
    assert run["params"]["amateur_model"] == "shakespeare-lstm" and run["params"]["cd_alpha"] == 0.2
    assert run["params"]["amateur_temperature"] == 0.5 and run["strategy"] == "contrastive_decoding"
    spec = "contrastive_decoding(amateur_model=shakespeare-lstm,cd_alpha=0.2,amateur_temperature=0.5,num_beams=2)"
    runs = lineup_syntax.parse_lineup(spec, max_new_tokens=5, seed=0)
    assert lineup_syntax.parse_lineup(lineup_syntax.lineup_spec(runs), max_new_tokens=5, seed=0) == runs
    assert runs[0].amateur_model == "shakespeare-lstm" and runs[0].num_beams == 2
    assert cli.main(["decode", "--model", EXPERT, "--prompt", "x", "--strategy", "contrastive_decoding",
                     "--amateur-model", "nope", "--max-new-tokens", "2"]) == 2
    assert capsys.readouterr().err.startswith("error: amateur_model='nope' cannot be used")


def test_a_recipe_says_generate_has_no_contrastive_decoding_and_how_to_reproduce_it(expert):
    from core.views import recipe

    runs = lineup_syntax.parse_lineup("greedy;contrastive_decoding(amateur_model=shakespeare-lstm)", max_new_tokens=3,
                                      seed=0)
    result = expert.compare(PROMPTS[0], runs)
    snippet = recipe.generate_snippet(recipe.recipe(result, runs, PROMPTS[0]))
    assert snippet.count("out = model.generate(") == 1  # the greedy run only
    assert "# generate() has no contrastive_decoding, so this script cannot run it" in snippet
    assert "--lineup 'contrastive_decoding(amateur_model=shakespeare-lstm)' --max-new-tokens 3" in snippet
    compile(snippet, "recipe.py", "exec")  # still a script that runs
