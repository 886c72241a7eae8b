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
from core.decoding.settings import DecodeSettings

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
    assert data["model"] == tiny_dir.name and data["prompt_ids"]  # a folder by its own name, never its path == [32, 890, 890, 640, 2084, 11, 220]
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
    "top-k past the vocabulary": (["--strategy", "sample", "--top-k", "60000"], "50257 is the vocabulary size"),
    "top-p 0": (["--strategy", "sample", "--top-p", "0"], "top_p must be in (0, 1]"),
    "top-p above 1": (["--strategy", "sample", "--top-p", "1.5"], "top_p must be in (0, 1]"),
    "num_beams 0": (["--strategy", "beam", "--num-beams", "0"], "num_beams"),
    "num_beams too many for one request": (["--strategy", "beam", "--num-beams", "100000"], "at most 64"),
    "seed past 64 bits": (["--seed", "18446744073709551616"], "seed must be a whole number from 0"),
    "temperature that overflows": (["--strategy", "sample", "--temperature", "1e-300"], "below 0.01"),
    "repetition penalty that overflows": (["--strategy", "sample", "--repetition-penalty", "1e-300"],
                                          "repetition_penalty=1e-300 is outside 0.01 to 100"),
    "length penalty that overflows": (["--strategy", "beam", "--length-penalty", "400"], "length_penalty=400"),
    "not a number": (["--temperature", "abc"], "invalid float value: 'abc'"),
    "unknown device": (["--device", "tpu"], "device must be auto, cpu, cuda or cuda:N"),
    "over the compute budget": (["--strategy", "beam", "--num-beams", "60", "--max-new-tokens", "100",
                                 "--prompt", "Hi"], None),
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
    if fragment is None:  # the budget scales with the model: give the tiny model a budget to be over
        os.environ["PLAYGROUND_BUDGET"] = "1e9"
        fragment = "over the budget of 1e+09 row-token-parameters"
    try:
        code, out, err = run_cli(capsys, "decode", "--model", tiny_dir, *args)
    except SystemExit as exc:  # argparse's own errors leave through sys.exit
        code, (out, err) = exc.code, capsys.readouterr()
    finally:
        os.environ.pop("PLAYGROUND_BUDGET", None)
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


def cli_process(*argv, **kwargs):
    return subprocess.run([sys.executable, "-m", "core", *argv], cwd=ROOT, capture_output=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, **kwargs)


@pytest.mark.parametrize("flag", ["--prompt", "--text"])
def test_invalid_utf8_is_one_line(tiny_dir, flag):
    command = "decode" if flag == "--prompt" else "score"
    proc = cli_process(command, "--model", str(tiny_dir), flag.encode(), b"caf\xe9 \xff\xfe")
    err = proc.stderr.decode()
    assert proc.returncode == 2 and err.count("\n") == 1 and "not valid UTF-8" in err, err


def broken_folder(tmp_path, tiny_dir, kind):
    folder = tmp_path / kind
    folder.mkdir()
    config = json.loads((tiny_dir / "config.json").read_text())
    if kind == "refused pickle":
        (folder / "pytorch_model.bin").write_bytes(  # a pickle that would call os.system if loaded unsafely
            b"cos\nsystem\n(S'touch /tmp/pwned-by-playground'\ntR.")
    else:
        (folder / "model.safetensors").write_bytes((tiny_dir / "model.safetensors").read_bytes())
    if kind == "auto_map":
        config["auto_map"] = {"AutoModelForCausalLM": "evil.EvilModel"}
    if kind == "invalid config.json":
        (folder / "config.json").write_text("{not json")
    else:
        (folder / "config.json").write_text(json.dumps(config))
    if kind == "no weights":
        (folder / "model.safetensors").unlink()
    return folder


@pytest.mark.parametrize("kind, fragment", [("refused pickle", "could not be"), ("auto_map", "custom code"),
                                            ("invalid config.json", "unreadable config.json"),
                                            ("no weights", "has no weights")])
def test_malformed_or_refused_model_folders_are_one_line(tmp_path, tiny_dir, kind, fragment):
    folder = broken_folder(tmp_path, tiny_dir, kind)
    proc = cli_process("decode", "--model", str(folder), "--prompt", "Hi", text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and fragment in proc.stderr, proc.stderr
    assert not Path("/tmp/pwned-by-playground").exists()


def test_no_warning_line_before_the_error_and_no_broken_pipe(tiny_dir):
    proc = cli_process("decode", "--model", str(tiny_dir), "--prompt", " fox" * 300, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error:"), proc.stderr
    # a reader that stops early (`| head`) ends the output quietly
    pipe = subprocess.Popen([sys.executable, "-m", "core", "compare", "--model", str(tiny_dir), "--prompt", "Hi",
                             "--max-new-tokens", "30", "--json"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    pipe.stdout.read(10)
    pipe.stdout.close()
    _, err = pipe.communicate(timeout=120)
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err


def test_score_table_has_a_header_and_states_the_rule(capsys, tiny_dir):
    code, out, _ = run_cli(capsys, "score", "--model", tiny_dir, "--text", "To be, or not to be")
    lines = out.splitlines()
    assert code == 0 and "first token" in lines[0] and "not scored" in lines[0]
    assert lines[1].split() == ["token", "logprob", "rank", "surprisal"]


def test_one_default_for_max_new_tokens(capsys, tiny_dir):
    from core.cli import build_parser
    from core.playground import default_lineup
    from core.decoding.settings import DEFAULT_MAX_NEW_TOKENS
    import ui

    args = build_parser().parse_args(["decode", "--prompt", "x"])
    assert args.max_new_tokens == DEFAULT_MAX_NEW_TOKENS == DecodeSettings().max_new_tokens
    assert {s.max_new_tokens for s in default_lineup()} == {DEFAULT_MAX_NEW_TOKENS}
    assert ui.SIDEBAR["max_new_tokens"].default == DEFAULT_MAX_NEW_TOKENS


def test_compare_takes_the_apps_lineup_syntax(capsys, tiny_dir):
    code, out, _ = run_cli(capsys, "compare", "--model", tiny_dir, "--prompt", "Hello", "--max-new-tokens", 4,
                           "--seed", 7, "--json", "--lineup", "greedy\nsample(temperature=0.7,top_k=0)\nsample(top_p=0.9,top_k=0)")
    runs = json.loads(out)["runs"]
    assert [r["name"] for r in runs] == ["greedy", "temperature 0.7", "top-p 0.9"]
    assert [r["params"]["seed"] for r in runs] == [7, 8, 9]  # each run its own stream: seed + position
    code, _, err = run_cli(capsys, "compare", "--model", tiny_dir, "--prompt", "Hello", "--lineup",
                           "greedy\nsample(temperature=abc)")
    assert code == 2 and err.startswith("error: Line 2 of the line-up:") and "'abc'" in err
    code, _, err = run_cli(capsys, "compare", "--model", tiny_dir, "--prompt", "Hello", "--lineup",
                           "greedy\nbeam(num_beams=2,length_penalty=250)")
    assert code == 2 and err.startswith("error: Line 2 of the line-up (beam 2, length penalty 250.0)"), err
