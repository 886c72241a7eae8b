"""The shipped tokenizer is GPT-2's, id for id (the table in assets/tokenizers/gpt2/README.md)."""

import pytest

from core.models.registry import GPT2_TOKENIZER, load_tokenizer


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(None)


@pytest.mark.parametrize("text, ids", [
    (" ", [220]),
    ("Hello", [15496]),
    ("hello", [31373]),
    (" hello", [23748]),
    (" chartreuse", [8262, 260, 1904]),
    ("It will rain in the", [1026, 481, 6290, 287, 262]),
    ("A long long time ago, ", [32, 890, 890, 640, 2084, 11, 220]),
])
def test_ids_match_the_note(tok, text, ids):
    assert tok.encode(text) == ids


def test_unicorn_prompt_and_special_token(tok):
    prompt = ("In a shocking finding, scientist discovered a herd of unicorns living in a remote, previously "
              "unexplored valley, in the Andes Mountains. Even more surprising to the researchers was the fact "
              "that the unicorns spoke perfect English.")
    ids = tok.encode(prompt)
    assert len(ids) == 45 and ids[:5] == [818, 257, 14702, 4917, 11]
    assert tok.encode("<|endoftext|>") == [50256] and len(tok) == 50257


def test_note_travels_with_the_files():
    assert (GPT2_TOKENIZER / "README.md").read_text().startswith("# GPT-2 byte-level BPE")
