"""Plotly figures for score distributions, rule previews and embedding maps (no Streamlit, so testable alone).

Scores are cosine similarities s; s_P is the query's weakest labelled positive; margin = s − s_P (> 0 means the
"negative" scored above a labelled positive, a strong false-negative hint). Rule thresholds are drawn where the
rule cuts: exactly for abs on scores and marginpos on margins, at the median query otherwise (those cuts move
with each query's s_P).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from core.rules import RuleSpec

KEPT_COLOURS = {"kept": "#d62728", "dropped": "#7f7f7f", "positive (s_P)": "#2ca02c"}
VERDICT_COLOURS = {"false_negative": "#d62728", "true_negative": "#1f9e89", "unsure": "#ff7f0e",
                   "unjudged": "#9e9e9e", "positive": "#2ca02c"}
_LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2), height=340)


def threshold_lines(spec: RuleSpec, pos_scores: np.ndarray, axis: str) -> list[tuple[float, str]]:
    """(x, label) for each active filter, on the ``score`` or the ``margin`` axis, as the filter declares them."""
    pos = np.asarray(pos_scores, dtype=float)
    if pos.size == 0:
        return []
    return [line for rule, t in spec.active_filters() for line in rule.lines(t, pos, axis)]


def _draw_lines(fig: go.Figure, lines: list[tuple[float, str]]) -> go.Figure:
    for i, (x, label) in enumerate(lines):
        fig.add_vline(x=x, line_dash="dash", line_color="black",
                      annotation_text=label, annotation_position="top left" if i % 2 else "top right")
    return fig


def _kept_label(candidates: pd.DataFrame) -> pd.Series:
    return np.where(candidates["kept"], "kept", "dropped")


def score_histogram(candidates: pd.DataFrame, spec: RuleSpec) -> go.Figure:
    """Positive (s_P, one per query) vs kept and dropped negative scores, with the rule's cut-offs."""
    pos = candidates.drop_duplicates("query_id")["pos_score"]
    frame = pd.concat([pd.DataFrame({"score": candidates["score"], "group": _kept_label(candidates)}),
                       pd.DataFrame({"score": pos, "group": "positive (s_P)"})], ignore_index=True)
    fig = px.histogram(frame, x="score", color="group", barmode="overlay", histnorm="probability density",
                       nbins=60, opacity=0.6, color_discrete_map=KEPT_COLOURS,
                       title="Scores: weakest positive vs kept / dropped candidates")
    fig.update_layout(**_LAYOUT)
    return _draw_lines(fig, threshold_lines(spec, pos.to_numpy(), "score"))


def margin_histogram(candidates: pd.DataFrame, spec: RuleSpec, colour: pd.Series | None = None,
                     title: str = "Margin s − s_P of candidates") -> go.Figure:
    """Histogram of s − s_P, coloured by kept/dropped or by a given label per row (e.g. the verdict)."""
    groups = _kept_label(candidates) if colour is None else colour
    frame = pd.DataFrame({"margin": candidates["score"] - candidates["pos_score"], "group": groups})
    cmap = KEPT_COLOURS if colour is None else VERDICT_COLOURS
    fig = px.histogram(frame, x="margin", color="group", barmode="overlay", nbins=60, opacity=0.65,
                       histnorm="probability density",
                       color_discrete_map=cmap, title=title)
    fig.update_layout(**_LAYOUT)
    fig.add_vline(x=0, line_color="#2ca02c", annotation_text="s = s_P", annotation_position="bottom right")
    pos = candidates.drop_duplicates("query_id")["pos_score"].to_numpy()
    return _draw_lines(fig, threshold_lines(spec, pos, "margin"))


def margin_ecdf(candidates: pd.DataFrame, spec: RuleSpec) -> go.Figure:
    """ECDF of s − s_P for kept and dropped candidates: how much of each lies above any margin."""
    frame = pd.DataFrame({"margin": candidates["score"] - candidates["pos_score"],
                          "group": _kept_label(candidates)})
    fig = px.ecdf(frame, x="margin", color="group", color_discrete_map=KEPT_COLOURS,
                  title="ECDF of the margin s − s_P")
    fig.update_layout(**_LAYOUT)
    pos = candidates.drop_duplicates("query_id")["pos_score"].to_numpy()
    return _draw_lines(fig, threshold_lines(spec, pos, "margin"))


def survivors_histogram(per_query: pd.DataFrame, num_negatives: int) -> go.Figure:
    """How many queries keep 0, 1, 2 … negatives before and after a rule change."""
    frame = pd.concat([pd.DataFrame({"kept": per_query["kept_before"], "run": "current run"}),
                       pd.DataFrame({"kept": per_query["kept_after"], "run": "preview"})], ignore_index=True)
    fig = px.histogram(frame, x="kept", color="run", barmode="group", title="Negatives kept per query",
                       color_discrete_map={"current run": "#7f7f7f", "preview": "#1f77b4"})
    fig.add_vline(x=num_negatives - 0.5, line_dash="dash", annotation_text=f"short of {num_negatives}")
    fig.update_layout(**_LAYOUT)
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


def map_figure(points: pd.DataFrame, colour: str, title: str, continuous: bool = False) -> go.Figure:
    """Scatter of projected points. ``points`` has x, y, ``colour``, kind, id, hover; customdata = id.

    Queries are drawn as diamonds so they stand out from documents; selection (box/lasso) returns the ids.
    """
    frame = points.copy()
    frame["hover"] = frame["hover"].astype(str).str.slice(0, 200)
    kwargs = dict(color_continuous_scale="Viridis") if continuous else dict(
        color_discrete_map={**VERDICT_COLOURS, **KEPT_COLOURS, "query": "#1f77b4"})
    fig = px.scatter(frame, x="x", y="y", color=colour, symbol="kind", custom_data=["id"],
                     hover_name="id", hover_data={"hover": True, "x": False, "y": False, "kind": True},
                     symbol_map={"query": "diamond", "document": "circle", "positive": "star"},
                     title=title, **kwargs)
    fig.update_traces(marker=dict(size=7, opacity=0.8))
    fig.update_layout(**{**_LAYOUT, "height": 600}, dragmode="lasso", xaxis_title=None, yaxis_title=None)
    return fig
