"""Rows of figures for the tables the pages show (lists of dicts, rendered by `markup.table_html` or
Streamlit)."""

from __future__ import annotations

from core.decoding.trace import RunTrace, Sequence

SHORT_FINISH = {"eos": "<|endoftext|>", "max_new_tokens": "max new tokens", "context": "context limit"}
UNAVAILABLE = "n/a"  # a figure this backend cannot give (the vLLM backend without the whole vocabulary)


def short_finish(seq: Sequence) -> str:
    """Why a sequence ended, in a table's few words; a stop string is named."""
    if seq.finish_detail is not None:
        return f"stop string {seq.finish_detail!r}"
    return SHORT_FINISH.get(seq.finish_reason, seq.finish_reason)


def _rounded(value: float | None, digits: int):
    return None if value is None else round(value, digits)


def lineup_table(runs: list[RunTrace]) -> list[dict]:
    """One row per run (its best sequence): the figures the Compare page shows side by side."""
    rows = []
    for run in runs:
        seq = run.best
        f = seq.figures()
        rows.append({
            "run": run.name,
            "sequence log-prob (raw)": round(f.sequence_logprob, 2),
            "sequence log-prob (processed)": _rounded(f.processed_sequence_logprob, 2),
            "perplexity (raw)": round(f.perplexity, 2),
            "distinct-2": round(f.distinct_2, 3),
            "repeated 2-grams": f.repeated_2grams,
            "tokens": len(seq.ids),
            "finish": short_finish(seq),
        })
    return rows


def processed_label(run: RunTrace) -> str:
    """What a run's processed sequence log-prob is, in words: contrastive decoding's tokens are scored under
    its contrastive distribution (softmax of log p_expert - log p_amateur over the plausible tokens); a beam
    search's processed log-probs add up to its beam score."""
    if run.strategy == "contrastive_decoding":
        return "under the contrastive distribution (expert minus amateur)"
    return "beam score (processed log-probs, not renormalised)" if run.beam_tree is not None else "processed"


def hypotheses_table(run: RunTrace) -> list[dict]:
    """The returned hypotheses, best first, with their whole text."""
    return [{"rank": i + 1,
             "beam score": round(q.beam_score, 3) if q.beam_score is not None else None,
             "log-prob (raw)": round(q.sequence_logprob, 2), "tokens": len(q.ids),
             "finish": short_finish(q), "text": q.text}
            for i, q in enumerate(run.sequences)]


def step_table(prompt_text: str, seq: Sequence, choices: int = 5, distribution: str = "raw") -> list[dict]:
    """Seed 004's greedy_search table: the text so far, then the top choices with their %."""
    rows, text = [], prompt_text
    for s in seq.steps:
        row = {"step": s.index, "input": text}
        for i, c in enumerate(s.top[:choices]):
            p = c.processed_prob if distribution == "processed" else c.prob
            row[f"choice {i + 1}"] = f"{c.token}({100 * p:.2f}%)" if p is not None else f"{c.token}({UNAVAILABLE})"
        rows.append(row)
        text += s.token
    return rows


def cross_table(comparison) -> list[dict]:
    """Model against model (`core.model_comparison.ModelComparison`): one row per model and run (its best
    sequence), with its perplexity under its own model and under every other model of the comparison. A
    column whose scoring model has another tokenizer than the run's says that it counts its own tokens."""
    rows, scorer = [], {}  # a column of another model's scores -> that model's place in the comparison
    for model, result, runs in zip(comparison.models, comparison.results, comparison.cross):
        for run, scores in zip(result.runs, runs):
            row = {"model": model, "run": run.name, "tokens": len(run.best.ids)}
            for score in scores:
                if score.model == model:
                    row["perplexity (own model)"] = _rounded(score.perplexity, 2)
                    continue
                how = "" if score.own_tokens else f" (in {score.model}'s tokens)"
                column = f"perplexity under {score.model}{how}"
                row[column] = _rounded(score.perplexity, 2)
                scorer[column] = 1 + comparison.models.index(score.model)
            rows.append(row)
    # a row's columns depend on its model; the scoring models' columns in the comparison's order, so that
    # the "—" of a run that is not scored twice by its own model falls on the diagonal
    columns = ["model", "run", "tokens", "perplexity (own model)", *sorted(scorer, key=scorer.__getitem__)]
    return [{c: row.get(c, "—") for c in columns} for row in rows]
