"""The training code: loss falls on a tiny text, and the corpus split is what the cards say."""

import pytest
import torch

from core.training.train import Plan, build_model, encode, evaluate, split_texts, train, train_tokenizer

FIXTURE = [
    "Romeo.\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n" * 6,
    "Hamlet.\nTo be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer.\n" * 6,
]


@pytest.mark.parametrize("kind", ["gpt2", "transformer-lm", "lstm"])
def test_a_few_steps_lower_the_loss(kind):
    tokenizer = train_tokenizer(FIXTURE)
    ids = encode(tokenizer, FIXTURE)
    torch.manual_seed(0)
    model = build_model(kind, len(tokenizer), tokenizer.eos_token_id)
    before = evaluate(model, ids, block_size=32)
    losses = train(model, ids, Plan("fixture", kind, steps=30, batch_size=8, block_size=32, lr=3e-3, warmup=5),
                   progress=False)
    after = evaluate(model, ids, block_size=32)
    assert after < before - 0.5, (before, after)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_training_is_reproducible_from_its_seed():
    tokenizer = train_tokenizer(FIXTURE)
    ids = encode(tokenizer, FIXTURE)
    plan = Plan("fixture", "lstm", steps=5, batch_size=4, block_size=16, lr=3e-3, warmup=1, seed=3)
    runs = []
    for _ in range(2):
        torch.manual_seed(123)  # model init; the plan's seed drives batches and dropout
        model = build_model("lstm", len(tokenizer), tokenizer.eos_token_id)
        runs.append(train(model, ids, plan, progress=False))
    assert runs[0] == runs[1]


def test_split_holds_out_each_texts_tail_at_a_line():
    texts = {"b": "line one\nline two\n" * 50, "a": "alpha\nbeta\ngamma\n" * 40}
    train_part, val_part = split_texts(texts)
    assert len(train_part) == len(val_part) == 2
    for tr, va, title in zip(train_part, val_part, sorted(texts)):
        assert tr + "\n" + va == texts[title].strip()
        assert 0.03 < len(va) / len(texts[title]) < 0.08


@pytest.mark.parametrize("kind", ["transformer-lm", "lstm"])
def test_incremental_decoding_equals_a_full_forward(kind):
    """The KV cache (TransformerLM) and the hidden state (LSTM) give the logits of a full pass."""
    torch.manual_seed(0)
    model = build_model(kind, 300, 0).eval()
    ids = torch.randint(1, 300, (3, 16))
    with torch.no_grad():
        full = model(ids).logits
        logits, state = model.prefill(ids[:, :6])
        steps = [logits]
        for t in range(6, 15):
            state = model.select_rows(state, torch.tensor([0, 1, 2]))
            logits, state = model.step(ids[:, t:t + 1], state)
            steps.append(logits)
    assert torch.allclose(torch.stack(steps, 1), full[:, 5:15], atol=1e-5)
