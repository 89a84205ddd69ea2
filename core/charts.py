"""Plotly figures for score distributions, rule previews and embedding maps (no Streamlit, so testable alone).

Distributions arrive binned (``core.run_stats.Bins``): a figure carries one bar per bin, whatever the run's size.

Scores are cosine similarities s; s_P is the query's weakest labelled positive; margin = s − s_P (> 0 means the
"negative" scored above a labelled positive, a strong false-negative hint). Rule thresholds are drawn where the
rule cuts: exactly for abs on scores and marginpos on margins, at the median query otherwise (those cuts move
with each query's s_P).
"""

from __future__ import annotations

import html
import math
import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from core.lookups import snippet
from core.rules import RuleSpec

if TYPE_CHECKING:
    from core.run_stats import Bins

KEPT_COLOURS = {"kept": "#d62728", "dropped": "#7f7f7f", "positive (s_P)": "#2ca02c"}
VERDICT_COLOURS = {"false_negative": "#d62728", "true_negative": "#1f9e89", "unsure": "#ff7f0e",
                   "unjudged": "#9e9e9e", "positive": "#2ca02c"}
_LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2), height=340)


def threshold_lines(spec: RuleSpec, pos_scores: np.ndarray, axis: str) -> list[tuple[float, str]]:
    """(x, label) for each active filter, on the ``score``, ``margin`` or ``ce`` axis, as the filter declares them."""
    pos = np.asarray(pos_scores, dtype=float)
    if pos.size == 0:
        return []
    return [line for rule, t in spec.active_filters() for line in rule.lines(t, pos, axis)]


def _draw_lines(fig: go.Figure, lines: list[tuple[float, str]]) -> go.Figure:
    for i, (x, label) in enumerate(lines):
        fig.add_vline(x=x, line_dash="dash", line_color="black",
                      annotation_text=label, annotation_position="top left" if i % 2 else "top right")
    return fig


def _bars(bins: Bins, colours: dict[str, str], title: str, axis: str) -> go.Figure:
    """Overlaid bars, one trace per group of ``bins`` (its density; its counts on hover), in the group's colour."""
    fig = go.Figure([go.Bar(x=bins.centres, y=bins.density(group), width=bins.width,
                            name=group, marker_color=colours.get(group), opacity=0.6,
                            customdata=counts, hovertemplate="%{x:.3f}: %{customdata:,} candidates<extra></extra>")
                     for group, counts in bins.counts.items()])
    fig.update_layout(**_LAYOUT, title=title, barmode="overlay", xaxis_title=axis,
                      yaxis_title="probability density")
    return fig


def score_histogram(scores: Bins, pos_scores: np.ndarray, spec: RuleSpec) -> go.Figure:
    """Positive (s_P, one per query) vs kept and dropped negative scores, with the rule's cut-offs."""
    fig = _bars(scores, KEPT_COLOURS, "Scores: weakest positive vs kept / dropped candidates", "score")
    return _draw_lines(fig, threshold_lines(spec, pos_scores, "score"))


def margin_histogram(margins: Bins, pos_scores: np.ndarray, spec: RuleSpec, colours: dict[str, str] | None = None,
                     title: str = "Margin s − s_P of candidates") -> go.Figure:
    """Histogram of s − s_P per group: kept/dropped, or the groups ``colours`` names (e.g. verdicts)."""
    fig = _bars(margins, KEPT_COLOURS if colours is None else colours, title, "margin")
    fig.add_vline(x=0, line_color="#2ca02c", annotation_text="s = s_P", annotation_position="bottom right")
    return _draw_lines(fig, threshold_lines(spec, pos_scores, "margin"))


def margin_ecdf(margins: Bins, pos_scores: np.ndarray, spec: RuleSpec) -> go.Figure:
    """ECDF of s − s_P for kept and dropped candidates, read at the bin edges: how much of each lies below any
    margin."""
    fig = go.Figure([go.Scatter(x=margins.edges, y=np.r_[0.0, margins.cumulative(group)], name=group,
                                mode="lines", line_shape="linear", line_color=KEPT_COLOURS.get(group))
                     for group in margins.counts])
    fig.update_layout(**_LAYOUT, title="ECDF of the margin s − s_P", xaxis_title="margin", yaxis_title="share")
    return _draw_lines(fig, threshold_lines(spec, pos_scores, "margin"))


def ce_histogram(ce: Bins, pos_scores: np.ndarray, spec: RuleSpec,
                 title: str = "Cross-encoder probability p of candidates") -> go.Figure:
    """The teacher's probability p of kept and dropped candidates (``core.cross_encoder``), with the ce rule's τ."""
    return _draw_lines(_bars(ce, KEPT_COLOURS, title, "cross-encoder probability p"),
                       threshold_lines(spec, pos_scores, "ce"))


def survivors_histogram(survivors: pd.DataFrame, num_negatives: int) -> go.Figure:
    """How many queries keep 0, 1, 2 … negatives before and after a rule change (``run_stats.survivors``): one bin
    per count, on an axis that labels whole numbers only (a query keeps 3 negatives, never 2.5)."""
    counts = survivors["kept"].astype(int)
    fig = go.Figure([go.Bar(x=counts, y=survivors[column], name=name, marker_color=colour,
                            hovertemplate="%{y:,} queries keep %{x} negatives<extra>" + name + "</extra>")
                     for column, name, colour in (("before", "current run", "#7f7f7f"),
                                                  ("after", "preview", "#1f77b4"))])
    fig.add_vline(x=num_negatives - 0.5, line_dash="dash", annotation_text=f"short of {num_negatives}")
    fig.update_layout(**_LAYOUT, title="Negatives kept per query", barmode="group", yaxis_title="queries",
                      xaxis=dict(title="negatives kept", tickmode="linear", tick0=0, tickformat="d",
                                 dtick=max(1, math.ceil(len(counts) / 25))))  # ≤ 25 labels, each a whole number
    return fig


def query_scores(candidates: pd.DataFrame, pos_score: float) -> go.Figure:
    """One query's candidates by rank: score bars coloured by verdict, the weakest positive as a line."""
    labels = candidates["label"].fillna("unjudged")
    # graph_objects, not plotly.express: this chart is rebuilt on every Review click and px costs ~150 ms
    fig = go.Figure([go.Bar(x=group["rank"], y=group["score"], name=verdict, customdata=group["doc_id"],
                            marker_color=VERDICT_COLOURS.get(verdict),
                            hovertemplate="rank %{x}<br>score %{y:.3f}<br>%{customdata}<extra></extra>")
                     for verdict, group in candidates.groupby(labels, sort=False)])
    fig.add_hline(y=pos_score, line_color="#2ca02c", annotation_text="s_P")
    fig.update_layout(title="This query's candidates", xaxis_title="rank", yaxis_title="score",
                      legend_title_text="verdict")
    fig.update_layout(**{**_LAYOUT, "height": 260})
    return fig


HOVER_WIDTH = 60  # characters per hover line: a map point's text stays a readable box, not one screen-wide line
HOVER_CHARS = 300  # of a document's text on hover (the list below the map shows all of it)


_LINE = re.compile(r"\S.{0,%d}(?=\s|$)|\S{1,%d}" % (HOVER_WIDTH - 1, HOVER_WIDTH))  # greedy: words, else a cut


def hover_lines(text: object) -> str:
    """A point's hover text for Plotly: cut to ``HOVER_CHARS``, wrapped on word boundaries every ``HOVER_WIDTH``
    characters with <br> (Plotly draws one line otherwise; a longer word is cut), each line HTML-escaped first, so a
    document's own "<b>" or "&" shows literally and only our line breaks are markup. One regular expression, not
    ``textwrap``: the whole-dataset map wraps ten thousand texts per rerun, which took textwrap 0.4 s."""
    return "<br>".join(html.escape(line) for line in _LINE.findall(snippet(str(text), HOVER_CHARS)))


def map_figure(points: pd.DataFrame, colour: str, title: str, continuous: bool = False) -> go.Figure:
    """Scatter of projected points. ``points`` has x, y, ``colour``, kind, id, hover; customdata = id.

    Queries are drawn as diamonds so they stand out from documents; selection (box/lasso) returns the ids.
    """
    frame = points.copy()
    frame["hover"] = [hover_lines(text) for text in frame["hover"]]
    kwargs = dict(color_continuous_scale="Viridis") if continuous else dict(
        color_discrete_map={**VERDICT_COLOURS, **KEPT_COLOURS, "query": "#1f77b4"})
    fig = px.scatter(frame, x="x", y="y", color=colour, symbol="kind", custom_data=["id"], labels={"hover": "text"},
                     hover_name="id", hover_data={"hover": True, "x": False, "y": False, "kind": True,
                                                  colour: ":.3f" if continuous else True},
                     symbol_map={"query": "diamond", "document": "circle", "positive": "star"},
                     title=title, **kwargs)
    fig.update_traces(marker=dict(size=7, opacity=0.8), hoverlabel_align="left")  # wrapped lines read from the left
    fig.update_layout(**{**_LAYOUT, "height": 600}, dragmode="lasso", xaxis_title=None, yaxis_title=None)
    return fig
