"""`risk --second-model`: the choice is validated, stored in the workspace's settings, used by every later scoring
(with or without the option), and turned off by 'none'."""

from __future__ import annotations

import pytest

from core.encoders import default_model_path
from core.risk import SECOND_MODEL_SETTING, stored_signals
from core.workspace import open_workspace
from tests.cli_helpers import assert_user_error, run_cli


@pytest.mark.slow
def test_risk_second_model_is_stored_used_and_turned_off(mined, ws_root, tmp_path):
    run = mined[2].run_id
    model = str(default_model_path())  # any local sentence-transformers folder will do
    ws = open_workspace(ws_root, create=False)

    def risk(*extra: object):
        return run_cli("risk", "--workspace", ws_root, "--run", run, "--out", tmp_path / "risk.tsv", "--device",
                       "cpu", *extra)

    def second_model_signal():
        return stored_signals(ws.store().candidates(run))["second_model"]

    assert risk().returncode == 0
    assert (second_model_signal() == 0).all() and ws.settings().get(SECOND_MODEL_SETTING) is None

    chosen = risk("--second-model", model)
    assert chosen.returncode == 0, chosen.stderr
    assert ws.settings()[SECOND_MODEL_SETTING] == model
    assert (second_model_signal().abs() > 0).any()  # a within-query z-score of the second model's cosine

    assert risk().returncode == 0  # later scoring keeps the stored choice
    assert (second_model_signal().abs() > 0).any()

    missing = tmp_path / "no-such-model"
    assert_user_error(risk("--second-model", missing), str(missing), "not a folder")
    assert ws.settings()[SECOND_MODEL_SETTING] == model  # a refused choice changes nothing

    assert risk("--second-model", "none").returncode == 0
    assert ws.settings()[SECOND_MODEL_SETTING] is None
    assert (second_model_signal() == 0).all()
