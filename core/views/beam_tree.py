"""The beam tree: its layout (rows for the beams, the returned best path) and its plotly figure."""

from __future__ import annotations

from collections import defaultdict

import plotly.graph_objects as go

from core.decoding.trace import RunTrace
from core.views.charts import layout
from core.views.colours import BEST_COLOUR, STATUS_COLOURS
from core.views.tokens import plotly_text, visible


def _best_path(run: RunTrace, nodes: list, by_id: dict) -> list[int]:
    """Node ids of the returned best hypothesis (as far as the shown steps go), prompt side first."""
    target = run.best.ids[: 1 + max((n.step for n in nodes), default=-1)]
    if not target:
        return []

    def path(node):
        out = []
        while node is not None:
            out.append(node)
            node = by_id.get(node.parent)
        return out[::-1]

    ends = [n for n in nodes if n.step == len(target) - 1 and n.status != "pruned"]
    ends.sort(key=lambda n: n.status != "finished")
    for end in ends:
        p = path(end)
        if [n.token_id for n in p] == list(target) and p[0].parent is None:
            return [n.id for n in p]
    return []


def beam_tree_layout(run: RunTrace, max_steps: int | None = None) -> dict:
    """The beam tree laid out: x = step, y = row. Beams that went on (kept) and finished hypotheses
    form the tree; its leaves get rows in depth-first order (best-scored child first), and a node
    sits at the middle of its children, so children sit next to their parent. Pruned candidates sit
    beside their parent's row. Returns nodes, y by id, the best path's node ids, and the root's row."""
    nodes = [n for n in run.beam_tree or [] if max_steps is None or n.step < max_steps]
    by_id = {n.id: n for n in nodes}
    children: dict = defaultdict(list)
    for n in nodes:
        children[n.parent if n.parent in by_id else None].append(n)
    y: dict = {}
    counter = 0
    # iterative DFS (post-order) over the surviving tree
    stack: list = [(None, False)]
    while stack:
        node_id, expanded = stack.pop()
        kids = sorted((c for c in children[node_id] if c.status != "pruned"), key=lambda c: -c.score)
        if not kids:
            y[node_id] = counter
            counter += 1
        elif expanded:
            y[node_id] = (y[kids[0].id] + y[kids[-1].id]) / 2
        else:
            stack.append((node_id, True))
            stack.extend((c.id, False) for c in reversed(kids))
    for parent, kids in children.items():
        pruned = sorted((c for c in kids if c.status == "pruned"), key=lambda c: -c.score)
        for j, c in enumerate(pruned):  # a fan beside the parent's row
            y[c.id] = y[parent] + (j - (len(pruned) - 1) / 2) * min(0.8 / max(len(pruned), 1), 0.2)
    return {"nodes": nodes, "by_id": by_id, "y": y, "rows": counter, "best": _best_path(run, nodes, by_id)}


def _edges(nodes: list, by_id: dict, y: dict, best: set) -> list[go.Scatter]:
    """Parent -> child lines, pruned ones faded; the best path's are left to its own trace."""
    traces = []
    for status, colour, width in (("pruned", "#e2e2e2", 0.8), ("kept", "#9ab7d3", 1.2)):
        ex, ey = [], []
        for n in nodes:
            if (n.status == "pruned") == (status == "pruned") and n.id not in best:
                px = by_id[n.parent].step if n.parent in by_id else -1
                ex += [px, n.step, None]
                ey += [y[n.parent if n.parent in by_id else None], y[n.id], None]
        traces.append(go.Scatter(x=ex, y=ey, mode="lines", line=dict(color=colour, width=width),
                                 hoverinfo="skip", showlegend=False, name=f"edges ({status})"))
    return traces


def _node_trace(nodes: list, y: dict, status: str, colour: str) -> go.Scatter:
    """One status's nodes; pruned candidates go unlabelled, or their tokens would bury the tree's."""
    group = [n for n in nodes if n.status == status]
    finished = status == "finished"
    return go.Scatter(
        x=[n.step for n in group], y=[y[n.id] for n in group], name=status,
        mode="markers" if status == "pruned" else "markers+text", text=[plotly_text(visible(n.token)) for n in group],
        textposition="top center", textfont=dict(size=9, color="#444"),
        marker=dict(color=colour, size=5 if status == "pruned" else (11 if finished else 7),
                    symbol="star" if finished else "circle", opacity=0.5 if status == "pruned" else 1.0),
        customdata=[[n.score, n.finished_score if n.finished_score is not None else float("nan"), n.step]
                    for n in group],
        hovertemplate="<b>%{text}</b> (step %{customdata[2]})<br>beam score %{customdata[0]:.3f}"
                      "<br>(sum of processed log-probs, not renormalised)"
                      + ("<br>finished score %{customdata[1]:.3f} (÷ length ** length_penalty)" if finished else "")
                      + "<extra>" + status + "</extra>")


def _add_best(fig: go.Figure, path: list, y: dict) -> None:
    fig.add_trace(go.Scatter(
        x=[-1] + [n.step for n in path], y=[y[None]] + [y[n.id] for n in path],
        mode="lines+markers", name="returned best hypothesis",
        line=dict(color=BEST_COLOUR, width=4), marker=dict(color=BEST_COLOUR, size=9),
        text=["prompt"] + [plotly_text(visible(n.token)) for n in path],
        customdata=[[float("nan")]] + [[n.score] for n in path],
        hovertemplate="%{text}<br>beam score %{customdata[0]:.3f}<extra>best</extra>"))
    for n in path:  # the best path's tokens on a white label, so the red line does not hide them
        fig.add_annotation(x=n.step, y=y[n.id], text=f"<b>{plotly_text(visible(n.token))}</b>", showarrow=False,
                           yshift=11, font=dict(size=10, color=BEST_COLOUR), bgcolor="rgba(255,255,255,0.85)",
                           borderpad=1)


def beam_tree_figure(run: RunTrace, max_steps: int | None = None) -> go.Figure:
    """The beam tree: edges parent -> child, the returned best hypothesis thick and red, beams that
    went on (blue) and finished hypotheses (green stars) labelled with their token, pruned candidates
    faded and unlabelled; every node's scores on hover."""
    lay = beam_tree_layout(run, max_steps)
    nodes, by_id, y, best = lay["nodes"], lay["by_id"], lay["y"], lay["best"]
    fig = go.Figure(_edges(nodes, by_id, y, set(best)))
    fig.add_traces([_node_trace(nodes, y, status, colour) for status, colour in STATUS_COLOURS.items()])
    if best:
        _add_best(fig, [by_id[i] for i in best], y)
    fig.add_trace(go.Scatter(x=[-1], y=[y.get(None, 0)], mode="markers+text", text=["prompt"],
                             textposition="bottom center", marker=dict(color="#333", size=9, symbol="square"),
                             showlegend=False, hoverinfo="skip", name="prompt"))
    fig.update_yaxes(autorange="reversed", showticklabels=False, showgrid=False, zeroline=False)
    fig.update_xaxes(dtick=1, zeroline=False, range=[-1.6, max((n.step for n in nodes), default=0) + 0.8])
    fig = layout(fig, "Beam search tree", "step", "")
    fig.update_layout(height=min(1800, max(420, 17 * lay["rows"] + 140)),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0, title=None),
                      margin=dict(l=20, r=20, t=70, b=40))
    return fig
