"""An export format is declared once: one registered here (and nowhere else) is offered on the Export page, written
with a manifest by ``export``, and gone again once unregistered."""

from __future__ import annotations

import json

import pytest

from core import export as export_module
from core.errors import UserError
from core.export import ExportFormat, export
from tests.app_helpers import finish_job, open_app, store_at


def _ids_only(store, td, folder, n_negatives) -> dict:
    """A throwaway format: one line per query, its id and how many negatives it keeps."""
    lines = [json.dumps({"query_id": ex.query_id, "negatives": len(ex.negatives)}) for ex in td.examples]
    (folder / "counts.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"rows": len(lines)}


COUNTS = ExportFormat("neg-counts", "negatives per query (test only)", _ids_only)


def test_a_registered_format_is_offered_on_the_export_page_and_written(monkeypatch, ws_root):
    monkeypatch.setattr(export_module, "EXPORT_FORMATS", dict(export_module.EXPORT_FORMATS))
    export_module.register(COUNTS)
    at = open_app(monkeypatch, ws_root, "pages/export.py")
    choice = at.selectbox(key="exp_fmt")
    assert "neg-counts" in choice.options[-1] and "negatives per query (test only)" in choice.options[-1]
    choice.set_value("neg-counts").run()
    at.button(key="exp_go").click().run()
    finish_job(at, "exp_job")
    assert not at.exception and not at.error
    folder = next((ws_root / "exports").glob("*-neg-counts-raw"))
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["format"] == "neg-counts" and manifest["rows"] == 6  # the six train queries of the fixture
    assert set(manifest["files"]) == {"counts.jsonl"}
    monkeypatch.undo()
    assert "neg-counts" not in export_module.EXPORT_FORMATS


def test_an_unregistered_format_is_refused_by_name(ws_root, tmp_path):
    store = store_at(ws_root)
    with pytest.raises(UserError, match="unknown export format 'neg-counts'"):
        export(store, store.runs("tiny")[0]["run_id"], "neg-counts", tmp_path / "out")
