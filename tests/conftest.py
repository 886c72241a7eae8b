"""Shared fixtures: small GPT-2-shaped models that the tests build, save and load back like real ones."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from core.playground import Playground

PROMPTS = [
    "A long long time ago, ",
    "In a shocking finding, scientist discovered a herd of unicorns",
    "Café, naïve façade — 你好，世界! 🦄",
]


def save_tiny_gpt2(folder, seed: int = 0, n_positions: int = 128, n_embd: int = 32, n_layer: int = 2):
    """A random GPT-2 with GPT-2's real vocabulary, written with save_pretrained (safetensors)."""
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=n_layer, n_head=2, n_embd=n_embd, n_positions=n_positions)
    model = GPT2LMHeadModel(config)
    # sharpen the random logits so greedy and beam paths are not decided by float noise
    with torch.no_grad():
        model.transformer.wte.weight.mul_(8.0)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return save_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def playground(tiny_dir):
    return Playground.load(str(tiny_dir), device="cpu", allow_paths=True)


@pytest.fixture(scope="session")
def model(playground):
    return playground.model
