"""Figures users read closely: the kept-per-query histogram has one bin per whole count, and map hover text wraps on
word boundaries, stays literal and shows rounded numbers."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from core import charts, run_stats


def test_survivors_histogram_has_one_bin_per_count():
    survivors = run_stats.survivors(np.array([0, 3, 3, 5]), np.array([1, 1, 3, 2]))
    fig = charts.survivors_histogram(survivors, 3)
    for trace in fig.data:
        assert list(trace.x) == [0, 1, 2, 3, 4, 5]  # every count a bar, none in between
    assert list(fig.data[0].y) == [1, 0, 0, 2, 0, 1] and list(fig.data[1].y) == [0, 2, 1, 1, 0, 0]
    axis = fig.layout.xaxis
    assert (axis.tickmode, axis.tick0, axis.dtick, axis.tickformat) == ("linear", 0, 1, "d")
    many = charts.survivors_histogram(run_stats.survivors(np.arange(100), np.arange(100)), 10)
    assert many.layout.xaxis.dtick == 4 and float(many.layout.xaxis.dtick).is_integer()


def test_hover_text_wraps_on_words_and_stays_literal():
    text = "<b>bold</b> & " + " ".join(f"word{i}" for i in range(60))
    wrapped = charts.hover_lines(text)
    lines = wrapped.split("<br>")
    assert len(lines) > 1 and all(len(html.unescape(line)) <= charts.HOVER_WIDTH for line in lines)
    assert lines[0].startswith("&lt;b&gt;bold&lt;/b&gt; &amp; word0")  # a document's markup is escaped
    words = html.unescape(" ".join(lines)).split()
    assert words[:3] == ["<b>bold</b>", "&", "word0"] and all(w.startswith("word") for w in words[3:-1])
    assert len(html.unescape(wrapped.replace("<br>", " "))) <= charts.HOVER_CHARS


def test_map_hover_rounds_numbers():
    points = pd.DataFrame({"x": [0.0, 1.0], "y": [1.0, 0.0], "kind": ["document", "document"], "id": ["a", "b"],
                           "hover": ["short", "x " * 200], "score": [0.123456789, 0.987654321]})
    fig = charts.map_figure(points, "score", "t", continuous=True)
    template = fig.data[0].hovertemplate
    assert "score=%{marker.color:.3f}" in template  # 0.123, not 0.123456789
    assert list(fig.data[0].customdata[:, 1]) == ["short", charts.hover_lines("x " * 200)]
