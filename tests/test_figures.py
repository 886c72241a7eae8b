"""The figures and HTML the pages show (issue 7): hover cards, legend, line-up, the sampling lab's cuts,
the beam tree, byte tokens, and the self-contained HTML export. Each reads the objects core builds."""

import html
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from conftest import PROMPTS
from core.views import beam_tree, charts, colours, markup, tables, tokens
from core.views import html_export
from core.views import internals
from core.views import recipe
from core.decoding.settings import DecodeSettings
from core.decoding.trace import Candidate, RunTrace, Sequence, Step

ROOT = Path(__file__).resolve().parents[1]
EVIL = "<img src=x onerror=alert(1)>"


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text, of an HTML string."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def with_class(self, name: str) -> list[dict]:
        return [a for t, a in self.tags if name in (a.get("class") or "").split()]


def fake_step(index=0, token=EVIL, kept=None, banned=None) -> Step:
    """A step whose raw top-6 is a..f; the chosen token is `token` (id 99); c banned, e and f cut."""
    top = [Candidate(1, "a", 0.4, 0.5), Candidate(2, "b\n", 0.2, 0.3), Candidate(3, "c", 0.1, 0.0),
           Candidate(4, "<d>", 0.05, 0.2), Candidate(5, "e", 0.04, 0.0), Candidate(6, "f", 0.03, 0.0)]
    return Step(index, 99, token, math.log(0.01), math.log(0.02), 7, 3, 2.0, 1.0, top,
                kept if kept is not None else {"top_k": 3},
                banned if banned is not None else {"no_repeat_ngram": [3]}, [(1, 0.4)],
                {"no_repeat_ngram": ["c"]})


def fake_sequence(n=3) -> Sequence:
    steps = [fake_step(i) for i in range(n)]
    return Sequence([99] * n, EVIL * n, steps, "max_new_tokens")


@pytest.fixture(scope="module")
def sampled(playground):
    settings = DecodeSettings("sample", temperature=1.5, top_k=50, top_p=0.7, max_new_tokens=6, seed=3)
    return settings, playground.decode(PROMPTS[0], settings)


@pytest.fixture(scope="module")
def beams(playground):
    settings = DecodeSettings("beam", num_beams=10, max_new_tokens=20, num_return_sequences=10)
    return settings, playground.decode(PROMPTS[0], settings)


# A. hover cards, legend, colours ------------------------------------------------------------------


def test_tokens_have_css_hover_cards_not_title_tooltips():
    seq = fake_sequence()
    out = markup.tokens_html(seq, "processed")
    parsed = Tags(out)
    tokens, cards = parsed.with_class("dp-tok"), parsed.with_class("dp-card")
    assert len(tokens) == len(cards) == len(seq.steps)
    assert not any("title" in a for _, a in parsed.tags)  # no native tooltips
    assert "<script" not in out.lower() and "<style>" in out and ".dp-tok:hover>.dp-card" in out
    assert ".dp-card{display:none" in out.replace(" ", "")
    # untrusted token text is escaped everywhere: no tag from a token survives parsing
    assert not [t for t, _ in parsed.tags if t in ("img", "d")] and EVIL not in out
    assert "&lt;img src=x onerror=alert(1)&gt;" in out
    # each card: the top-5 alternatives (from the shown distribution, labelled), then the chosen one (rank 3)
    assert "alternatives (processed), top 5" in out and "p=2.00% (processed) · rank 3" in out
    assert len(parsed.with_class("dp-alt")) == len(seq.steps) * 6
    assert "50.00%" in out and "40.00%" not in out  # processed, not raw, probabilities
    raw = markup.tokens_html(seq, "raw")
    assert "alternatives (raw), top 5" in raw and "40.00%" in raw and "p=1.00% (raw) · rank 7" in raw


def test_cut_markers_say_which_processor_removed_an_alternative():
    step = fake_step()
    assert [tokens.cut_reason(step, i) for i in range(6)] == [
        None, None, "banned by no-repeat-n-gram", None, "cut by top-k", "cut by top-k"]
    assert tokens.cut_reason(fake_step(kept={"top_k": 4, "top_p": 2}), 4) == "cut by top-p"
    out = markup.tokens_html(Sequence([99], "x", [step], "eos"), "raw")
    parsed = Tags(out)
    cut = parsed.with_class("dp-cut")
    assert len(cut) == 2 and out.count("cut by top-k") == 1 and "banned by no-repeat-n-gram" in out  # top 5 only
    assert "top_k kept 3 tokens" in out and "no_repeat_ngram banned/down-weighted" in out
    assert "text-decoration:line-through" in out.replace(" ", "")


def test_real_run_cards_match_the_trace(sampled):
    _, result = sampled
    seq = result.runs[0].best
    out = markup.tokens_html(seq, "processed", legend=True)
    parsed = Tags(out)
    assert len(parsed.with_class("dp-card")) == len(seq.steps)
    assert out.count("top_k kept 50 tokens") == len(seq.steps)
    for s in seq.steps:
        assert f"top_p kept {s.kept['top_p']} tokens" in out
    # in the processed view, what top-k/top-p removed has probability 0 and is struck through
    removed = sum(1 for s in seq.steps for c in s.top[:5] if c.processed_prob == 0)
    assert len(parsed.with_class("dp-cut")) == removed
    assert parsed.with_class("dp-legend")


def test_legend_and_a_colour_scale_with_contrast():
    legend = markup.probability_legend_html("raw")
    text = "".join(Tags(legend).text)
    for label in ("0.01%", "0.1%", "1%", "10%", "100%"):
        assert label in text
    assert "raw distribution" in text and "linear-gradient" in legend
    assert "processed distribution" in "".join(Tags(markup.probability_legend_html("processed")).text)
    shades = [colours.probability_colour(p) for p in (1e-4, 1e-3, 1e-2, 1e-1, 1.0)]
    lum = [colours._luminance(tuple(int(v) for v in bg[4:-1].split(","))) for bg, _ in shades]
    assert lum == sorted(lum) and lum[-1] - lum[0] > 0.6  # dark (improbable) to light (likely)
    hues = {bg for bg, _ in shades}
    assert len(hues) == 5
    assert shades[0][1] == "#ffffff" and shades[-1][1] == "#111111"  # readable text on dark and light cells


def test_scored_text_gets_the_same_cards(playground):
    result = playground.score(PROMPTS[0] + EVIL)
    out = markup.scored_html(result.tokens, playground.token_text, legend=True)
    parsed = Tags(out)
    assert len(parsed.with_class("dp-card")) == len(result.tokens)
    assert not [t for t, _ in parsed.tags if t == "img"] and "title" not in str(parsed.tags)
    assert "surprisal" in out and "the model expected" in out and "(raw)" in out


# B. compare ------------------------------------------------------------------------------------


def test_lineup_chart_has_no_overlapping_text_and_a_table(playground):
    runs = [DecodeSettings("greedy", max_new_tokens=8), DecodeSettings("beam", num_beams=3, max_new_tokens=8),
            DecodeSettings("sample", top_k=0, max_new_tokens=8, seed=1),
            DecodeSettings("sample", top_k=0, temperature=0.5, max_new_tokens=8, seed=1)]
    result = playground.compare(PROMPTS[0], runs)
    chart = charts.lineup_chart(result.runs)
    assert all("text" not in t.mode for t in chart.data)  # labels were text at the marker: they overlapped
    assert chart.layout.showlegend and [t.name for t in chart.data] == [r.name for r in result.runs]
    assert len({(t.marker.color, t.marker.symbol) for t in chart.data}) == len(runs)
    svg = charts.lineup_chart_svg(result.runs)
    assert svg.startswith("<svg") and svg.count('class="dp-point"') == len(runs)
    points = re.findall(r'class="dp-point" transform="translate\(([\d.]+) ([\d.]+)\)"><title>([^<]*)</title>'
                        r'<path d="([^"]+)" fill="([^"]+)"', svg)
    assert [p[2].split("\n")[0] for p in points] == [r.name for r in result.runs]
    assert len({(p[3], p[4]) for p in points}) == len(runs)  # told apart by marker and colour, as the plotly chart
    for (x, y, *_), run in zip(points, result.runs):  # further right = more diverse, higher = more coherent
        f = run.best.figures()
        for (x2, y2, *_), other in zip(points, result.runs):
            g = other.best.figures()
            if f.distinct_2 > g.distinct_2:
                assert float(x) > float(x2)
            if f.mean_logprob > g.mean_logprob:
                assert float(y) < float(y2)
    rows = tables.lineup_table(result.runs)
    assert [r["run"] for r in rows] == [r.name for r in result.runs]
    f = result.runs[1].best.figures()
    assert rows[1]["sequence log-prob (raw)"] == round(f.sequence_logprob, 2)
    assert rows[1]["sequence log-prob (processed)"] == round(f.processed_sequence_logprob, 2)
    assert set(rows[0]) == {"run", "sequence log-prob (raw)", "sequence log-prob (processed)", "perplexity (raw)",
                            "distinct-2", "repeated 2-grams", "tokens", "finish"}
    assert rows[0]["tokens"] == len(result.runs[0].best.ids)


# C. sampling lab ------------------------------------------------------------------------------


def test_cumulative_figure_draws_the_cuts_the_run_made(playground, sampled):
    settings, result = sampled
    seq = result.runs[0].best
    for step in range(3):
        at = internals.distribution_at(playground, result.prompt_ids + seq.ids[:step], settings)
        fig = charts.cumulative_figure(at)
        cuts = {t.meta["processor"]: t.meta["kept"] for t in fig.data if t.meta}
        assert cuts == seq.steps[step].kept  # {"top_k": 50, "top_p": ...}, what the run kept
        lines = {t.meta["processor"]: t for t in fig.data if t.meta}
        assert list(lines["top_p"].x) == [seq.steps[step].kept["top_p"]] * 2
        names = [t.name for t in fig.data]
        assert "after temperature 1.5: what top-k sees" in names
        assert "after temperature 1.5, top-k 50 (renormalised): what top-p sees" in names
        assert any(n.startswith("top-p=0.7 keeps") and n.endswith("of 50") for n in names)
        # the curve top-p cuts is over top-k's 50 survivors, renormalised: it reaches 1 at rank 50
        top_p_curve = next(t for t in fig.data if t.name.endswith("what top-p sees"))
        assert top_p_curve.x[-1] == 50 and top_p_curve.y[-1] == pytest.approx(1.0)
    # on the raw distribution top-p 0.7 alone would keep a different number (the old chart's mistake)
    raw_alone = charts.cut_points(np.asarray(at["raw"], dtype=float), 50, 0.7)[1]
    assert raw_alone != seq.steps[2].kept["top_p"]


def test_nucleus_axis_has_full_tick_labels(sampled):
    _, result = sampled
    fig = charts.nucleus_figure(result.runs[0].best)
    axis = fig.layout.yaxis
    assert axis.type == "log" and axis.tickmode == "array"
    ticks = dict(zip(axis.tickvals, axis.ticktext))
    assert ticks[20] == "20" and ticks[50] == "50" and ticks[1] == "1"
    assert max(axis.tickvals) >= 50


def test_real_top10_uses_the_softmax_over_the_whole_vocabulary(playground):
    at = internals.distribution_at(playground, playground.tokenizer.encode(PROMPTS[0]))
    logits = at["logits"].numpy()
    fig = charts.temperature_figure(logits, [0.5, 1.0, 2.0], labels=[str(i) for i in range(10)], top=10)
    for trace, t in zip(fig.data, [0.5, 1.0, 2.0]):
        full = charts.softmax_with_temperature(logits, t)
        assert np.allclose(trace.y, np.sort(full)[::-1][:10])
    assert sum(fig.data[2].y) < 0.99  # not renormalised over ten tokens
    assert "all 50,257 tokens" in fig.layout.yaxis.title.text


def test_lab_page_captions_speak_plainly():
    text = (ROOT / "pages/3_sampling_lab.py").read_text()
    assert "Seed 004" not in text and "seed 004" not in text.lower()


# D. beam tree ---------------------------------------------------------------------------------


def test_beam_tree_is_a_tree_with_the_best_path_highlighted(beams):
    _, result = beams
    run = result.runs[0]
    lay = beam_tree.beam_tree_layout(run, max_steps=20)
    fig = beam_tree.beam_tree_figure(run, max_steps=20)
    by_name = {t.name: t for t in fig.data}
    best = by_name["returned best hypothesis"]
    assert best.line.width >= 3 and best.line.color == colours.BEST_COLOUR
    path = [lay["by_id"][i] for i in lay["best"]]
    assert [n.token_id for n in path] == run.best.ids[:20] and list(best.x) == [-1] + list(range(len(path)))
    assert [a.x for a in fig.layout.annotations] == list(range(len(path)))  # its tokens labelled
    # a real tree: every surviving node sits within the rows of its subtree, next to its children
    y, nodes = lay["y"], lay["nodes"]
    kids = {}
    for n in nodes:
        kids.setdefault(n.parent, []).append(n)
    for n in nodes:
        alive = [c for c in kids.get(n.id, []) if c.status != "pruned"]
        if alive:
            assert min(y[c.id] for c in alive) <= y[n.id] <= max(y[c.id] for c in alive)
    # every edge joins a parent to its child
    edges = by_name["edges (kept)"]
    pairs = [(edges.x[i], edges.y[i], edges.x[i + 1], edges.y[i + 1]) for i in range(0, len(edges.x), 3)]
    assert all(x1 == x0 + 1 for x0, _, x1, _ in pairs)
    # readable at 10 beams: no text on pruned nodes, faded; finished ones marked
    assert by_name["pruned"].mode == "markers" and by_name["pruned"].marker.opacity < 1
    assert by_name["finished"].marker.symbol == "star"
    labelled = sum(len(t.x) for t in fig.data if "text" in t.mode and t.name in ("kept", "finished"))
    assert labelled == sum(n.status != "pruned" for n in nodes) <= len(nodes) / 2
    assert "not renormalised" in by_name["kept"].hovertemplate


def test_beam_tree_labels_whitespace_visibly():
    nodes_run = RunTrace("beam", "beam 2", {}, [Sequence([5, 6], "\n x", [], "eos")], beam_tree=[])
    from core.decoding.trace import BeamNode
    nodes_run.beam_tree = [BeamNode(0, 0, None, 5, "\n", -1.0, "kept"), BeamNode(1, 0, None, 7, " y", -2.0, "kept"),
                           BeamNode(2, 1, 0, 6, " x", -1.5, "finished", -0.75),
                           BeamNode(3, 1, 1, 8, "<b>", -2.5, "pruned")]
    fig = beam_tree.beam_tree_figure(nodes_run)
    texts = [t for trace in fig.data if trace.text is not None for t in trace.text]
    assert "↵" in texts and "␣x" in texts and not any("\n" in t for t in texts)
    assert "<b>" not in [t for t in fig.data if t.name == "pruned"][0].text  # escaped for plotly


def test_hypotheses_html_shows_whole_texts(beams):
    _, result = beams
    run = result.runs[0]
    out = markup.hypotheses_html(run)
    parsed = Tags(out)
    assert len([t for t, _ in parsed.tags if t == "tr"]) == len(run.sequences) + 1
    assert len(parsed.with_class("dp-card")) == sum(len(q.ids) for q in run.sequences)
    assert [r["text"] for r in tables.hypotheses_table(run)] == [q.text for q in run.sequences]


# E. byte tokens and attention -------------------------------------------------------------------


def test_byte_tokens_show_their_bytes():
    tok = AutoTokenizer.from_pretrained(ROOT / "assets/tokenizers/gpt2")
    ids = tok.encode("你好")
    labels = [tokens.token_label(tok, i) for i in ids]
    assert "\ufffd" not in "".join(labels)
    assert labels == ["<0xE4><0xBD>", "<0xA0>", "<0xE5><0xA5>", "<0xBD>"]
    hexed = "".join(labels).replace("<0x", "").replace(">", "")
    assert bytes.fromhex(hexed).decode() == "你好"
    assert tokens.token_label(tok, tok.encode(" hello")[0]) == " hello"
    assert tokens.token_label(tok, tok.encode("🦄")[0]).startswith("<0xF0>")


def test_attention_says_how_many_tokens_it_shows(playground):
    text = "To be, or not to be " * 20
    tokens, maps, total = internals.attention_maps(playground, text, max_tokens=40)
    assert total == len(playground.tokenizer.encode(text)) > 40 == len(tokens) and maps.shape[-1] == 40
    tokens, maps, total = internals.attention_maps(playground, "你好")
    assert total == len(tokens) == 4 and tokens[0] == "<0xE4><0xBD>"


# F. HTML export -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(playground):
    runs = [DecodeSettings("greedy", max_new_tokens=6), DecodeSettings("beam", num_beams=3, max_new_tokens=6),
            DecodeSettings("sample", top_k=20, max_new_tokens=6, seed=2)]
    result = playground.compare(EVIL + " " + PROMPTS[0], runs)
    rec = recipe.recipe(result, runs, EVIL + " " + PROMPTS[0])
    return result, rec, recipe.generate_snippet(rec)


PLOTLY_BUNDLE = "* plotly.js v"  # the licence header at the top of plotly.js


@pytest.mark.parametrize("page", ["compare", "beam", "step"])
def test_export_is_one_offline_file(exported, playground, page):
    result, rec, snippet = exported
    branches = None
    if page == "step":
        b = playground.decode(PROMPTS[0], DecodeSettings("greedy", max_new_tokens=3),
                              continuation=[result.runs[0].best.ids[0]])
        branches = [(f"branch {EVIL}", b.prompt_text, b.runs[0].best)]
    out = html_export.export_html(result, rec, snippet, page=page, branches=branches)
    assert out.startswith("<!DOCTYPE html>")
    # no script or stylesheet from the network
    assert not re.search(r"<script[^>]*\bsrc\s*=", out, re.I)
    assert not re.search(r"<link[^>]*\bhref\s*=\s*[\"']?(https?:)?//", out, re.I)
    assert not re.search(r"@import|url\(\s*[\"']?https?:", out.split("<script", 1)[0], re.I)
    figures_in_page = {"compare": 1, "beam": 1, "step": 0}[page]
    assert out.count(PLOTLY_BUNDLE) == min(1, figures_in_page)
    # the prompt, and every other user text, escaped
    assert EVIL not in out and "&lt;img src=x onerror=alert(1)&gt;" in out
    parsed = Tags(out.split("<script", 1)[0])  # the html before plotly's bundle
    assert not [t for t, _ in parsed.tags if t == "img"]
    head = out.split("<script", 1)[0] if figures_in_page else out
    cards = Tags(out).with_class("dp-card") if not figures_in_page else Tags(head).with_class("dp-card")
    if page == "compare":
        assert len(Tags(out).with_class("dp-card")) == sum(len(r.best.ids) for r in result.runs)
        assert "Coherence vs diversity" in out and "sequence log-prob (processed)" in out
    elif page == "beam":
        assert "Beam search tree" in out and "Hypotheses of beam 3" in out
    else:
        assert len(cards) == len(result.runs[0].best.ids) + len(branches[0][2].ids)
        assert "choice 1" in out and "branch &lt;img" in out
    assert html.escape(snippet.splitlines()[0]) in out and "generate(" in out and "Colour:" in out


def test_export_with_two_figures_inlines_plotly_once(playground):
    runs = [DecodeSettings("beam", num_beams=2, max_new_tokens=4),
            DecodeSettings("beam", num_beams=2, no_repeat_ngram_size=1, max_new_tokens=4)]
    result = playground.compare(PROMPTS[0], runs)
    rec = recipe.recipe(result, runs, PROMPTS[0])
    out = html_export.export_html(result, rec, recipe.generate_snippet(rec), page="beam")
    assert out.count(PLOTLY_BUNDLE) == 1 and out.count('class="plotly-graph-div"') == 2
    with pytest.raises(ValueError):
        html_export.export_html(result, rec, "", page="nope")
