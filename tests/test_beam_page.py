"""The Beam search page's own choices, computed in core/views/beam_page.py (the page only lays them out)."""

from core.views import beam_page


def test_group_choices_split_the_beams_evenly():
    assert beam_page.group_choices(6) == [1, 2, 3, 6]
    assert beam_page.group_choices(7) == [1, 7]


def test_a_group_count_that_does_not_split_the_beams_falls_to_one_that_does():
    assert beam_page.fit_groups(6, 3) == (3, None)
    assert beam_page.fit_groups(6, 4) == (3, "4 groups cannot split 6 beams evenly; using 3.")
    assert beam_page.fit_groups(5, 4)[0] == 1


def test_the_runs_compared_are_one_when_no_repeat_is_off():
    common = dict(num_beams=4, length_penalty=1.0, early_stopping=False, max_new_tokens=8, num_beam_groups=2,
                  diversity_penalty=0.5)
    two = beam_page.compared_runs(no_repeat_ngram_size=2, **common)
    assert [r.no_repeat_ngram_size for r in two] == [0, 2]
    assert all(r.num_return_sequences == 4 and r.num_beam_groups == 2 for r in two)
    assert len(beam_page.compared_runs(no_repeat_ngram_size=0, **common)) == 1
