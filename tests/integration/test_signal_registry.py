"""A risk signal is declared once: one registered here (and nowhere else) appears in the risk frame, the stored
signals and the model, and runs scored before it existed are scored again."""

from __future__ import annotations

import json

import numpy as np

from core import risk
from core.workspace import open_workspace


def _text_length(ctx: risk.SignalContext) -> np.ndarray:
    """A throwaway signal: the candidate document's length in characters (log-scaled for the model)."""
    docs = ctx.store.documents(ctx.run["dataset"], list(ctx.frame["doc_id"].unique())).set_index("doc_id")
    return docs.loc[ctx.frame["doc_id"], "text"].str.len().to_numpy(dtype=float)


LENGTH = risk.Signal("text_length", "characters in the candidate's text (test only)", _text_length, weight=0.5,
                     mean=4.0, scale=0.5, log_scale=True)


def test_a_registered_signal_reaches_the_frame_the_store_and_runs_scored_before(monkeypatch, ws_root):
    ws = open_workspace(ws_root)
    store = ws.store()
    run_id = store.runs("tiny")[0]["run_id"]
    assert risk.ensure_risk(store, ws, run_id) and not risk.ensure_risk(store, ws, run_id)
    before = store.candidates(run_id)["signals"].map(json.loads)
    assert "text_length" not in before.iloc[0]

    monkeypatch.setattr(risk, "SIGNALS", dict(risk.SIGNALS))
    risk.register(LENGTH)
    frame = risk.signal_frame(store, ws, run_id)
    assert set(risk.SIGNALS) <= set(frame.columns) and frame.columns[-1] == "text_length"
    texts = store.documents("tiny", list(frame["doc_id"])).set_index("doc_id")["text"]
    assert (frame["text_length"].to_numpy() == texts.loc[frame["doc_id"]].str.len().to_numpy()).all()
    assert risk.default_model().weights["text_length"] == 0.5
    features = risk.features(frame)
    np.testing.assert_allclose(features["text_length"], np.log(frame["text_length"]))

    assert store.risk_missing(run_id, risk.signal_set()), "a new signal set makes the run stale"
    assert risk.ensure_risk(store, ws, run_id), "the stale run is scored again"
    stored = store.candidates(run_id)["signals"].map(json.loads)
    assert all(row["text_length"] > 0 for row in stored)
    assert not risk.ensure_risk(store, ws, run_id)

    monkeypatch.undo()
    assert "text_length" not in risk.SIGNALS
    assert risk.default_model() is risk.DEFAULT_MODEL
    assert risk.ensure_risk(store, ws, run_id), "back to the built-in set: scored again with it"
