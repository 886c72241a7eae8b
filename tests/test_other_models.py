"""A request may use more than one model (issue 20, item 5): each loads once per process, is shared and never
changed, and the request budget counts the rows on every model."""

import threading

import pytest

from conftest import save_tiny_gpt2
from core import limits
from core.decoding.knobs import check_model_name
from core.errors import InvalidSetting
from core.models import loaded
from core.playground import Playground


def test_a_model_loads_once_per_process_however_many_ask_at_once(tiny_dir):
    got, barrier = [], threading.Barrier(4)

    def ask():
        barrier.wait()
        got.append(loaded.load(str(tiny_dir), device="cpu", allow_paths=True))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and all(g is got[0] for g in got)
    pg = Playground.load(str(tiny_dir), device="cpu", allow_paths=True)
    assert pg.model is got[0].model and Playground.load(str(tiny_dir), device="cpu", allow_paths=True) is pg
    assert pg.other(str(tiny_dir)) is pg  # another model of a request: the same object, not a second copy
    assert not any(p.requires_grad for p in pg.model.parameters()) and not pg.model.training


def test_another_model_is_on_the_same_device_and_a_folder_only_where_folders_are_allowed(tiny_dir, tmp_path):
    pg = Playground.load(str(tiny_dir), device="cpu", allow_paths=True)
    other = pg.other(str(save_tiny_gpt2(tmp_path / "second", seed=1)))
    assert other is not pg and other.device == pg.device and other.model is not pg.model
    assert pg.shares_tokenizer(other)  # both carry GPT-2's tokenizer
    shipped = Playground.load("shakespeare-gpt2", device="cpu")
    assert not shipped.shares_tokenizer(pg)  # its own 8,192-token tokenizer
    assert shipped.other("shakespeare-lstm").shares_tokenizer(shipped)
    with pytest.raises(Exception, match="Unknown model"):
        shipped.other(str(tiny_dir))  # a model from the app (no folders) never asks for a folder


def test_the_models_kept_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_MAX_MODELS", "1")
    first = loaded.load(str(save_tiny_gpt2(tmp_path / "a", seed=2)), device="cpu", allow_paths=True)
    second = loaded.load(str(save_tiny_gpt2(tmp_path / "b", seed=3)), device="cpu", allow_paths=True)
    assert loaded.loaded_now() == [second] and first is not second


def test_the_budget_counts_every_model_a_request_uses(monkeypatch):
    monkeypatch.setenv("PLAYGROUND_BUDGET", str(10 * 20 * 1000 + 10 * 20 * 500))
    amateur = [("the amateur", 10, 500)]
    limits.check_request(runs=1, rows=10, new_tokens=20, parameters=1000, device_type="cpu", others=amateur)
    with pytest.raises(InvalidSetting) as refused:
        limits.check_request(runs=1, rows=10, new_tokens=21, parameters=1000, device_type="cpu", others=amateur)
    assert "plus 10 rows on the amateur" in str(refused.value) and "use at most 20 new tokens" in str(refused.value)
    # the same request on the one model fits: it is the second model that tips it over
    limits.check_request(runs=1, rows=10, new_tokens=21, parameters=1000, device_type="cpu")


@pytest.mark.parametrize("value", ["", "  ", "a,b", "x;y", "m(1)", "a=b", "x" * 201, "line\nbreak", "\x00", 5, 1.5])
def test_a_model_name_in_a_setting_is_text_of_a_bounded_form(value):
    with pytest.raises(InvalidSetting) as refused:
        check_model_name("amateur_model", value)
    assert str(refused.value).startswith("amateur_model") and "\n" not in str(refused.value)
    check_model_name("amateur_model", "shakespeare-lstm")
