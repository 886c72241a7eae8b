"""The decoding report: N samples per strategy, scored with Holtzman et al. (2020)'s figures, beside human text.

Why a report: one sample says little about a strategy; the paper's point is that *distributions* of
text differ (beam search is far less surprising and far more repetitive than people, pure sampling more
surprising, nucleus sampling closest). For one prompt (or a small set) every strategy of a line-up is
decoded as ONE batch per prompt (one prefill; a sampling run with `num_return_sequences=N` takes N rows
drawing from its own seeded generator, as generate(num_return_sequences=N) does), then per strategy:

- perplexity of the continuations under the RAW model (exp of minus the mean raw log-prob per token);
- Self-BLEU-4 across the strategy's samples, all prompts pooled (each sample against all the others);
- the Zipf coefficient of the pooled token frequencies (least squares on log-log rank/frequency);
- the share of samples that end in a repeating loop (`ends_in_loop`), repeated n-grams, distinct-1/2/3;
- mean length and finish reasons.

Human text gets the same figures: held-out passages that ship in `assets/human/` (or pasted text), each
continuation scored given its own prompt, exactly as generated continuations are, so the perplexities
compare. The command line (`python -m core report`, in core/cli.py) and the Report page both call `make_report`.

Sweeps (`sweep`): one knob over a range of values on a base run (pure sampling by default), N samples
per point, every point with the same figures and intervals, beside the same human text; all points are
decoded together, one batch per prompt while their rows fit.

The parts: `metrics` (the figures on fixed texts), `human` (the held-out passages and their scoring),
`run` (decoding and putting the report together), `sweep` (sweeps).
"""

from core.report.human import (HUMAN_FILE, Passage, build_heldout_passages, human_passages, load_passages,
                               read_prompts_file, score_human, write_heldout_file)
from core.report.metrics import (METRICS, RULES, TABLE_METRICS, Sample, Spread, StrategyReport, ends_in_loop,
                                 measure, rank_frequency, repeated_share, self_bleu4, zipf_coefficient)
from core.report.run import (DEFAULT_LINEUP, DEFAULT_PROMPT_COUNT, DEFAULT_SAMPLES,
                             MAX_HUMAN, MAX_PROMPTS, ROW_TOKEN_BUDGET, Figure1, Report, as_written, check_prompts,
                             check_request, check_samples, decode_prompt, human_report, make_report, prompt_seeds,
                             report_lineup, run_name)
from core.report.sweep import (DEFAULT_BASE, Sweep, SweepPoint, SweepReport, SweepSpec, base_runs, check_sweep,
                               make_sweep, parse_sweep, parse_sweep_lines, parse_sweeps, sweepable)
