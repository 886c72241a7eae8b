"""`python -m core`: the JSON contract, and every bad input of SPEC refused with one line and exit 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.cli import main
from core.errors import PlaygroundError
from core.settings import DecodeSettings

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_decode_json_contract_in_a_real_process(tiny_dir):
    proc = subprocess.run(
        [sys.executable, "-m", "core", "decode", "--model", str(tiny_dir), "--prompt", "A long long time ago, ",
         "--strategy", "beam", "--num-beams", "3", "--no-repeat-ngram-size", "2", "--max-new-tokens", "6", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["model"] == str(tiny_dir) and data["prompt_ids"] == [32, 890, 890, 640, 2084, 11, 220]
    run = data["runs"][0]
    assert run["strategy"] == "beam"
    assert run["params"]["num_beams"] == 3 and run["params"]["no_repeat_ngram_size"] == 2
    assert run["params"]["length_penalty"] == 1.0 and run["params"]["early_stopping"] is False
    assert len(run["ids"]) == len(run["token_logprobs"]) == len(run["steps"]) == 6
    assert isinstance(run["text"], str)
    assert run["sequence_logprob"] == pytest.approx(sum(run["token_logprobs"]))
    top = run["steps"][0]["top"][0]
    assert set(top) >= {"id", "token", "prob", "processed_prob"}
    assert run["beam_tree"] and "prob" in data["distributions"]


def test_compare_runs_the_default_lineup(capsys, tiny_dir):
    code, out, _ = run_cli(capsys, "compare", "--model", tiny_dir, "--prompt", "Hello", "--max-new-tokens", 4, "--json")
    assert code == 0
    names = [r["name"] for r in json.loads(out)["runs"]]
    assert names == ["greedy", "beam 5", "beam 5 + no-repeat 2", "temperature 0.5", "temperature 1.0",
                     "temperature 2.0", "top-k 50", "top-p 0.9"]


def test_score_and_table_output(capsys, tiny_dir):
    code, out, _ = run_cli(capsys, "score", "--model", tiny_dir, "--text", "To be, or not to be")
    assert code == 0 and out.startswith("perplexity ")
    code, out, _ = run_cli(capsys, "decode", "--model", tiny_dir, "--prompt", "Hi", "--max-new-tokens", 3)
    assert code == 0 and "== greedy" in out and "step" in out


BAD = {
    "empty prompt": (["--prompt", ""], "prompt is empty"),
    "whitespace prompt": (["--prompt", "  \n\t "], "prompt is empty"),
    "prompt longer than the context": (["--prompt", " fox" * 300], "tokens would have to be cut"),
    "temperature 0": (["--strategy", "sample", "--temperature", "0"], "greedy"),
    "negative temperature": (["--strategy", "sample", "--temperature", "-1"], "greater than 0"),
    "absurd temperature": (["--strategy", "sample", "--temperature", "1e9"], "absurd"),
    "top-k negative": (["--strategy", "sample", "--top-k", "-1"], "top_k"),
    "top-k past the vocabulary": (["--strategy", "sample", "--top-k", "60000"], "vocabulary size 50257"),
    "top-p 0": (["--strategy", "sample", "--top-p", "0"], "top_p must be in (0, 1]"),
    "top-p above 1": (["--strategy", "sample", "--top-p", "1.5"], "top_p must be in (0, 1]"),
    "num_beams 0": (["--strategy", "beam", "--num-beams", "0"], "num_beams"),
    "num_beams too many for memory": (["--strategy", "beam", "--num-beams", "100000"], "GiB"),
    "max_new_tokens 0": (["--max-new-tokens", "0"], "max_new_tokens"),
    "max_new_tokens past the context": (["--max-new-tokens", "500"], "context"),
    "no-repeat negative": (["--no-repeat-ngram-size", "-1"], "no_repeat_ngram_size"),
    "top-n 0": (["--top-n", "0"], "top_n"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_exit_2(capsys, tiny_dir, case):
    args, fragment = BAD[case]
    if "--prompt" not in args:
        args = ["--prompt", "Hello", *args]
    code, out, err = run_cli(capsys, "decode", "--model", tiny_dir, *args)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err


def test_unknown_model_and_missing_weights(capsys, monkeypatch, tmp_path):
    code, _, err = run_cli(capsys, "decode", "--model", "no-such-model", "--prompt", "Hi")
    assert code == 2 and "Unknown model 'no-such-model'" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    code, _, err = run_cli(capsys, "decode", "--model", "gpt2", "--prompt", "Hi")
    assert code == 2 and "hub cannot be reached" in err and len(err.strip().splitlines()) == 1


def test_unknown_model_in_a_real_process():
    proc = subprocess.run([sys.executable, "-m", "core", "decode", "--model", "gpt5", "--prompt", "Hi"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Unknown model" in proc.stderr


def test_out_of_memory_becomes_one_sentence(playground, monkeypatch):
    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(playground.lm, "step", exhausted)
    with pytest.raises(PlaygroundError, match="Out of memory while decoding 5 rows"):
        playground.decode("Hello", DecodeSettings("beam", num_beams=5, max_new_tokens=4))
