"""What the Beam search page decodes: the group counts that split its beams, and the pair of runs it
compares (without and with no-repeat-n-gram), so that the page only reads widgets and lays out results."""

from __future__ import annotations

from core.decoding.settings import DecodeSettings


def group_choices(num_beams: int) -> list[int]:
    """The numbers of beam groups that split `num_beams` beams evenly (diverse beam search needs that)."""
    return [g for g in range(1, num_beams + 1) if num_beams % g == 0]


def fit_groups(num_beams: int, groups: int) -> tuple[int, str | None]:
    """`groups` if it splits the beams evenly, else the largest count below it that does, and why."""
    choices = group_choices(num_beams)
    if groups in choices:
        return groups, None
    fitting = max(g for g in choices if g <= groups) if groups >= 1 else 1
    return fitting, f"{groups} groups cannot split {num_beams} beams evenly; using {fitting}."


def compared_runs(*, num_beams: int, length_penalty: float, early_stopping, max_new_tokens: int,
                  no_repeat_ngram_size: int, num_beam_groups: int, diversity_penalty: float) -> list[DecodeSettings]:
    """Beam search returning every beam, without and with no-repeat-n-gram (one run when those are equal)."""
    diverse = ({"num_beam_groups": num_beam_groups, "diversity_penalty": diversity_penalty}
               if num_beam_groups > 1 else {})
    base = DecodeSettings("beam", num_beams=num_beams, length_penalty=length_penalty, early_stopping=early_stopping,
                          max_new_tokens=max_new_tokens, num_return_sequences=num_beams, **diverse)
    runs = [base.replace(no_repeat_ngram_size=0), base.replace(no_repeat_ngram_size=no_repeat_ngram_size)]
    return runs[:1] if runs[0] == runs[1] else runs
