"""The lean GPT-2 forward pass (core/models/lean_gpt2.py) held to transformers' own forward and cache.

The parity suites (test_parity*.py, test_sampling.py, test_strategies.py, test_custom_generate.py) already
decode through it, since `adapter_for` picks it for every GPT-2; here each of its parts is compared with
transformers' forward pass directly, bit for bit (torch.equal) at the same batch size: prefill, steps, a
block of tokens continuing a cache, the cache growing past its chunk, the reorder of beams, the hidden
states, the head at every batch size; and which forward is chosen when."""

import json
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings as hsettings, strategies as st
from transformers import DynamicCache, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from conftest import ROOT
from core.errors import InvalidSetting
from core.models import lean_gpt2
from core.models.forwards import adapter_for
from core.models.lm import HFCausalLM, forward_choice, reorder_in_place, row_moves
from core.models.lean_gpt2 import LeanGPT2
from core.playground import Playground, default_lineup



@pytest.fixture(scope="module")
def gpt2():
    torch.manual_seed(3)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=160, vocab_size=300,
                                       bos_token_id=0, eos_token_id=0)).eval()
    with torch.no_grad():
        model.transformer.wte.weight.mul_(8.0)  # sharp logits, so greedy paths are not ties
    return model


def reference_steps(model, prompt, feed):
    """transformers' logits (R, V) after the prompt and after each column of `feed` (R, N), and its cache
    (the head on the last position only, as the engine asks: F.linear's bits depend on its row count)."""
    with torch.inference_mode():
        out = model(input_ids=prompt, use_cache=True, logits_to_keep=1)
        logits, cache = [out.logits[:, -1].float()], out.past_key_values
        for i in range(feed.shape[1]):
            out = model(input_ids=feed[:, i:i + 1], past_key_values=cache, use_cache=True, logits_to_keep=1)
            logits.append(out.logits[:, -1].float())
            cache = out.past_key_values
    return logits, cache


def test_prefill_and_steps_give_transformers_logits_past_a_chunk(gpt2):
    """120 steps from a 20-token prompt: the cache starts with one chunk (64 positions) and grows twice,
    to 128 and then to the context's 160."""
    lean = LeanGPT2(gpt2)
    prompt = torch.randint(0, 300, (1, 20))
    feed = torch.randint(0, 300, (1, 120))
    expected, _ = reference_steps(gpt2, prompt, feed)
    logits, state = lean.prefill(prompt)
    capacities = {state.capacity}
    assert torch.equal(logits, expected[0])
    for i in range(feed.shape[1]):
        logits, state = lean.step(feed[:, i:i + 1], state)
        capacities.add(state.capacity)
        assert torch.equal(logits, expected[i + 1]), f"step {i}"
    assert state.length == 140 and capacities == {64, 128, 160}  # capped at n_positions


def test_rows_repeated_reordered_and_dropped_as_transformers_reorders_its_cache(gpt2):
    """Both adapters' reorders (the lean cache's and ours of transformers' DynamicCache, in place) against
    transformers' own reorder_cache."""
    lean, hf = LeanGPT2(gpt2), HFCausalLM(gpt2)
    prompt = torch.randint(0, 300, (1, 12))
    _, state = lean.prefill(prompt)
    _, hf_state = hf.prefill(prompt)
    with torch.inference_mode():
        ref = gpt2(input_ids=prompt, use_cache=True, logits_to_keep=1).past_key_values
    moves = [torch.zeros(5, dtype=torch.long),  # the prompt's row for 5 rows (the transposed head)
             torch.tensor([2, 2, 0, 1, 4]),  # beams reordered (row 3 dropped, row 2 twice)
             torch.tensor([1, 2, 0, 4, 3]),  # two cycles: rows set aside before they are written over
             torch.tensor([0, 1, 2, 3, 4]),  # nobody moves
             torch.tensor([3, 1])]  # runs finished (F.linear's head)
    for rows in moves:
        state = lean.select_rows(state, rows)
        hf_state = hf.select_rows(hf_state, rows)
        ref.reorder_cache(rows)
        ids = torch.randint(0, 300, (rows.shape[0], 1))
        logits, state = lean.step(ids, state)
        hf_logits, hf_state = hf.step(ids, hf_state)
        with torch.inference_mode():
            out = gpt2(input_ids=ids, past_key_values=ref, use_cache=True, logits_to_keep=1)
        ref = out.past_key_values
        assert torch.equal(logits, out.logits[:, -1].float()), rows
        assert torch.equal(hf_logits, out.logits[:, -1].float()), rows


@hsettings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 7), min_size=1, max_size=8).flatmap(
    lambda rows: st.just([r % len(rows) for r in rows])))
def test_reorder_in_place_is_a_gather_copying_each_moved_row_once(rows):
    """Any reorder of a same-sized batch (forks, swaps, cycles, rows that stay) ends as index_select
    would leave it, with one copy per row whose source changed."""
    cache = torch.randn(2, 3, len(rows), 4)
    expected = cache.index_select(2, torch.tensor(rows))
    reorder_in_place([cache], 2, torch.tensor(rows))
    assert torch.equal(cache, expected)
    copies = [m for m in row_moves(rows) if m[0] != "save"]
    assert len(copies) == sum(source != row for row, source in enumerate(rows))


def test_a_block_of_tokens_continues_the_cache_with_the_offset_causal_mask(gpt2):
    """A verifier's pass (speculative decoding) feeds several tokens at once after the prompt."""
    lean = LeanGPT2(gpt2)
    prompt, block = torch.randint(0, 300, (1, 9)), torch.randint(0, 300, (1, 5))
    _, state = lean.prefill(prompt)
    logits, state, hidden = lean.step(block, state, hidden_states=True)
    with torch.inference_mode():  # as generate(assistant_model=) verifies: the prompt's cache, then the block
        cache = gpt2(input_ids=prompt, use_cache=True, logits_to_keep=1).past_key_values
        verified = gpt2(input_ids=block, past_key_values=cache, use_cache=True, output_hidden_states=True,
                        logits_to_keep=1)
        whole = gpt2(input_ids=torch.cat([prompt, block], 1), output_hidden_states=True, logits_to_keep=1)
    assert torch.equal(logits, verified.logits[:, -1].float())
    assert torch.equal(hidden, verified.hidden_states[-1])
    # One pass over all 14 tokens multiplies other matrix shapes, so its bits may differ on another BLAS;
    # the mask and the positions are right when the values agree.
    torch.testing.assert_close(logits, whole.logits[:, -1].float(), rtol=1e-5, atol=1e-5)
    assert state.length == 14


def test_hidden_states_are_transformers_last_hidden_states(gpt2):
    """What contrastive search compares: the final LayerNorm's output, as transformers' hidden_states[-1]."""
    prompt = torch.randint(0, 300, (1, 7))
    lean, ref = LeanGPT2(gpt2), HFCausalLM(gpt2)
    (la, sa, ha), (ra, _, hr) = lean.prefill(prompt, hidden_states=True), ref.prefill(prompt, hidden_states=True)
    assert ha.shape == hr.shape == (1, 7, 32) and torch.equal(ha, hr) and torch.equal(la, ra)


def test_the_head_gives_f_linears_bits_at_every_batch_size(gpt2):
    """x @ W.T (kept transposed) from 4 rows on where this BLAS makes it exact, else F.linear: transformers' logits."""
    lean = LeanGPT2(gpt2)  # head_t is None where this machine's BLAS would not give F.linear's bits
    weight = gpt2.lm_head.weight
    with torch.inference_mode():
        for rows in [*range(1, 21), 32, 64]:
            x = torch.randn(rows, 32)
            assert torch.equal(lean._logits(x), torch.nn.functional.linear(x, weight)), rows


def test_the_engine_decodes_the_same_through_either_forward(tiny_dir):
    """The whole default line-up through the lean forward and through transformers': the same tokens and
    log-probs; and the result names the forward that ran."""
    lean = Playground.load(str(tiny_dir), device="cpu", allow_paths=True)
    hf = Playground.load(str(tiny_dir), device="cpu", allow_paths=True, forward="transformers")
    assert (lean.engine, hf.engine) == ("lean", "transformers") and isinstance(lean.lm, LeanGPT2)
    assert lean.fingerprint() != hf.fingerprint()  # shared results never mix the two
    lineup = default_lineup(16, seed=0)
    a, b = lean.compare("A long long time ago, ", lineup), hf.compare("A long long time ago, ", lineup)
    assert a.to_dict()["engine"] == "lean" and b.to_dict()["engine"] == "transformers"
    for ra, rb in zip(a.runs, b.runs):
        for sa, sb in zip(ra.sequences, rb.sequences):
            assert sa.ids == sb.ids, ra.name
            assert sa.token_logprobs == sb.token_logprobs, ra.name


def test_the_forward_is_chosen_by_flag_then_environment(gpt2, monkeypatch):
    monkeypatch.delenv("PLAYGROUND_FORWARD", raising=False)
    assert type(adapter_for(gpt2)) is LeanGPT2
    assert type(adapter_for(gpt2, "transformers")) is HFCausalLM
    monkeypatch.setenv("PLAYGROUND_FORWARD", "transformers")
    assert type(adapter_for(gpt2)) is HFCausalLM
    assert type(adapter_for(gpt2, "lean")) is LeanGPT2  # the flag wins over the environment
    monkeypatch.setenv("PLAYGROUND_FORWARD", "fast<script>")
    with pytest.raises(InvalidSetting, match=r"forward must be one of auto, lean, transformers, got 'fast<script>'"):
        forward_choice()


def test_models_it_cannot_run_fall_back_or_are_refused(gpt2):
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2)).eval()
    assert "GPT2LMHeadModel" in lean_gpt2.unsupported(llama)
    assert type(adapter_for(llama)) is HFCausalLM
    with pytest.raises(InvalidSetting, match="forward=lean cannot decode this model"):
        adapter_for(llama, "lean")
    eager = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64,
                                       attn_implementation="eager")).eval()
    assert "eager" in lean_gpt2.unsupported(eager) and type(adapter_for(eager)) is HFCausalLM
    assert lean_gpt2.unsupported(gpt2) is None


def test_cli_names_the_forward_and_switches_back(tiny_dir):
    base = [sys.executable, "-m", "core", "decode", "--model", str(tiny_dir), "--prompt", "Hello",
            "--max-new-tokens", "6", "--json"]
    outs = {}
    for forward in ("auto", "transformers"):
        proc = subprocess.run(base + ["--forward", forward], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        outs[forward] = json.loads(proc.stdout)
    assert outs["auto"]["engine"] == "lean" and outs["transformers"]["engine"] == "transformers"
    assert outs["auto"]["runs"][0]["ids"] == outs["transformers"]["runs"][0]["ids"]
    proc = subprocess.run(base + ["--forward", "turbo"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "invalid choice: 'turbo'" in proc.stderr


def test_memory_stays_within_one_chunk_of_what_is_used(gpt2):
    """The cache holds fewer than CAPACITY_CHUNK unused positions per row, and never more than the context."""
    lean = LeanGPT2(gpt2)
    logits, state = lean.prefill(torch.randint(0, 300, (1, 150)))
    assert state.capacity == 160  # the context, not 150 + 64
    state = lean.select_rows(state, torch.zeros(3, dtype=torch.long))
    # what the memory check counts per row and position: layers x (keys, values) x hidden x float32
    assert lean.facts.state_bytes_per_token == 2 * 2 * 32 * 4
    assert state.kv.numel() * 4 == 3 * 160 * lean.facts.state_bytes_per_token
