"""What one request may cost, so that no link or flag can hold the server for minutes.

A decode's time grows with rows x new tokens x the model's parameters (each generated token of each
batch row is one pass through every weight), so the budget is stated in those units. It was sized from
a measurement on 2 CPU cores (README, "Limits"): the default 8-run line-up on GPT-2 small (16 rows x 64
tokens x 124M parameters = 1.3e11) took 11-14 s, so the budget of 2.6e11 bounds any request at about
half a minute there, and far less on the small shipped models. A GPU gets 20 times more.

A request that uses several models (an amateur or a draft beside the model, two models on Compare)
costs the sum over the models of their rows x new tokens x parameters.

`PLAYGROUND_BUDGET` (a number of row-token-parameters) overrides the budget for a server that can
afford more or less.
"""

from __future__ import annotations

import os
from typing import Sequence

from core.errors import InvalidSetting

MAX_RUNS = 16  # runs in one line-up
MAX_ROWS = 64  # batch rows decoded at once (beams + samples over all runs)
MAX_BRANCHES = 8  # branches kept on Step through
MAX_SAMPLES = 50  # samples per sampling strategy in a report
MAX_APP_NEW_TOKENS = 200  # new tokens per run in the app (the command line: up to the model's context)
MAX_BEAM_PAGE_BEAMS = 10  # num_beams on the Beam search page, which draws every candidate (2 x num_beams
# a step) and lists every hypothesis; a line-up on Compare may use more (up to MAX_ROWS)
MAX_REPORT_ROWS = 512  # a report is many samples at once: the default one (9 runs, N = 20) has 131 rows
MAX_SWEEP_POINTS = 48  # points of a report's sweeps in all (values x base runs): a batch of a sweep may hold
# this many runs, so the points go in one batch per prompt while their rows fit MAX_REPORT_ROWS
# generate()'s controls that take text (core/decoding/processors/controls.py, core/decoding/stopping.py).
# StopStringCriteria walks the whole vocabulary once per stop string and character when it is built (in
# Python: about N x V x (characters + a token's length) steps; 4 of 20 characters took 5.6 s on GPT-2's vocabulary
# on 2 CPU cores, 8 of 32 took 12 s), so a link's stop strings are few and short
MAX_STOP_STRINGS = 4
MAX_STOP_STRING_CHARS = 20
MAX_TOKEN_TEXTS = 64  # bad words, suppressed tokens, sequence biases: entries of each
MAX_TOKEN_TEXT_CHARS = 200  # one bad word or biased sequence
MAX_NEGATIVE_PROMPT_CHARS = 4_000
MAX_ABS_SEQUENCE_BIAS = 100.0  # logits lie within about +-1e2: past that a bias bans or forces all the same
MAX_GUIDANCE_SCALE = 100.0  # scale x (conditional - unconditional log-probs) stays far inside float32
MAX_DECAY_FACTOR = 10.0  # exponential_decay_length_penalty's factor; factor ** steps is checked as well
MAX_DECAY_GROWTH = 1e30  # factor ** (steps past the start) x |logit| must stay below float32's 3.4e38
CPU_BUDGET = 2.6e11  # rows x new tokens x parameters
GPU_FACTOR = 20


def budget(device_type: str) -> float:
    override = os.environ.get("PLAYGROUND_BUDGET", "")
    try:
        value = float(override) if override else 0.0
    except ValueError:
        value = 0.0
    if value > 0:
        return value
    return CPU_BUDGET * (GPU_FACTOR if device_type == "cuda" else 1)


def check_request(*, runs: int, rows: int, new_tokens: int, parameters: int, device_type: str,
                  prompts: int = 1, max_rows: int = MAX_ROWS, max_runs: int = MAX_RUNS,
                  others: Sequence[tuple[str, int, int]] = ()) -> None:
    """Refuse, in one sentence that names the limit, a request that would cost more than the budget.

    `prompts` > 1: the same runs on that many prompts, one after another (a report). `max_runs`: a sweep's
    batch holds its points as runs, more than a line-up may have. `others`: the rows the request decodes
    (or scores) on models besides this one, as (model, rows, parameters): an amateur's or a draft's rows,
    another model's line-up on Compare. Every model counts."""
    if runs > max_runs:
        raise InvalidSetting(f"A line-up may have at most {max_runs} runs; this one has {runs}.")
    if rows > max_rows:
        raise InvalidSetting(
            f"These runs need {rows} batch rows (beams and samples added up) but one request may use at most "
            f"{max_rows}; lower num_beams, num_return_sequences or the number of runs.")
    row_parameters = rows * parameters + sum(r * p for _, r, p in others)
    cost = row_parameters * new_tokens * prompts
    allowed = budget(device_type)
    if cost > allowed:
        most = max(1, int(allowed // max(1, row_parameters * prompts)))
        times = f" x {prompts} prompts" if prompts > 1 else ""
        also = "".join(f", plus {r} rows on {name} ({p / 1e6:.0f}M parameters)" for name, r, p in others)
        raise InvalidSetting(
            f"This request ({rows} rows x {new_tokens} new tokens{times} on a {parameters / 1e6:.0f}M-parameter "
            f"model{also}) is over the budget of {allowed:.2g} row-token-parameters per request; use at most {most} "
            f"new tokens with these runs, fewer rows, or {'smaller models' if others else 'a smaller model'}.")
