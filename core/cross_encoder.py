"""A cross-encoder teacher: scores a run's candidates and its queries' positives once, for rules, risk and export.

A bi-encoder embeds query and document apart; a cross-encoder reads them together and judges relevance far better,
at a cost per pair. RocketQA (Qu et al., NAACL 2021) uses one to denoise mined hard negatives: candidates it scores
as relevant are dropped (and, when very confident, treated as unlabelled positives). sentence-transformers'
``mine_hard_negatives`` applies a cross-encoder's scores with the same absolute and relative margins as dense ones.

What is stored is the model's *probability*: ``CrossEncoder.predict`` with its default activation, the sigmoid of
the logit for a one-label model (the only kind accepted), so thresholds such as RocketQA's 0.1 and 0.9 read on it.
Scores are computed in fp32 on any device (the same pair gets the same stored score wherever it was scored) and
cached by (model fingerprint, sha256 of the query text, sha256 of the document text as matched, title and text):
``score_run`` scores only pairs no run has had scored by that model, so a second call scores nothing. The run's
candidate rows record which cross-encoder scored them (``Store.run_teacher``); every later reader (the ``ce``
rules, previews, the ``ce_score`` risk signal, exports) reads ``run_ce_scores`` / ``rule_columns``, never the model.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core import audit, labels, roles, run_stats
from core.devices import resolve_device
from core.encoders import model_fingerprint
from core.errors import UserError
from core.jobs import Job, shared_job
from core.lookups import document_texts, positives_by_query, require_run
from core.validation import display, user_path

if TYPE_CHECKING:
    from core.jobs import StageProgress
    from core.selection import TrainingData
    from core.store import Store
    from core.workspace import Workspace

SCORE_CHUNK = 1024  # pairs scored and written per step: a killed scoring keeps what it wrote, and progress moves
SUGGEST_ABOVE = 0.9  # RocketQA: an unlabelled candidate the teacher scores above this is a pseudo-positive
_models: dict[tuple[str, str, str], object] = {}
_models_lock = threading.Lock()


@dataclass
class ScoreResult:
    """What ``score_run`` did: distinct (query, document) pairs of the run, how many the model scored now and how
    many came from the cache, seconds, the model's fingerprint, the device and the pseudo-positive suggestions."""

    run_id: str
    pairs: int
    scored: int
    cached: int
    seconds: float
    model: str
    device: str
    suggested: int = 0

    def to_dict(self) -> dict:
        return {"run": self.run_id, **{k: v for k, v in asdict(self).items() if k != "run_id"}}


def check_cross_encoder(model_dir: str | Path) -> Path:
    """The folder of a local one-label sentence-transformers ``CrossEncoder``, or a UserError naming the folder
    and what is wrong, read from its config.json alone (nothing is loaded)."""
    path = user_path(model_dir, "--cross-encoder", must_exist=True, kind="dir")
    config_path = path / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--cross-encoder {display(path)}: no config.json, not a model folder") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"--cross-encoder {display(config_path)}: unreadable ({exc})") from None
    architectures = (config.get("architectures") or []) if isinstance(config, dict) else []
    if not any(str(a).endswith("ForSequenceClassification") for a in architectures):
        raise UserError(f"--cross-encoder {display(path)}: not a cross-encoder (config.json architectures "
                        f"{architectures or 'missing'}; a cross-encoder is a …ForSequenceClassification model, "
                        "e.g. one saved by sentence-transformers' CrossEncoder)")
    labels_ = len(config.get("id2label") or {}) or int(config.get("num_labels", 1))
    if labels_ != 1:
        raise UserError(f"--cross-encoder {display(path)}: config.json declares {labels_} labels; a relevance "
                        "teacher has one (its sigmoid is the probability stored)")
    return path


def _load(path: Path, device: str, fingerprint: str):
    """The cross-encoder at ``path`` on a resolved ``device``, in eval mode, loaded once per process and weights
    (``fingerprint``: new weights in the same folder are loaded again)."""
    key = (str(path), device, fingerprint)
    with _models_lock:
        if key not in _models:
            import torch
            from safetensors import SafetensorError
            from sentence_transformers import CrossEncoder

            try:
                model = CrossEncoder(str(path), device=device, local_files_only=True)
            except (OSError, ValueError, SafetensorError) as exc:
                raise UserError(f"--cross-encoder {display(path)}: cannot be loaded as a cross-encoder "
                                f"({' '.join(str(exc).splitlines())})") from None
            except torch.OutOfMemoryError:
                raise UserError(f"--device {device}: out of memory loading cross-encoder {display(path)} "
                                "(free the device or use --device cpu)") from None
            model.model.eval()
            _models[key] = model
        return _models[key]


def sha(text: str) -> bytes:
    """The cache key of one text: sha256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).digest()


@dataclass(frozen=True)
class RunPairs:
    """The (query, document) pairs a run's teacher scores, as integer codes: first the run's candidate rows in
    ``Store.run_columns`` order (query, rank, document), then every labelled positive of the run's queries.

    ``queries`` / ``docs`` are the distinct ids behind ``query`` / ``doc``, with their texts; ``query_hash`` /
    ``doc_hash`` give each id's code among the distinct text hashes ``query_sha`` / ``doc_sha`` (two ids with the
    same text share one cached score).
    """

    query: np.ndarray
    doc: np.ndarray
    candidates: int
    queries: list[str]
    docs: list[str]
    query_text: list[str]
    doc_text: list[str]
    query_hash: np.ndarray
    doc_hash: np.ndarray
    query_sha: list[bytes]
    doc_sha: list[bytes]

    @property
    def positive(self) -> np.ndarray:
        return np.arange(len(self.query)) >= self.candidates

    def id_keys(self) -> np.ndarray:
        """One int64 per pair, equal for equal (query id, document id)."""
        return self.query * max(len(self.docs), 1) + self.doc

    def text_keys(self) -> np.ndarray:
        """One int64 per pair, equal for equal (query text, document text): the cache's key as codes."""
        return self.query_hash[self.query] * max(len(self.doc_sha), 1) + self.doc_hash[self.doc]


def _hashes(texts: list[str]) -> tuple[np.ndarray, list[bytes]]:
    """Each text's code among its distinct sha256 digests, and those digests."""
    codes, unique = pd.factorize(pd.Series([sha(t) for t in texts], dtype=object))
    return codes.astype(np.int64), list(unique)


def run_pairs(store: Store, run_id: str) -> RunPairs:
    """The run's candidates and its queries' positives (imported or promoted, grade > 0) with their texts: the
    query text as mined, the document as ``document_text`` (title and text) matched it."""
    run = require_run(store, run_id)
    table = store.run_columns(run_id, ["query_id", "doc_id"])
    query, query_values = run_stats.codes(table, "query_id")
    doc, doc_values = run_stats.codes(table, "doc_id")
    queries, docs = query_values.to_pylist(), doc_values.to_pylist()
    positives = positives_by_query(store, run["dataset"], run["split"])
    pos_q = [code for code, q in enumerate(queries) for _ in positives.get(q, [])]
    pos_docs = [d for q in queries for d in positives.get(q, [])]
    known = set(docs)
    docs += [d for d in dict.fromkeys(pos_docs) if d not in known]
    query_text = store.queries(run["dataset"], queries).set_index("query_id")["text"].reindex(queries).fillna("")
    doc_text = document_texts(store.documents(run["dataset"], docs).set_index("doc_id").reindex(docs).fillna(""))
    query_hash, query_sha = _hashes(query_text.tolist())
    doc_hash, doc_sha = _hashes(doc_text)
    return RunPairs(np.concatenate([query.astype(np.int64), np.asarray(pos_q, dtype=np.int64)]),
                    np.concatenate([doc.astype(np.int64), pd.Index(docs).get_indexer(pos_docs).astype(np.int64)]),
                    len(query), queries, docs, query_text.tolist(), doc_text, query_hash, doc_hash, query_sha,
                    doc_sha)


def _cached(store: Store, model: str, pairs: RunPairs) -> np.ndarray:
    """The cached score of each pair under ``model`` (NaN where none is stored)."""
    known = store.ce_known(model, pairs.query_sha)
    q = pd.Index(pairs.query_sha).get_indexer(known["query_sha"].map(bytes))
    d = pd.Index(pairs.doc_sha).get_indexer(known["doc_sha"].map(bytes))
    ok = (q >= 0) & (d >= 0)
    position = pd.Index(q[ok] * max(len(pairs.doc_sha), 1) + d[ok]).get_indexer(pairs.text_keys())
    out = np.full(len(pairs.query), np.nan)
    out[position >= 0] = known["score"].to_numpy(dtype=float)[ok][position[position >= 0]]
    return out


def _suggest(store: Store, run: dict, pairs: RunPairs, ce: np.ndarray, model: str, above: float) -> int:
    """Open a false-negative *suggestion* (never a verdict) for each unjudged candidate the teacher scores above
    ``above``: RocketQA's pseudo-positives, confirmed or rejected by a reviewer on Review. A pair this model
    suggested before is not suggested again, whatever the reviewer decided."""
    rows = np.flatnonzero(~pairs.positive & (ce > above))
    if not len(rows):
        return 0
    dataset = run["dataset"]
    judged = labels.current(store, dataset)
    judged = set(zip(judged["query_id"], judged["doc_id"]))
    by = f"cross-encoder {model} "
    earlier = store.suggestions(dataset)
    earlier = earlier[earlier["reason"].str.startswith(by)]
    judged |= set(zip(earlier["query_id"], earlier["doc_id"]))
    positives = positives_by_query(store, dataset, run["split"])
    suggestions = []
    for row in rows:
        q, d = pairs.queries[pairs.query[row]], pairs.docs[pairs.doc[row]]
        if (q, d) in judged or d in positives.get(q, ()):
            continue
        suggestions.append({"dataset": dataset, "query_id": q, "doc_id": d, "label": "false_negative",
                            "similarity": float(ce[row]), "source_event": None,
                            "reason": f"{by}scores it {ce[row]:.3f} > {above:g}: a likely unlabelled positive "
                                      "(RocketQA pseudo-positive)"})
    return store.add_suggestions(suggestions)


def score_run(store: Store, workspace: Workspace, run_id: str, model_dir: str | Path, device: str = "auto",
              batch_size: int = 32, progress: StageProgress | None = None,
              suggest_above: float = SUGGEST_ABOVE) -> ScoreResult:
    """Score a run's candidates and its queries' positives with the cross-encoder in ``model_dir`` on ``device``,
    ``batch_size`` pairs per forward pass, scoring only pairs the cache lacks; record the model as the run's
    teacher and suggest the unjudged candidates it scores above ``suggest_above`` as false negatives.

    ``workspace`` is the workspace of ``store`` (kept for symmetry with the other scoring entry points). Admins
    only, once accounts exist (core.roles).
    """
    roles.require(roles.RUNS)
    started = time.perf_counter()
    stage = progress or (lambda message, fraction: None)
    run = require_run(store, run_id)
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1 (got {batch_size})")
    if not 0 < suggest_above <= 1:
        raise UserError(f"suggest above must be in (0, 1] (got {suggest_above:g})")
    path = check_cross_encoder(model_dir)
    device = resolve_device(device)
    fingerprint = model_fingerprint(path)
    stage("reading the run's pairs", 0.0)
    pairs = run_pairs(store, run_id)
    ce = _cached(store, fingerprint, pairs)
    _, first = np.unique(pairs.id_keys(), return_index=True)  # one row per distinct (query, document)
    cached = int((~np.isnan(ce[first])).sum())
    _, once = np.unique(pairs.text_keys(), return_index=True)  # one score per distinct pair of texts
    todo = sorted(once[np.isnan(ce[once])], key=lambda i: len(pairs.doc_text[pairs.doc[i]]))  # less padding
    if todo:
        stage("loading the cross-encoder", 0.02)
        model = _load(path, device, fingerprint)
        import torch

        for start in range(0, len(todo), SCORE_CHUNK):
            chunk = todo[start:start + SCORE_CHUNK]
            texts = [(pairs.query_text[pairs.query[i]], pairs.doc_text[pairs.doc[i]]) for i in chunk]
            try:
                with torch.inference_mode():
                    scores = np.asarray(model.predict(texts, batch_size=batch_size, show_progress_bar=False,
                                                      convert_to_numpy=True), dtype=float).reshape(-1)
            except torch.OutOfMemoryError:
                raise UserError(f"--device {device}: out of memory scoring with {display(path)} "
                                "(lower --batch-size or use --device cpu)") from None
            store.add_ce_scores(fingerprint, [(pairs.query_sha[pairs.query_hash[pairs.query[i]]],
                                               pairs.doc_sha[pairs.doc_hash[pairs.doc[i]]], s)
                                              for i, s in zip(chunk, scores)])
            done = start + len(chunk)
            stage(f"scored {done:,} of {len(todo):,} pairs", 0.05 + 0.9 * done / len(todo))
        ce = _cached(store, fingerprint, pairs)
    previous = store.run_teacher(run_id)
    store.set_run_teacher(store.rows_of(run_id), fingerprint, str(path), len(first),
                          changed=bool(todo) or previous is None or previous["model"] != fingerprint)
    stage("suggesting pseudo-positives", 0.97)
    suggested = _suggest(store, run, pairs, ce, fingerprint, suggest_above)
    audit.record(store, "score", run_id, cross_encoder=fingerprint, model_path=str(path), scored=len(todo),
                 suggested=suggested)
    stage("done", 1.0)
    return ScoreResult(run_id, len(first), len(todo), cached,
                       round(time.perf_counter() - started, 3), fingerprint, device, suggested)


def score_job(workspace_root: str | Path, run_id: str, model_dir: str | Path, device: str = "auto",
              batch_size: int = 32) -> Job:
    """``score_run`` in a background thread, one per (workspace, run rows, folder) in the process: scoring a large
    run takes minutes on a CPU, so a page polls the job instead of waiting, and a second session asking for the same
    scoring polls the first one's. The run and the folder are checked here, before the job starts, so a mistake is
    reported at once; the job opens its own store connection because it outlives the page run that started it.
    ``Job.result`` is the ``ScoreResult``. The role is checked here too: the job's thread has no signed-in
    account."""
    from core.workspace import open_workspace

    roles.require(roles.RUNS)
    root = str(Path(workspace_root).resolve())
    path = check_cross_encoder(model_dir)
    store = open_workspace(root).store()
    try:
        rows_of = store.rows_of(require_run(store, run_id)["run_id"])
    finally:
        store.close()

    def work(stage: StageProgress) -> ScoreResult:
        workspace = open_workspace(root)
        own = workspace.store()
        try:
            return score_run(own, workspace, run_id, path, device, batch_size, progress=stage)
        finally:
            own.close()
    return shared_job(f"ce-score:{root}:{rows_of}:{path}", work)


_SCORES: OrderedDict[tuple, tuple[RunPairs, np.ndarray]] = OrderedDict()
_SCORES_KEPT = 8
_SCORES_LOCK = threading.Lock()


def _run_scores(store: Store, run_id: str) -> tuple[RunPairs, np.ndarray] | None:
    """The run's pairs and their stored teacher scores (None when no cross-encoder scored the run), kept per
    process until the run is scored again: rules, previews and risk read them repeatedly."""
    teacher = store.run_teacher(run_id)
    if teacher is None:
        return None
    key = (str(store.path), store.rows_of(run_id), teacher["model"], teacher["scored_at"],
           store.count("qrels", dataset=require_run(store, run_id)["dataset"]))
    with _SCORES_LOCK:
        if key in _SCORES:
            _SCORES.move_to_end(key)
            return _SCORES[key]
    pairs = run_pairs(store, run_id)
    found = (replace(pairs, query_text=[], doc_text=[]), _cached(store, teacher["model"], pairs))  # ids, not texts
    with _SCORES_LOCK:
        _SCORES[key] = found
        while len(_SCORES) > _SCORES_KEPT:
            _SCORES.popitem(last=False)
    return found


def run_ce_scores(store: Store, run_id: str) -> pd.DataFrame:
    """The stored teacher probabilities of a run: one row per candidate (in run order) and per labelled positive
    of its queries, columns query_id, doc_id, ce (NaN for a pair the teacher has not scored, e.g. a positive
    promoted since) and positive (bool). Empty when no cross-encoder scored the run."""
    found = _run_scores(store, run_id)
    if found is None:
        return pd.DataFrame({"query_id": pd.Series(dtype=object), "doc_id": pd.Series(dtype=object),
                             "ce": pd.Series(dtype=float), "positive": pd.Series(dtype=bool)})
    pairs, ce = found
    return pd.DataFrame({"query_id": np.asarray(pairs.queries, dtype=object)[pairs.query],
                         "doc_id": np.asarray(pairs.docs, dtype=object)[pairs.doc], "ce": ce,
                         "positive": pairs.positive})


def pair_scores(store: Store, run_id: str, query_ids: Sequence[str], doc_ids: Sequence[str]) -> np.ndarray | None:
    """The run's stored teacher probability of each given (query, document) pair, NaN where it has none; None when
    no cross-encoder scored the run. Matched on integer codes, for the few rows a diff or a flip table shows."""
    found = _run_scores(store, run_id)
    if found is None:
        return None
    pairs, ce = found
    q = pd.Index(pairs.queries).get_indexer(list(query_ids))
    d = pd.Index(pairs.docs).get_indexer(list(doc_ids))
    keys, first = np.unique(pairs.id_keys(), return_index=True)  # a promoted candidate is also a positive
    position = pd.Index(keys).get_indexer(np.where((q >= 0) & (d >= 0), q * max(len(pairs.docs), 1) + d, -1))
    out = np.full(len(position), np.nan)
    out[position >= 0] = ce[first[position[position >= 0]]]
    return out


def rule_columns(store: Store, run_id: str) -> dict[str, np.ndarray]:
    """The columns the ``ce`` rules read, aligned with ``Store.run_columns`` rows: ``ce`` (the candidate's
    probability) and ``ce_pos`` (its query's weakest scored positive, NaN when none is scored). A run no
    cross-encoder scored is a UserError telling the user to score it first."""
    found = _run_scores(store, run_id)
    if found is None:
        raise UserError(f"run {run_id} has no cross-encoder scores: run `python -m core score --run {run_id} "
                        "--cross-encoder DIR` (or *Score with a cross-encoder* on the Mine page) first")
    pairs, ce = found
    n = pairs.candidates
    weakest = np.full(len(pairs.queries), np.inf)
    positive = pairs.positive & ~np.isnan(ce)
    np.minimum.at(weakest, pairs.query[positive], ce[positive])
    weakest[np.isinf(weakest)] = np.nan
    return {"ce": ce[:n], "ce_pos": weakest[pairs.query[:n]]}


EXPORT_SCORES = "ce_scores.jsonl"  # beside an export's data: the teacher's probability of every exported pair


def export_scores(store: Store, td: TrainingData, folder: Path) -> dict | None:
    """Write the teacher's probability of every (query, document) an export holds to ``EXPORT_SCORES`` (one JSON
    line each: query_id, doc_id, role positive|negative, ce; null for a pair it did not score, such as a positive
    promoted after scoring) and return the manifest's provenance: the model's fingerprint and folder, when it
    scored, the ce rules' thresholds the run applied (null when off) and the model whose scores that rule read.
    None, and no file, when no cross-encoder scored the run. A sidecar, not a column: the formats' own rows are fed
    to trainers whole (sentence-transformers feeds every column to the model), like ``ids.jsonl``."""
    run = td.run
    teacher = store.run_teacher(run["run_id"])
    if teacher is None:
        return None
    frame = run_ce_scores(store, run["run_id"]).drop_duplicates(["query_id", "doc_id"])
    ce = dict(zip(zip(frame["query_id"], frame["doc_id"]), frame["ce"]))
    with (folder / EXPORT_SCORES).open("w", encoding="utf-8") as fh:
        for ex in td.examples:
            for role, doc_ids in (("positive", ex.positives), ("negative", ex.negatives)):
                for doc_id in doc_ids:
                    score = ce.get((ex.query_id, doc_id), np.nan)
                    fh.write(json.dumps({"query_id": ex.query_id, "doc_id": doc_id, "role": role,
                                         "ce": None if np.isnan(score) else round(float(score), 6)},
                                        ensure_ascii=False) + "\n")
    rules = run["params"]["rules"]
    return {"model_fingerprint": teacher["model"], "model_path": teacher["model_path"],
            "scored_at": teacher["scored_at"], "pairs_scored": teacher["pairs"], "scores_file": EXPORT_SCORES,
            "probability": "sigmoid of the cross-encoder's logit (CrossEncoder.predict)",
            "ce_threshold": rules.get("ce_threshold"), "ce_margin": rules.get("ce_margin"),
            "rule_read_model": run["stats"].get("cross_encoder")}  # whose scores the run's ce rule applied
