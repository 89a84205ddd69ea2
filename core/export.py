"""Export a run's training data in the formats trainers read, each with a manifest, written atomically.

An export is a folder: the data file(s), an ``ids.jsonl`` sidecar where the format has no room for ids
(sentence-transformers trainers feed every column to the model), and ``manifest.json`` with provenance, counts
and file hashes. An export only ever replaces an earlier export (a folder with our manifest), an empty folder, or,
when forced, another folder the user named; never the workspace or a folder that holds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from core import __version__, argilla_dataset, label_studio
from core.errors import UserError
from core.files import atomic_dir
from core.jobs import Job, StageProgress
from core.validation import display, user_path

if TYPE_CHECKING:  # the CLI reads FORMATS for its help: keep this module's import free of pandas
    from core.selection import Example, TrainingData
    from core.store import Store

MANIFEST = "manifest.json"
MAX_NAME_BYTES = 200  # leaves room under NAME_MAX for the temporary sibling names of core.files


@dataclass(frozen=True)
class ExportFormat:
    """One export format: the name the CLI and the app offer, what it is for, and how its folder is written.

    ``write(store, training data, folder, negatives per row)`` fills the folder and returns its manifest fields.
    ``rows_file``: the file of one JSON object per training row that ``as_datasets`` turns into a ``datasets``
    folder (None: the format is not rows, e.g. a BEIR folder or a TREC file).
    """

    name: str
    description: str
    write: Callable[[object, TrainingData, Path, int], dict]
    rows_file: str | None = None


# (data row, id row or None) pairs of one query; no pairs = the query is skipped
Rows = list[tuple[dict, dict | None]]


def _jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _file_entry(path: Path) -> dict:
    """sha256 and line count of a written file, read in chunks (a BEIR corpus can be large)."""
    digest, lines = hashlib.sha256(), 0
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            lines += chunk.count(b"\n")
    return {"sha256": digest.hexdigest(), "rows": lines}


def _triplet(ex: Example, td: TrainingData, n_negatives: int) -> Rows:
    rows = []
    for i, neg in enumerate(ex.negatives):
        pos = ex.positives[i % len(ex.positives)]  # spread negatives over all positives
        rows.append(({"anchor": td.query_text[ex.query_id], "positive": td.doc(pos), "negative": td.doc(neg)},
                     {"query_id": ex.query_id, "positive_id": pos, "negative_id": neg}))
    return rows


def _ntuple(ex: Example, td: TrainingData, n_negatives: int) -> Rows:
    if len(ex.negatives) < n_negatives:
        return []
    negs = ex.negatives[:n_negatives]
    rows = []
    for pos in ex.positives:
        row = {"anchor": td.query_text[ex.query_id], "positive": td.doc(pos)}
        row.update({f"negative_{i + 1}": td.doc(n) for i, n in enumerate(negs)})
        rows.append((row, {"query_id": ex.query_id, "positive_id": pos, "negative_ids": negs}))
    return rows


def _labeled_list(ex: Example, td: TrainingData, n_negatives: int) -> Rows:
    docs = ex.positives + ex.negatives
    return [({"query": td.query_text[ex.query_id], "docs": [td.doc(d) for d in docs],
              "labels": [1] * len(ex.positives) + [0] * len(ex.negatives)},
             {"query_id": ex.query_id, "doc_ids": docs})]


def _flag(ex: Example, td: TrainingData, n_negatives: int) -> Rows:
    return [({"query": td.query_text[ex.query_id], "pos": [td.doc(d) for d in ex.positives],
              "neg": [td.doc(d) for d in ex.negatives]},
             {"query_id": ex.query_id, "pos_ids": ex.positives, "neg_ids": ex.negatives})]


def _tevatron(ex: Example, td: TrainingData, n_negatives: int) -> Rows:
    def passages(doc_ids: list[str]) -> list[dict]:
        return [{"docid": d, "title": td.doc_title.get(d, ""), "text": td.doc_text[d]} for d in doc_ids]
    return [({"query_id": ex.query_id, "query": td.query_text[ex.query_id],
              "positive_passages": passages(ex.positives), "negative_passages": passages(ex.negatives)}, None)]


def _jsonl_writer(rows_of: Callable[[Example, TrainingData, int], Rows], per_row: bool = False):
    """A writer of ``data.jsonl`` (and ``ids.jsonl`` when the rows have ids) from a per-query row function."""
    def write(store: Store, td: TrainingData, folder: Path, n_negatives: int) -> dict:
        data: list[dict] = []
        ids: list[dict] = []
        skipped = 0
        for ex in td.examples:
            rows = rows_of(ex, td, n_negatives)
            skipped += not rows
            for row, id_row in rows:
                data.append(row)
                if id_row is not None:
                    ids.append(id_row)
        _jsonl(folder / ROWS, data)
        if ids:
            _jsonl(folder / "ids.jsonl", ids)
        return {"rows": len(data), "queries": len(td.examples) - skipped, "skipped_queries": skipped,
                "negatives_per_row": n_negatives if per_row else None}
    return write


def _qrels_files(store: Store, td: TrainingData, folder: Path, suffix: str, header: list[str],
                 line: Callable[[str, str, int], str]) -> dict[str, int]:
    """``qrels/<split><suffix>`` per split of the run's dataset (raw: imported qrels only; curated: with promoted
    positives), one ``line(query_id, doc_id, grade)`` per qrel; returns the count per split."""
    qrels = store.qrels(td.run["dataset"])
    if td.data == "raw":
        qrels = qrels[qrels["origin"] == "imported"]
    (folder / "qrels").mkdir()
    counts = {}
    for split, group in qrels.groupby("split"):
        lines = header + [line(r.query_id, r.doc_id, r.score) for r in group.itertuples(index=False)]
        (folder / "qrels" / f"{split}{suffix}").write_text("\n".join(lines) + "\n", encoding="utf-8")
        counts[split] = len(group)
    return counts


def _beir(store: Store, td: TrainingData, folder: Path, n_negatives: int) -> dict:
    dataset = td.run["dataset"]
    docs = store.documents(dataset)
    _jsonl(folder / "corpus.jsonl", [{"_id": r.doc_id, "title": r.title, "text": r.text}
                                     for r in docs.itertuples(index=False)])
    queries = store.queries(dataset)
    _jsonl(folder / "queries.jsonl", [{"_id": r.query_id, "text": r.text} for r in queries.itertuples(index=False)])
    counts = _qrels_files(store, td, folder, ".tsv", ["query-id\tcorpus-id\tscore"], lambda q, d, g: f"{q}\t{d}\t{g}")
    return {"rows": sum(counts.values()), "qrels_per_split": counts, "queries": len(td.examples)}


def _trec_id(value: str, what: str) -> str:
    """An id as a TREC field: whitespace would split it into two fields, so such an id cannot be written."""
    if not value or any(c.isspace() for c in value):
        raise UserError(f"{what} {value!r} contains whitespace, which a TREC file cannot hold")
    return value


def _trec_qrels(store: Store, td: TrainingData, folder: Path, n_negatives: int) -> dict:
    counts = _qrels_files(store, td, folder, ".txt", [],
                          lambda q, d, g: f"{_trec_id(q, 'query id')} 0 {_trec_id(d, 'document id')} {g}")
    return {"rows": sum(counts.values()), "qrels_per_split": counts, "queries": len(td.examples)}


def _trec_run(store: Store, td: TrainingData, folder: Path, n_negatives: int) -> dict:
    """``run.trec``: each query's selected negatives in rank order (ranks 1..n) with the run's score and a tag (the
    tag the run was imported with, else its id), so a TREC run exported, imported and exported again is the same."""
    run = td.run
    candidates = store.candidates(run["run_id"], with_signals=False, with_risk=False)
    score = dict(zip(zip(candidates["query_id"], candidates["doc_id"]), candidates["score"].tolist()))
    tag = _trec_id(run["params"].get("import", {}).get("tag") or run["run_id"], "run tag")
    with (folder / "run.trec").open("w", encoding="utf-8") as fh:
        rows = 0
        for ex in td.examples:
            query = _trec_id(ex.query_id, "query id")
            for rank, doc in enumerate(ex.negatives, start=1):
                fh.write(f"{query} Q0 {_trec_id(doc, 'document id')} {rank} {score[ex.query_id, doc]!r} {tag}\n")
                rows += 1
    return {"rows": rows, "queries": sum(1 for ex in td.examples if ex.negatives)}


ROWS = "data.jsonl"  # what ``_jsonl_writer`` writes
EXPORT_FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("st-triplet", "sentence-transformers (anchor, positive, negative) rows", _jsonl_writer(_triplet),
                 ROWS),
    ExportFormat("st-ntuple", "sentence-transformers (anchor, positive, negative_1 … negative_n) rows",
                 _jsonl_writer(_ntuple, per_row=True), ROWS),
    ExportFormat("st-labeled-list", "sentence-transformers (query, docs, labels) rows for listwise losses",
                 _jsonl_writer(_labeled_list), ROWS),
    ExportFormat("flag", 'FlagEmbedding JSONL {"query", "pos": [], "neg": []}', _jsonl_writer(_flag), ROWS),
    ExportFormat("tevatron", "Tevatron JSONL {query_id, query, positive_passages, negative_passages}",
                 _jsonl_writer(_tevatron), ROWS),
    ExportFormat("beir-qrels", "BEIR folder with promoted positives added to the qrels", _beir),
    ExportFormat("trec-run", "TREC run file (qid Q0 docid rank score tag) of the selected negatives", _trec_run),
    ExportFormat("trec-qrels", "TREC qrels (qid 0 docid grade) per split, promoted positives added when curated",
                 _trec_qrels),
    ExportFormat("label-studio", "Label Studio tasks (one per query, a choice per candidate) and the labeling config "
                                 "to create the project; its JSON export comes back with labels import --from "
                                 "label-studio", label_studio.write_tasks),
    ExportFormat("argilla", "Argilla 2.x dataset folder for rg.Dataset.from_disk (a record per candidate, a label "
                            "question); comes back with labels import --from argilla", argilla_dataset.write_dataset),
)}
FORMATS = tuple(EXPORT_FORMATS)  # the built-in formats; EXPORT_FORMATS also holds any registered later


DATASETS_FOLDER = "datasets"


def _as_datasets(folder: Path, rows_file: str) -> None:
    """Replace ``rows_file`` by ``datasets/``, the same rows as ``Dataset.save_to_disk`` writes them, so
    ``datasets.load_from_disk(OUT / "datasets")`` opens the export (column types inferred from every row)."""
    import datasets

    datasets.disable_progress_bars()
    path = folder / rows_file
    with path.open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    datasets.Dataset.from_list(rows).save_to_disk(str(folder / DATASETS_FOLDER))
    path.unlink()


def register(fmt: ExportFormat) -> None:
    """Add an export format: the Export page offers it and ``export`` writes it (one declaration, no other file)."""
    EXPORT_FORMATS[fmt.name] = fmt


def disagreement_rule() -> str:
    """How ``labels.resolved`` settles a pair nobody adjudicated, in words for the people exporting."""
    from core.labels import CAUTION_ORDER

    order = " > ".join(label.replace("_", " ") for label in sorted(CAUTION_ORDER, key=CAUTION_ORDER.get))
    return f"the majority label wins, ties go to the cautious label: {order}; adjudicate on the Team page"


def default_data(store: Store, run_id: str) -> str:
    """What ``data=None`` (the app's *auto*) exports: curated once the dataset has a verdict or a promoted
    positive, raw before anyone reviewed."""
    from core import labels
    from core.lookups import require_run

    dataset = require_run(store, run_id)["dataset"]
    reviewed = not labels.current(store, dataset).empty or store.count("qrels", dataset=dataset, origin="promoted")
    return "curated" if reviewed else "raw"


def export_name(run_id: str, fmt: str, data: str, unsure: str, llm_verdicts: str = "ignore",
                as_datasets: bool = False) -> str:
    """A folder name that says what was selected, so exports of different selections never replace each other:
    ``<run>-<format>[-datasets]-raw`` or ``<run>-<format>[-datasets]-curated-unsure-<drop|keep>[-llm-count]`` (the
    unsure and LLM policies only change curated data), in safe characters only so it can never leave the exports
    folder."""
    curated = ["unsure", unsure] + (["llm", llm_verdicts] if llm_verdicts != "ignore" else [])
    layout = [fmt, "datasets"] if as_datasets else [fmt]
    selection = re.sub(r"[^A-Za-z0-9_-]+", "_", "-".join([*layout, data] + (curated if data == "curated" else [])))
    run = re.sub(r"[^A-Za-z0-9_-]+", "_", run_id)
    return f"{run[-(MAX_NAME_BYTES - len(selection) - 1):]}-{selection}"  # the run id ends with its unique part


def curation_warning(store: Store, run_id: str, data: str, llm_verdicts: str = "ignore") -> str | None:
    """The warning a curated export needs when annotators disagree on pairs nobody adjudicated: those pairs
    are settled by a rule, not by a person. None for raw data or when every disagreement is settled."""
    from core import agreement
    from core.lookups import require_run

    if data != "curated":
        return None
    dataset = require_run(store, run_id)["dataset"]
    count = len(agreement.disagreements(store, dataset, llm=llm_verdicts == "count"))
    if not count:
        return None
    return (f"{count} open disagreement{'s' if count != 1 else ''} between annotators in dataset {dataset!r} "
            f"decided by rule: {disagreement_rule()}")


def read_manifest(folder: str | Path) -> dict | None:
    """The manifest of an earlier export in ``folder``, or None when the folder holds no export of ours."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ours = isinstance(manifest, dict) and {"format", "run_id", "negspace_version", "files"} <= manifest.keys()
    return manifest if ours else None


def check_out(out: str | Path, workspace: Path, force: bool = False) -> Path:
    """The folder an export may be written to, or a UserError naming the path and why not; changes nothing.

    The workspace, a folder holding it and the workspace's own folders are never replaced (an export inside it
    goes to a subfolder of ``exports/``); a non-empty folder is replaced only when it holds an earlier export,
    or with ``force``.
    """
    out = user_path(out, "--out")
    workspace = workspace.resolve()
    if len(os.fsencode(out.name)) > MAX_NAME_BYTES:
        raise UserError(f"--out {display(out)}: folder name longer than {MAX_NAME_BYTES} bytes")
    if workspace.is_relative_to(out):
        raise UserError(f"--out {display(out)} is the workspace or holds it ({display(workspace)}); "
                        "exporting would replace it, give a new folder")
    exports = workspace / "exports"
    if out.is_relative_to(workspace) and (out == exports or not out.is_relative_to(exports)):
        raise UserError(f"--out {display(out)} is inside the workspace; write to a folder under {display(exports)} "
                        "or outside the workspace")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"--out {display(out)}: {display(existing)} is a file, not a folder")
    try:
        occupied = existing == out and any(out.iterdir())
    except OSError as exc:
        raise UserError(f"--out {display(out)}: cannot read the folder ({exc.strerror})") from None
    if occupied and not force and read_manifest(out) is None:
        raise UserError(f"--out {display(out)} is a folder that is not empty and holds no export ({MANIFEST}); "
                        "pass --force to replace it and everything in it")
    return out


def export_job(store: Store, run_id: str, fmt: str, out: str | Path, data: str | None = None, unsure: str = "drop",
               llm_verdicts: str = "ignore", as_datasets: bool = False) -> Job:
    """``export`` in a background thread (``Job.result`` is its manifest, with ``path``: the folder written): a run
    of millions of candidates takes minutes to select, write and hash, which a click on the page would otherwise
    stop half-way. The role is checked here, as the job's thread has no signed-in account."""
    from core import roles

    roles.require(roles.EXPORT)
    return Job(f"export:{run_id}:{Path(out).name}",
               lambda stage: {**export(store, run_id, fmt, out, data, unsure, llm_verdicts=llm_verdicts,
                                       as_datasets=as_datasets, stage=stage), "path": str(out)})


def export(store: Store, run_id: str, fmt: str, out: str | Path, data: str | None = None, unsure: str = "drop",
           force: bool = False, llm_verdicts: str = "ignore", as_datasets: bool = False,
           stage: StageProgress | None = None) -> dict:
    """Write one export folder and return its manifest. ``data`` defaults to curated when verdicts exist;
    ``out`` is checked by ``check_out`` against the store's workspace before anything is written.
    ``llm_verdicts``: ``ignore`` curates with people's verdicts only, ``count`` lets LLM judges' verdicts vote
    (core.llm_judge); the manifest records which. ``as_datasets``: the rows as a Hugging Face ``datasets`` folder
    (``OUT/datasets``) instead of JSONL, for any format with rows. Admins only, once accounts exist
    (core.roles). ``stage`` is told each step (the app's export job shows it)."""
    from core import audit, roles
    from core.cross_encoder import export_scores
    from core.selection import select

    roles.require(roles.EXPORT)
    if fmt not in EXPORT_FORMATS:
        raise UserError(f"unknown export format {fmt!r} (use {', '.join(EXPORT_FORMATS)})")
    rows_file = EXPORT_FORMATS[fmt].rows_file
    if as_datasets and rows_file is None:
        with_rows = ", ".join(name for name, f in EXPORT_FORMATS.items() if f.rows_file)
        raise UserError(f"format {fmt!r} has no rows to write as a datasets folder (use one of {with_rows})")
    out = check_out(out, store.path.parent, force)
    stage = stage or (lambda message, fraction: None)
    stage("selecting the run's training data", 0.0)
    td = select(store, run_id, data or default_data(store, run_id), unsure, llm_verdicts)
    run = td.run
    n_neg = int(run["params"]["rules"].get("num_negatives", 5))
    manifest = {
        "format": fmt, "dataset": run["dataset"], "run_id": run_id, "split": run["split"], "data": td.data,
        "unsure": unsure, "rules": run["params"]["rules"], "model_fingerprint": run["model_fingerprint"],
        "model_path": run["params"].get("model_path"), "llm_verdicts": llm_verdicts, "label_counts": td.label_counts,
        "removed_negatives": td.removed_negatives, "promoted_positives": td.promoted_positives,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "negspace_version": __version__,
        "as_datasets": as_datasets,
    }
    try:
        with atomic_dir(out) as tmp:
            stage(f"writing {fmt}", 0.3)
            manifest.update(EXPORT_FORMATS[fmt].write(store, td, tmp, n_neg))
            if as_datasets:
                stage("saving the rows as a datasets folder", 0.6)
                _as_datasets(tmp, rows_file)
            manifest["cross_encoder"] = export_scores(store, td, tmp)  # the teacher's scores and provenance, if any
            stage("hashing the files", 0.8)
            manifest["files"] = {str(p.relative_to(tmp)): _file_entry(p)
                                 for p in sorted(tmp.rglob("*")) if p.is_file()}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    except OSError as exc:  # disk full, no permission, a read-only file system
        raise UserError(f"--out {display(out)}: cannot write the export ({exc.strerror or exc})") from None
    audit.record(store, "export", run_id, format=fmt, data=td.data, out=display(out), rows=manifest.get("rows"))
    return manifest
