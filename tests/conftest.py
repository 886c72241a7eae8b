"""Shared fixtures: small GPT-2-shaped models that the tests build, save and load back like real ones; and
the search for this machine's folders and names in what the app and the command line export."""

import getpass
import json
import re
import socket
from functools import lru_cache
from pathlib import Path

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


# the machine's folders and names in an export ------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=1)
def _words_the_models_can_write() -> frozenset[str]:
    """Every token of the shipped tokenizers (GPT-2's and the Shakespeare models'), as a lower-case word."""
    vocab = list(json.loads((ROOT / "assets" / "tokenizers" / "gpt2" / "vocab.json").read_text(encoding="utf-8")))
    for path in (ROOT / "assets" / "models").glob("*/tokenizer.json"):
        vocab += list(json.loads(path.read_text(encoding="utf-8"))["model"]["vocab"])
    return frozenset(token.lstrip("\u0120").lower() for token in vocab)  # \u0120 (Ġ): the token's leading space


def _user_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid without a name: there is no user name to leak
        return ""


@lru_cache(maxsize=1)
def _marks() -> tuple[tuple[str, re.Pattern, bool], ...]:
    """What no export may contain, each with how it is searched for.

    Folders (the project's, the home folder, as they are and resolved) are searched as paths anywhere:
    one cannot turn up by chance. The user and host names are searched as whole words, but a name shorter
    than 4 characters or one the models can write as one token (root, will, grace) could be the model's
    own word in a text or among a step's candidates, so such a name is searched only where a machine's
    name stands in a path or an address: /NAME/, /NAME:, @NAME, NAME@. The last item of each mark says
    whether it is a folder."""
    marks = []
    for what, folder in (("the project's folder", ROOT), ("the home folder", Path.home())):
        for text in {str(folder), str(folder.resolve())}:
            if len(text.strip("/\\")) > 1:  # a home folder of "/" is in every path
                marks.append((f"{what} {text}", _folder_pattern(text), True))
    for what, name in (("the user name", _user_name()), ("the host name", socket.gethostname())):
        if not name:
            continue
        n = re.escape(name)
        if len(name) >= 4 and name.lower() not in _words_the_models_can_write():
            marks.append((f"{what} {name}", re.compile(rf"(?<![\w-]){n}(?![\w-])"), False))
        else:
            marks.append((f"{what} {name} (beside / or @)",
                          re.compile(rf"[/\\]{n}(?=[/\\:])|@{n}(?![\w-])|(?<![\w-]){n}@"), False))
    return tuple(marks)


def _folder_pattern(text: str) -> re.Pattern:
    return re.compile(rf"(?<![\w.-]){re.escape(text)}(?![\w-])")  # /work/main, but not /work/mainframe


@lru_cache(maxsize=1)
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def machine_names_in(text: str | bytes, *folders: Path) -> list[str]:
    """This machine's folders and names that `text` (an export) contains, each with where: [] when none.

    `folders`: more folders of this machine that must not show (a model folder the test made). The
    plotly.js bundle that HTML exports inline is third-party code, the same on every machine; it is taken
    out before the names are searched for (it holds "root" as a word, for instance)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    marks = list(_marks()) + [(f"the folder {f}", _folder_pattern(str(f)), True) for f in folders]
    found = []
    for what, pattern, is_folder in marks:
        searched = text if is_folder else text.replace(_plotly_js(), "")
        hit = pattern.search(searched)
        if hit:
            found.append(f"{what}: ...{searched[max(0, hit.start() - 60):hit.end() + 60]}...")
    return found
