"""Export a run's training data in the formats trainers read, each with a manifest, written atomically.

An export is a folder: the data file(s), an ``ids.jsonl`` sidecar where the format has no room for ids
(sentence-transformers trainers feed every column to the model), and ``manifest.json`` with provenance, counts
and file hashes.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

from core import __version__
from core.errors import UserError
from core.files import atomic_dir
from core.selection import TrainingData, select

FORMATS = ("st-triplet", "st-ntuple", "st-labeled-list", "flag", "tevatron", "beir-qrels")


def _jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rows(fmt: str, td: TrainingData, n_negatives: int) -> tuple[list[dict], list[dict], int]:
    """(data rows, id rows, skipped queries) for the JSONL formats."""
    q, doc = td.query_text, td.doc
    data: list[dict] = []
    ids: list[dict] = []
    skipped = 0
    for ex in td.examples:
        if fmt == "st-triplet":
            if not ex.negatives:
                skipped += 1
            for i, neg in enumerate(ex.negatives):
                pos = ex.positives[i % len(ex.positives)]  # spread negatives over all positives
                data.append({"anchor": q[ex.query_id], "positive": doc(pos), "negative": doc(neg)})
                ids.append({"query_id": ex.query_id, "positive_id": pos, "negative_id": neg})
        elif fmt == "st-ntuple":
            if len(ex.negatives) < n_negatives:
                skipped += 1
                continue
            negs = ex.negatives[:n_negatives]
            for pos in ex.positives:
                row = {"anchor": q[ex.query_id], "positive": doc(pos)}
                row.update({f"negative_{i + 1}": doc(n) for i, n in enumerate(negs)})
                data.append(row)
                ids.append({"query_id": ex.query_id, "positive_id": pos, "negative_ids": negs})
        elif fmt == "st-labeled-list":
            docs = ex.positives + ex.negatives
            data.append({"query": q[ex.query_id], "docs": [doc(d) for d in docs],
                         "labels": [1] * len(ex.positives) + [0] * len(ex.negatives)})
            ids.append({"query_id": ex.query_id, "doc_ids": docs})
        elif fmt == "flag":
            data.append({"query": q[ex.query_id], "pos": [doc(d) for d in ex.positives],
                         "neg": [doc(d) for d in ex.negatives]})
            ids.append({"query_id": ex.query_id, "pos_ids": ex.positives, "neg_ids": ex.negatives})
        elif fmt == "tevatron":
            def passages(doc_ids: list[str]) -> list[dict]:
                return [{"docid": d, "title": td.doc_title.get(d, ""), "text": td.doc_text[d]} for d in doc_ids]
            data.append({"query_id": ex.query_id, "query": q[ex.query_id],
                         "positive_passages": passages(ex.positives),
                         "negative_passages": passages(ex.negatives)})
    return data, ids, skipped


def _write_beir(store, td: TrainingData, folder: Path) -> dict[str, int]:
    dataset = td.run["dataset"]
    docs = store.documents(dataset)
    _jsonl(folder / "corpus.jsonl", [{"_id": r.doc_id, "title": r.title, "text": r.text}
                                     for r in docs.itertuples(index=False)])
    queries = store.queries(dataset)
    _jsonl(folder / "queries.jsonl", [{"_id": r.query_id, "text": r.text} for r in queries.itertuples(index=False)])
    (folder / "qrels").mkdir()
    qrels = store.qrels(dataset)
    if td.data == "raw":
        qrels = qrels[qrels["origin"] == "imported"]
    counts = {}
    for split, group in qrels.groupby("split"):
        lines = ["query-id\tcorpus-id\tscore"] + [f"{r.query_id}\t{r.doc_id}\t{r.score}"
                                                  for r in group.itertuples(index=False)]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        counts[split] = len(group)
    return counts


def export(store, run_id: str, fmt: str, out: str | Path, data: str | None = None, unsure: str = "drop") -> dict:
    """Write one export folder and return its manifest. ``data`` defaults to curated when verdicts exist."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r} (use {', '.join(FORMATS)})")
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    probe = select(store, run_id, "raw", unsure)
    if data is None:
        data = "curated" if probe.label_counts or probe.promoted_positives or \
            store.count("qrels", dataset=probe.run["dataset"], origin="promoted") else "raw"
    td = probe if data == "raw" else select(store, run_id, data, unsure)
    run = td.run
    n_neg = int(run["params"]["rules"].get("num_negatives", 5))
    manifest = {
        "format": fmt, "dataset": run["dataset"], "run_id": run_id, "split": run["split"], "data": data,
        "unsure": unsure, "rules": run["params"]["rules"], "model_fingerprint": run["model_fingerprint"],
        "model_path": run["params"].get("model_path"), "label_counts": td.label_counts,
        "removed_negatives": td.removed_negatives, "promoted_positives": td.promoted_positives,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "negspace_version": __version__,
    }
    with atomic_dir(out) as tmp:
        files: dict[str, dict] = {}
        if fmt == "beir-qrels":
            counts = _write_beir(store, td, tmp)
            manifest.update(rows=sum(counts.values()), qrels_per_split=counts, queries=len(td.examples))
            for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
                files[str(path.relative_to(tmp))] = {"sha256": _sha256(path),
                                                     "rows": sum(1 for _ in path.open(encoding="utf-8"))}
        else:
            rows, ids, skipped = _rows(fmt, td, n_neg)
            _jsonl(tmp / "data.jsonl", rows)
            files["data.jsonl"] = {"sha256": _sha256(tmp / "data.jsonl"), "rows": len(rows)}
            if ids:
                _jsonl(tmp / "ids.jsonl", ids)
                files["ids.jsonl"] = {"sha256": _sha256(tmp / "ids.jsonl"), "rows": len(ids)}
            manifest.update(rows=len(rows), queries=len(td.examples) - skipped, skipped_queries=skipped,
                            negatives_per_row=n_neg if fmt == "st-ntuple" else None)
        manifest["files"] = files
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return manifest
