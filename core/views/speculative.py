"""What the Speculative decoding page shows: an assisted run beside the same run without its draft, decoded
in one request; each check by the target (drafted, accepted, rejected, put instead); the acceptance rate
by position in the draft; tokens per target forward pass; and the time of both."""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go

from core.decoding.settings import DecodeSettings
from core.decoding.trace import RunTrace
from core.views.charts import layout
from core.views.templating import macros
from core.views.tokens import plotly_text, visible

PROMPT_LOOKUP = "prompt lookup"  # the page's draft choice that drafts from the text itself

ACCEPTED, REJECTED, UNREACHED, TARGET = "#2ca02c", "#d62728", "#9e9e9e", "#1f77b4"
_HTML = macros("speculative.html.j2")


def runs(*, strategy: str, draft: str, num_assistant_tokens: int, schedule: str, threshold: float,
         lookup_tokens: int, temperature: float, max_new_tokens: int, seed: int) -> list[DecodeSettings]:
    """The assisted run, and the same run without a draft (same seed), to be decoded in one request."""
    plain = DecodeSettings(strategy=strategy, max_new_tokens=max_new_tokens, seed=seed,
                           **({"temperature": temperature, "top_k": 0} if strategy == "sample" else {}))
    if draft == PROMPT_LOOKUP:
        assisted = plain.replace(prompt_lookup_num_tokens=lookup_tokens)
    else:
        assisted = plain.replace(assistant_model=draft, num_assistant_tokens=num_assistant_tokens,
                                 num_assistant_tokens_schedule=schedule, assistant_confidence_threshold=threshold)
    return [assisted, plain]


@dataclass(frozen=True)
class Summary:
    tokens: int
    target_forwards: int
    plain_forwards: int
    draft_forwards: int
    drafted: int
    accepted: int
    acceptance_rate: float | None
    tokens_per_forward: float
    seconds: float
    plain_seconds: float
    same_tokens: bool

    @property
    def speedup(self) -> float:
        """Plain decoding's time over the assisted run's (above 1: the draft paid off)."""
        return self.plain_seconds / self.seconds if self.seconds else float("nan")


def summary(assisted: RunTrace, plain: RunTrace) -> Summary:
    spec = assisted.speculation
    return Summary(
        tokens=len(assisted.best.ids), target_forwards=assisted.target_forwards, plain_forwards=plain.target_forwards,
        draft_forwards=spec.draft_forwards, drafted=spec.drafted, accepted=spec.accepted,
        acceptance_rate=spec.acceptance_rate, tokens_per_forward=assisted.tokens_per_forward,
        seconds=assisted.seconds, plain_seconds=plain.seconds, same_tokens=assisted.best.ids == plain.best.ids)


def _probs(check, j: int) -> str:
    p = f"target p {check.target_probs[j]:.1%}" if j < len(check.target_probs) else ""
    q = f", draft q {check.draft_probs[j]:.1%}" if j < len(check.draft_probs) else ""
    return p + q


def _chips(check) -> list[dict]:
    """The drafted tokens: accepted in green, the rejected one struck through in red, those after it in grey
    (never looked at)."""
    chips = []
    for j, token in enumerate(check.drafted_tokens):
        if j < check.accepted:
            chips.append({"text": visible(token), "colour": ACCEPTED, "title": f"accepted: {_probs(check, j)}",
                          "struck": False})
        elif j == check.accepted:
            chips.append({"text": visible(token), "colour": REJECTED, "title": f"rejected: {_probs(check, j)}",
                          "struck": True})
        else:
            chips.append({"text": visible(token), "colour": UNREACHED,
                          "title": "not checked: a token before it was rejected", "struck": False})
    return chips


def checks_html(run: RunTrace, limit: int = 200) -> str:
    """One row per check by the target: its drafted tokens, then the target's own token in blue and what it
    stands for (in place of the rejected draft, or a bonus after them all)."""
    rows = []
    for check in run.speculation.checks[:limit]:
        if check.rejected is not None:
            put = f"instead of {visible(check.rejected_text)!r}"
        elif check.drafted:
            put = "bonus: every drafted token was accepted"
        else:
            put = "nothing was drafted: one plain step"
        rows.append({"index": check.index + 1, "first_token": check.first_token, "chips": _chips(check),
                     "accepted": check.accepted, "drafted": len(check.drafted), "token": visible(check.token_text),
                     "colour": TARGET, "title": f"the target's token, {put}", "put": put})
    return str(_HTML.checks(rows, max(0, len(run.speculation.checks) - limit)))


def text_html(run: RunTrace) -> str:
    """The continuation, each token marked by where it came from: the draft (accepted) or the target."""
    spans = [{"text": step.token, "colour": ACCEPTED if step.drafted else TARGET,
              "title": "drafted and accepted" if step.drafted else "the target's own token"} for step in run.best.steps]
    return str(_HTML.text(spans))


def acceptance_figure(run: RunTrace) -> go.Figure:
    """The share of checks that drafted a token at each position whose token there was accepted."""
    rows = run.speculation.acceptance_by_position()
    x = [j + 1 for j, _, _ in rows]
    y = [a / d if d else 0.0 for _, d, a in rows]
    hover = [plotly_text(f"position {j + 1}: {a} of {d} drafted tokens accepted") for j, d, a in rows]
    fig = go.Figure(go.Bar(x=x, y=y, marker_color=ACCEPTED, hovertext=hover, hoverinfo="text",
                           text=[f"{a}/{d}" for _, d, a in rows], textposition="outside"))
    layout(fig, "Acceptance rate by position in the draft", "position in the draft", "accepted / drafted")
    fig.update_yaxes(range=[0, 1.1], tickformat=".0%")
    fig.update_xaxes(dtick=1)
    return fig
