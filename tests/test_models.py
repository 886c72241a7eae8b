"""Loading: saved folders, the hub path (from a local Hugging Face cache), and failing fast offline."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import GPT2LMHeadModel

from core.models import registry
from core.errors import ModelUnavailable
from core.playground import Playground

ROOT = Path(__file__).resolve().parents[1]


def test_folder_round_trip_keeps_the_weights(tiny_dir, playground):
    assert (tiny_dir / "model.safetensors").is_file()
    original = GPT2LMHeadModel.from_pretrained(tiny_dir)
    for (name, a), (_, b) in zip(original.state_dict().items(), playground.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert playground.device == "cpu" and playground.facts.context_length == 128
    assert playground.facts.vocab_size == 50257 and playground.facts.eos_token_ids == (50256,)


def fake_hub_cache(root, repo_id, folder):
    """Lay a saved model out the way huggingface_hub caches a download."""
    repo = root / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / "0123456789abcdef"
    shutil.copytree(folder, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123456789abcdef")


def test_gpt2_hub_id_loads_from_the_local_cache(tmp_path, tiny_dir):
    """`--model gpt2` finds a cached download (in a fresh process: the hub reads HF_HOME at import)."""
    fake_hub_cache(tmp_path, "openai-community/gpt2", tiny_dir)
    env = {**os.environ, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "core", "decode", "--model", "gpt2", "--prompt", "Hello",
                           "--max-new-tokens", "3", "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["model"] == "gpt2" and data["prompt_ids"] == [15496]  # the shipped GPT-2 tokenizer
    assert len(data["runs"][0]["ids"]) == 3


def test_missing_weights_fail_fast_when_the_hub_is_unreachable(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    started = time.monotonic()
    with pytest.raises(ModelUnavailable) as err:
        Playground.load("distilgpt2", device="cpu")
    assert time.monotonic() - started < 10
    message = str(err.value)
    assert "python -m core download distilgpt2" in message and "\n" not in message


def test_hub_probe_says_no_on_a_closed_port(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert registry.hub_reachable(timeout=2) is False


def test_registry_offers_configured_folders_only(tmp_path, monkeypatch, tiny_dir):
    shutil.copytree(tiny_dir, tmp_path / "my-model")
    (tmp_path / "not-a-model").mkdir()
    monkeypatch.setenv("PLAYGROUND_MODEL_DIRS", str(tmp_path))
    assert "my-model" in registry.available_models() and "not-a-model" not in registry.available_models()
    assert registry.resolve("my-model").kind == "shipped"
    with pytest.raises(ModelUnavailable, match="Unknown model"):
        registry.resolve(str(tiny_dir))  # the app never loads arbitrary paths
    assert registry.resolve(str(tiny_dir), allow_paths=True).kind == "local"
    with pytest.raises(ModelUnavailable, match="no config.json"):
        registry.resolve(str(tmp_path / "not-a-model"), allow_paths=True)


def test_cpu_without_cuda_and_a_clear_error_when_cuda_is_missing():
    device, dtype = registry.pick_device("cpu")
    assert device.type == "cpu" and dtype == torch.float32
    if not torch.cuda.is_available():
        assert registry.pick_device(None)[0].type == "cpu"
        with pytest.raises(ModelUnavailable, match="no CUDA GPU"):
            registry.pick_device("cuda")
