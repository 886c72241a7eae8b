"""The command line's tables: what `python -m core` prints when it is not asked for JSON (decode and
compare, score, pipeline, model against model, detect, report and its sweeps). Plain text, one line per
row; nothing here decodes. The report and the views are imported where a table needs them, so that
`python -m core models` and `download` still answer without the decoding stack."""

from __future__ import annotations


def score_table(result) -> str:
    lines = [f"perplexity {result.perplexity:.2f} over {len(result.tokens)} scored tokens "
             f"(the first token, {result.first_token!r}, has no context and is not scored)",
             f"{'token':<18}{'logprob':>9}{'rank':>7}{'surprisal':>15}"]
    lines += [f"{t.token!r:<18}{t.logprob:>9.3f}{t.rank:>7}{t.surprisal_bits:>10.2f} bits" for t in result.tokens]
    return "\n".join(lines)


def decode_table(result) -> str:
    lines = [f"model {result.model} on {result.device} ({result.engine} forward); prompt {len(result.prompt_ids)} tokens"]
    lines += [f"note: {n}" for n in result.notices]
    for run in result.runs:
        f = run.best.figures()
        lines.append(f"\n== {run.name}  (sequence log-prob {f.sequence_logprob:.2f}, "
                     f"perplexity {f.perplexity:.2f}, distinct-2 {f.distinct_2:.2f})")
        lines.append(run.best.text)
        lines.append(f"{'step':>4}  {'token':<16}{'logprob':>9}{'rank':>6}  top choices (raw prob)")
        for st in run.best.steps:
            tops = ", ".join(f"{c.token!r} {c.prob:.1%}" for c in st.top[:3])
            lines.append(f"{st.index:>4}  {st.token!r:<16}{st.logprob:>9.3f}{st.rank:>6}  {tops}")
    return "\n".join(lines)


def pipeline_table(view) -> str:
    lines = [f"model {view.model}; run {view.run} ({view.run_name}), step {view.step} of {view.steps}: it chose "
             f"{view.token!r} (id {view.token_id}); the processors transform {view.scores}; shown: {view.sequence}",
             f"{'stage':<22}{'kept':>8}{'entropy':>9}{'chosen p':>10}{'rank':>7}  what it did; top tokens"]
    for st in view.stages:
        tops = ", ".join(f"{t.token!r} {t.prob:.1%}" for t in st.top[:3])
        lines.append(f"{st.name:<22}{st.kept:>8,}{st.entropy:>9.3f}{st.chosen_prob:>10.2%}{st.chosen_rank:>7}  "
                     f"{st.did_naming(5)}; {tops}")
    if view.not_applied:
        lines.append("not applied in this run: " + ", ".join(view.not_applied))
    return "\n".join(lines)


def comparison_table(result) -> str:
    from core.views import tables

    lines = [f"models {', '.join(result.models)}; prompt {result.prompt!r}"]
    for name in dict.fromkeys(run.name for r in result.results for run in r.runs):
        lines.append(f"\n== {name}")
        for r in result.results:
            found = next((run for run in r.runs if run.name == name), None)
            lines.append(f"-- {r.model}: {found.best.text if found else '(not run on this backend; see the notes)'}")
    rows = tables.cross_table(result)
    lines.append("")
    lines += _columns([str(c) for c in rows[0]], [[str(v) for v in row.values()] for row in rows])
    return "\n".join(lines)


def detection_table(found) -> str:
    figures = (f"z-score {found.z_score:.2f}, p-value {found.p_value:.3g}, green {found.green_tokens} of "
               f"{found.tokens_scored} scored ({found.green_fraction:.0%})" if found.tokens_scored else "no token scored")
    lines = [found.verdict, figures, f"{'token':<18}{'list':>7}{'z so far':>10}"]
    for m in found.tokens:
        colour = "-" if m.green is None else ("green" if m.green else "red")
        lines.append(f"{m.token!r:<18}{colour:>7}{'' if m.z is None else f'{m.z:.2f}':>10}")
    return "\n".join(lines)


def _cell(s, digits: int = 2, percent: bool = False) -> str:
    if s.mean is None:
        return "-"
    f = (lambda v: f"{100 * v:.0f}%") if percent else (lambda v: f"{v:.{digits}f}")
    return f(s.mean) + (f" [{f(s.low)}, {f(s.high)}]" if s.low is not None else "")


FIGURE_HEAD = ["perplexity", "Self-BLEU-4", "Zipf", "repetition", "distinct-2", "length", "n"]


def _figure_cells(r) -> list[str]:
    m = r.metrics
    return [_cell(m["perplexity"], 1), _cell(m["self_bleu4"], 3), _cell(m["zipf"], 2),
            _cell(m["repetition_rate"], percent=True), _cell(m["distinct_2"], 2), _cell(m["mean_length"], 1),
            str(len(r.samples))]


def _columns(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(x[i]) for x in [head] + rows) for i in range(len(head))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in [head] + rows]


def format_table(result) -> str:
    """The table the command line prints: one row per strategy, the human row last and marked."""
    from core import report

    rows = [[("* " if r.is_human else "  ") + r.name, *_figure_cells(r)] for r in result.rows]
    lines = [f"model {result.model} on {result.device}; {len(result.prompts)} prompt(s), "
             f"{result.samples_per_strategy} samples per sampling strategy, {result.max_new_tokens} new tokens, "
             f"seed {result.seed} (run i: seed + i); {result.seconds:.1f}s"]
    lines += _columns(["strategy", *FIGURE_HEAD], rows)
    lines.append("mean [95% bootstrap interval]; * = human text. Rules:")
    lines += [f"  {k}: {v}" for k, v in report.RULES.items()]
    return "\n".join(lines)


def format_sweep_table(result) -> str:
    """One row per point (knob, base run, value), the human row last and marked."""
    from core import report
    rows = [["  " + p.knob, p.method, report.sweep.value_label(p.value), *_figure_cells(p.report)]
            for p in result.points]
    if result.human is not None:
        rows.append(["* human text", "", "", *_figure_cells(result.human)])
    lines = [f"model {result.model} on {result.device}; {len(result.prompts)} prompt(s), "
             f"{result.samples_per_point} samples per point, {result.max_new_tokens} new tokens, seed {result.seed}; "
             f"{len(result.points)} points ({result.decoded} runs decoded) in {result.batches} batch(es) per prompt; "
             f"{result.seconds:.1f}s"]
    lines += _columns(["knob", "base run", "value", *FIGURE_HEAD], rows)
    lines.append("mean [95% bootstrap interval]; * = human text. Rules:")
    lines += [f"  {k}: {v}" for k, v in {**report.RULES, **report.sweep.SWEEP_RULES}.items()]
    return "\n".join(lines)
