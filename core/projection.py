"""2-D maps of a run's queries, positives and candidates, computed once and cached in the workspace.

A map is a pure function of the mined pool (which queries, which documents, which model), so it is stored once
per *mining* run and shared by every run derived from it by a rule change. Vectors come from the embedding cache
the run was mined with, so projecting never re-encodes. A run of 10M candidates has ~300k points, so a map is
fitted on a seeded sample of at most ``FIT_POINTS`` and the other points are placed on it (PCA: projected on the
sample's axes; UMAP: ``reducer.transform``) ``CHUNK`` at a time in a background job, one per run and method in
the process, whose progress pages show while it runs. PCA comes first; UMAP keeps neighbourhoods better
(near-duplicates sit together) but costs a ~35 s numba compile per process (``warm_umap``) and much longer fits.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core import run_stats
from core.jobs import Job, StageProgress, shared_job
from core.labels import CAUTION_ORDER
from core.lookups import document_texts, positive_qrels, positives_by_query, require_run
from core.vectors import run_encoder

if TYPE_CHECKING:
    import pyarrow as pa

    from core.encoders import Encoder
    from core.store import Store
    from core.workspace import Workspace

METHODS = ("pca", "umap")
FIT_POINTS = 30_000  # a map is fitted on at most this many points; the others are placed on the fitted map
CHUNK = 20_000  # points read from the store and the embedding cache, and placed, at a time
SHOWN_POINTS = 10_000  # about how many points the whole-dataset view draws (plus every judged one)
_umap_lock = threading.Lock()
_partial: dict[str, tuple[pd.DataFrame | None, int]] = {}  # per map file: what its running job placed so far
_failed: dict[str, BaseException] = {}  # per map file: why its job failed in this process (not retried)
_state_lock = threading.Lock()
_doc_risks: dict[tuple, dict[int, float]] = {}  # per (store, run rows, risk written at): document code -> max risk
DOC_RISKS_KEPT = 4  # runs whose document risks stay cached (at most one float per document of the run)


def root_run(store: Store, run_id: str) -> str:
    """The mining run whose candidate pool ``run_id`` shares (derived runs only re-apply rules)."""
    run = require_run(store, run_id)
    while run.get("parent_run"):
        parent = store.run(run["parent_run"])
        if parent is None:
            break
        run = parent
    return run["run_id"]


def projection_path(workspace: Workspace, root: str, method: str) -> Path:
    """Hashed file name: run ids embed user-chosen dataset names, which must never become path parts."""
    digest = hashlib.sha256(root.encode()).hexdigest()[:20]
    return Path(workspace.projections_dir) / f"{digest}-{method}.parquet"


@dataclass(frozen=True)
class RunPairs:
    """A run's candidate rows as integer codes over its distinct query and document ids, plus per-document facts.

    Built from the run's snapshot: 10M candidates are two int32 arrays, never 10M Python strings.
    """

    query_ids: np.ndarray  # distinct query ids (object), indexed by ``query``
    doc_ids: np.ndarray  # distinct document ids (object), indexed by ``doc``
    query: np.ndarray  # per candidate row, in (query, rank) order
    doc: np.ndarray
    doc_kept: np.ndarray  # per document: whether any query of the run keeps it
    doc_score: np.ndarray  # per document: its highest score

    def rows_of_docs(self, codes: np.ndarray) -> np.ndarray:
        """The candidate rows whose document is one of ``codes``."""
        wanted = np.zeros(len(self.doc_ids), dtype=bool)
        wanted[codes] = True
        return np.flatnonzero(wanted[self.doc])


def _used_codes(table: pa.Table, column: str) -> tuple[np.ndarray, np.ndarray]:
    """``run_stats.codes`` with the distinct values no row uses dropped (a snapshot's dictionary may hold more)."""
    codes, dictionary = run_stats.codes(table, column)
    codes = codes.astype(np.int32)
    values = np.asarray(dictionary.to_pylist(), dtype=object)
    used = np.bincount(codes, minlength=len(values)) > 0
    if not used.all():
        codes = (np.cumsum(used) - 1).astype(np.int32)[codes]
        values = values[used]
    return codes, values


def run_pairs(store: Store, run_id: str) -> RunPairs:
    """The run's (query, document) pairs as codes, with each document's kept flag and best score."""
    table = store.run_columns(run_id, ["query_id", "doc_id", "score", "kept"])
    query, query_ids = _used_codes(table, "query_id")
    doc, doc_ids = _used_codes(table, "doc_id")
    kept = table["kept"].to_numpy(zero_copy_only=False).astype(bool)
    doc_kept = np.zeros(len(doc_ids), dtype=bool)
    doc_kept[doc[kept]] = True
    doc_score = np.full(len(doc_ids), -np.inf)
    np.maximum.at(doc_score, doc, table["score"].to_numpy(zero_copy_only=False))
    return RunPairs(query_ids, doc_ids, query, doc, doc_kept, doc_score)


def point_ids(store: Store, run_id: str) -> pd.DataFrame:
    """Every point of a run's map (columns kind, id), queries first: its queries, their positives, its candidates."""
    run = require_run(store, run_id)
    pairs = run_pairs(store, run_id)
    positives = positives_by_query(store, run["dataset"], run["split"])
    pos_ids = list(dict.fromkeys(d for q in pairs.query_ids for d in positives.get(q, ())))
    known = set(pos_ids)
    doc_ids = pos_ids + [d for d in pairs.doc_ids if d not in known]
    return pd.DataFrame({"kind": ["query"] * len(pairs.query_ids) + ["document"] * len(doc_ids),
                         "id": [*pairs.query_ids, *doc_ids]})


def _vectors(store: Store, dataset: str, encoder: Encoder, points: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The ``points`` the store holds (kind, id; queries first) with their cached unit vectors, row for row."""
    queries = store.queries(dataset, points.loc[points["kind"] == "query", "id"].tolist())
    docs = store.documents(dataset, points.loc[points["kind"] == "document", "id"].tolist())
    vectors = np.vstack([encoder.encode_queries(queries["text"].tolist()).reshape(-1, encoder.dim),
                         encoder.encode_documents(document_texts(docs)).reshape(-1, encoder.dim)])
    frame = pd.DataFrame({"kind": ["query"] * len(queries) + ["document"] * len(docs),
                          "id": list(queries["query_id"]) + list(docs["doc_id"])})
    return frame, vectors


def fit_projection(method: str, vectors: np.ndarray, seed: int = 0
                   ) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """2-D coordinates of ``vectors`` and a function placing other vectors on the same map.

    PCA: the two leading principal components (exact SVD). UMAP: cosine distance, seeded so the same run always
    gets the same picture; one fit or transform at a time in the process (numba on a small machine).
    """
    if method == "pca":
        # the two leading eigenvectors of the d x d scatter matrix: the same axes as an SVD of the n x d sample
        # (up to sign, fixed here), 1 s instead of 20 s for 30,000 x 384 on a 2-core machine
        mean = vectors.mean(axis=0, keepdims=True, dtype=np.float64)
        centred = vectors - mean
        _, eigenvectors = np.linalg.eigh(centred.T @ centred)  # ascending eigenvalues
        axes = eigenvectors[:, ::-1][:, :2]
        axes = axes * np.sign(axes[np.abs(axes).argmax(axis=0), [0, 1]])  # largest loading positive

        def project(other: np.ndarray) -> np.ndarray:
            return (other - mean) @ axes
        return project(vectors), project
    if method != "umap":
        raise ValueError(f"unknown projection method {method!r}")
    import umap

    with _umap_lock:
        reducer = umap.UMAP(n_components=2, n_neighbors=max(2, min(15, len(vectors) - 1)), min_dist=0.1,
                            metric="cosine", random_state=seed, init="random" if len(vectors) < 10 else "spectral")
        coords = reducer.fit_transform(vectors)

    def transform(other: np.ndarray) -> np.ndarray:
        with _umap_lock:
            return reducer.transform(other)
    return coords, transform


def warm_umap() -> float:
    """Fit a tiny UMAP so numba compiles its kernels now, not when a user first opens the map; returns seconds."""
    started = time.perf_counter()
    fit_projection("umap", np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32))
    return time.perf_counter() - started


def _publish(key: str, frame: pd.DataFrame | None, total: int | None) -> None:
    with _state_lock:
        if total is None:
            _partial.pop(key, None)
        else:
            _partial[key] = (frame, total)


def compute_projection(store: Store, workspace: Workspace, run_id: str, method: str = "pca",
                       stage: StageProgress | None = None, seed: int = 0) -> pd.DataFrame:
    """Fit ``method`` on a seeded sample of at most ``FIT_POINTS`` points, place the others ``CHUNK`` at a time
    (what is placed so far is published for pages), then store the whole map atomically and return it.

    Columns: kind (query | document), id, x, y, fitted (whether the point was in the sample the map was fitted on;
    those keep exactly the coordinates a fit on the sample alone gives them).
    """
    if method not in METHODS:
        raise ValueError(f"unknown projection method {method!r}")
    stage = stage or (lambda message, fraction: None)
    root = root_run(store, run_id)
    run = require_run(store, root)
    path = projection_path(workspace, root, method)
    key, name = str(path), method.upper()
    stage("listing the run's points", 0.0)
    points = point_ids(store, root)
    total = len(points)
    order = np.random.default_rng(seed).permutation(total)
    fit_n = min(total, FIT_POINTS)
    _publish(key, None, total)
    try:
        encoder = run_encoder(workspace, run)
        stage(f"fitting {name} on {fit_n:,} of {total:,} points", 0.0)
        frame, vectors = _vectors(store, run["dataset"], encoder, points.iloc[np.sort(order[:fit_n])])
        coords, place = fit_projection(method, vectors, seed)
        parts = [frame.assign(x=coords[:, 0].astype(float), y=coords[:, 1].astype(float), fitted=True)]
        for start in range(fit_n, total, CHUNK):
            placed = sum(map(len, parts))
            _publish(key, pd.concat(parts, ignore_index=True), total)
            stage(f"{name}: {placed:,} of {total:,} points projected", placed / total)
            frame, vectors = _vectors(store, run["dataset"], encoder, points.iloc[np.sort(order[start:start + CHUNK])])
            coords = place(vectors)
            parts.append(frame.assign(x=coords[:, 0].astype(float), y=coords[:, 1].astype(float), fitted=False))
        result = pd.concat(parts, ignore_index=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            result.to_parquet(tmp, index=False)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    finally:
        _publish(key, None, None)
    return result


@functools.lru_cache(maxsize=4)
def _read(path: str, stamp: tuple[int, int]) -> pd.DataFrame:
    """A stored map, read once per file version: callers must not modify it."""
    return pd.read_parquet(path)


def _stored(workspace: Workspace, root: str, method: str) -> pd.DataFrame | None:
    path = projection_path(workspace, root, method)
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return _read(str(path), (info.st_mtime_ns, info.st_size))


def load_projection(store: Store, workspace: Workspace, run_id: str, method: str) -> pd.DataFrame | None:
    """The stored map of a run (complete), or None."""
    return _stored(workspace, root_run(store, run_id), method)


def ensure_projection(store: Store, workspace: Workspace, run_id: str, method: str = "pca") -> pd.DataFrame:
    """The stored map of a run, computed here and stored the first time it is asked for (CLI, demo build)."""
    existing = load_projection(store, workspace, run_id, method)
    return existing if existing is not None else compute_projection(store, workspace, run_id, method)


def projection_job(workspace: Workspace, root: str, method: str) -> Job | None:
    """The background job computing ``method``'s map of mining run ``root``: one per run and method in the
    process (another session polls the same job), with its own store connection. None once it failed here."""
    key = str(projection_path(workspace, root, method))
    if key in _failed:
        return None

    def work(stage: StageProgress) -> pd.DataFrame:
        store = workspace.store()
        try:
            return compute_projection(store, workspace, root, method, stage)
        except BaseException as exc:
            _failed[key] = exc
            raise
        finally:
            store.close()
    return shared_job(f"projection:{key}", work)


@dataclass(frozen=True)
class MapState:
    """What the map can show now."""

    frame: pd.DataFrame | None  # the points placed so far: kind, id, x, y (None: not one yet)
    method: str
    total: int | None  # points the whole map has (None: not listed yet)
    jobs: dict[str, Job]  # method -> its background job, still running or just finished
    errors: dict[str, str]  # method -> why its job failed in this process

    @property
    def complete(self) -> bool:
        return self.frame is not None and len(self.frame) == self.total


def map_state(store: Store, workspace: Workspace, run_id: str, umap: bool = True) -> MapState:
    """UMAP once stored, else PCA, stored or as far as its job got; starts the jobs for what is missing (PCA
    first, then UMAP) and never waits on them. A run of at most ``FIT_POINTS`` candidates gets its PCA at once
    here (milliseconds), so its page shows a map on first render."""
    root = root_run(store, run_id)
    done = {m: frame for m in METHODS if (frame := _stored(workspace, root, m)) is not None}
    if "umap" in done:
        return MapState(done["umap"], "umap", len(done["umap"]), {}, {})
    if "pca" not in done and require_run(store, root)["stats"].get("candidates", 0) <= FIT_POINTS:
        done["pca"] = compute_projection(store, workspace, root, "pca")
    wanted = ["pca"] if "pca" not in done else ["umap"] if umap else []
    jobs = {m: job for m in wanted if (job := projection_job(workspace, root, m)) is not None}
    errors = {m: str(exc) for m in METHODS if (exc := _failed.get(str(projection_path(workspace, root, m))))}
    if "pca" in done:
        return MapState(done["pca"], "pca", len(done["pca"]), jobs, errors)
    with _state_lock:
        frame, total = _partial.get(str(projection_path(workspace, root, "pca")), (None, None))
    return MapState(frame, "pca", total, jobs, errors)


COLOUR_BY = ("verdict", "rule", "score", "risk")


def _colour_values(frame: pd.DataFrame, colour: str) -> pd.Series:
    if colour == "verdict":
        return frame["label"].fillna("unjudged")
    if colour == "rule":
        return frame["kept"].map({True: "kept", False: "dropped"})
    return frame[colour].astype(float)


def _texts(store: Store, dataset: str, query_ids: list[str], doc_ids: list[str]) -> dict[tuple[str, str], str]:
    """What hovering over each point shows, by (kind, id)."""
    queries = store.queries(dataset, query_ids)
    docs = store.documents(dataset, doc_ids)
    return {**{("query", q): t for q, t in zip(queries["query_id"], queries["text"])},
            **{("document", d): t for d, t in zip(docs["doc_id"], document_texts(docs))}}


def query_projection(store: Store, workspace: Workspace, run_id: str, query_id: str) -> pd.DataFrame:
    """A PCA of one query, its positives and its candidates alone (kind, id, x, y): what the query-anchored view
    draws while the run's own map is still being placed (at 10M candidates the first points take ~10 s), so the
    Map page never opens empty. About a hundred cached vectors: milliseconds."""
    run = require_run(store, run_id)
    docs = store.candidates(run_id, query_id, with_signals=False, with_risk=False)["doc_id"].tolist()
    docs = list(dict.fromkeys([*store.positives(run["dataset"], run["split"], query_id), *docs]))
    points = pd.DataFrame({"kind": ["query"] + ["document"] * len(docs), "id": [query_id, *docs]})
    frame, vectors = _vectors(store, run["dataset"], run_encoder(workspace, run), points)
    coords, _ = fit_projection("pca", vectors)
    return frame.assign(x=coords[:, 0].astype(float), y=coords[:, 1].astype(float))


def anchored_points(store: Store, run_id: str, projection: pd.DataFrame, query_id: str, judged: pd.DataFrame,
                    colour: str) -> pd.DataFrame:
    """One query, its positives and its candidates (read by the index) on the map, coloured by ``colour``.

    ``judged`` holds query_id, doc_id, label. Columns: x, y, kind (query / positive / document), id, hover, and the
    colour column named after ``colour``. Points the map has not placed yet are left out.
    """
    run = require_run(store, run_id)
    own = store.candidates(run_id, query_id, with_signals=False, with_risk=colour == "risk").merge(
        judged.loc[judged["query_id"] == query_id, ["doc_id", "label"]], on="doc_id", how="left")
    positives = store.positives(run["dataset"], run["split"], query_id)
    docs = projection[(projection["kind"] == "document")
                      & projection["id"].isin([*own["doc_id"], *positives])].set_index("id")
    own = own[own["doc_id"].isin(docs.index)]
    texts = _texts(store, run["dataset"], [query_id], docs.index.tolist())
    cand = pd.DataFrame({"x": docs.loc[own["doc_id"], "x"].to_numpy(), "y": docs.loc[own["doc_id"], "y"].to_numpy(),
                         "kind": "document", "id": own["doc_id"].to_numpy(),
                         "hover": [f"rank {r} · s={s:.3f} · {texts.get(('document', d), '')}"
                                   for r, s, d in zip(own["rank"], own["score"], own["doc_id"])],
                         colour: _colour_values(own, colour).to_numpy()})
    query = projection[(projection["kind"] == "query") & (projection["id"] == query_id)]
    pos = docs.loc[[d for d in positives if d in docs.index]].reset_index()
    fixed = "positive" if colour in ("verdict", "rule") else np.nan
    anchors = pd.concat([
        pd.DataFrame({"x": query["x"], "y": query["y"], "kind": "query", "id": query["id"],
                      "hover": texts.get(("query", query_id), ""),
                      colour: "query" if colour in ("verdict", "rule") else np.nan}),
        pd.DataFrame({"x": pos["x"], "y": pos["y"], "kind": "positive", "id": pos["id"],
                      "hover": [texts.get(("document", d), "") for d in pos["id"]], colour: fixed}),
    ], ignore_index=True)
    return pd.concat([anchors, cand], ignore_index=True)


def _doc_labels(pairs: RunPairs, doc_index: pd.Index, judged: pd.DataFrame) -> pd.Series:
    """Each document's most cautious verdict (false negative > unsure > true negative) over the run's pairs."""
    query = pd.Index(pairs.query_ids).get_indexer(judged["query_id"])
    doc = doc_index.get_indexer(judged["doc_id"])
    mine = pd.DataFrame({"q": query, "d": doc, "label": judged["label"].to_numpy()})[(query >= 0) & (doc >= 0)]
    rows = pairs.rows_of_docs(mine["d"].to_numpy())
    present = pd.DataFrame({"q": pairs.query[rows], "d": pairs.doc[rows]}).merge(mine, on=["q", "d"])
    present = present.assign(order=present["label"].map(CAUTION_ORDER)).sort_values("order", kind="stable")
    return present.drop_duplicates("d").set_index("d")["label"]


def _doc_risk(store: Store, run_id: str, pairs: RunPairs, codes: np.ndarray) -> np.ndarray:
    """Each document's highest risk over the run's pairs it appears in, read by primary key for those pairs only,
    and kept for the process until the run's risk is written again: the whole-dataset map draws the same sample
    (every judged document plus a seeded draw) on every rerun, and at 10M candidates its ~400k pairs take a second
    to read, so each rerun reads only documents it never read before."""
    rows_of = store.rows_of(run_id)
    key = (str(store.path), rows_of, store.risk_scored_at(run_id))
    with _state_lock:
        known = _doc_risks.pop(key, None) or {}
        _doc_risks[key] = known  # newest last
        while len(_doc_risks) > DOC_RISKS_KEPT:
            _doc_risks.pop(next(iter(_doc_risks)))
    missing = np.array([c for c in np.unique(codes) if int(c) not in known], dtype=np.int64)
    rows = pairs.rows_of_docs(missing)
    flat = np.column_stack([pairs.query_ids[pairs.query[rows]], pairs.doc_ids[pairs.doc[rows]]]).ravel().tolist()
    parts = [pd.DataFrame({"doc_id": pd.Series(dtype=object), "risk": pd.Series(dtype=float)})]
    for start in range(0, len(flat), 900):  # 450 pairs a statement: under SQLite's parameter limit
        chunk = flat[start:start + 900]
        parts.append(store.frame(f"""WITH p(q, d) AS (VALUES {",".join(["(?, ?)"] * (len(chunk) // 2))})
                                    SELECT c.doc_id, c.risk FROM p JOIN candidates c
                                    ON c.run_id = ? AND c.query_id = p.q AND c.doc_id = p.d""",
                                 (*chunk, rows_of)))
    best = pd.concat(parts).groupby("doc_id")["risk"].max().reindex(pairs.doc_ids[missing])
    with _state_lock:
        known.update(zip(missing.tolist(), best.to_numpy(dtype=float).tolist()))
    return np.array([known[int(c)] for c in codes], dtype=float)


def dataset_points(store: Store, run_id: str, projection: pd.DataFrame, pairs: RunPairs, judged: pd.DataFrame,
                   colour: str, seed: int = 0) -> pd.DataFrame:
    """A stratified sample of the placed points, coloured by ``colour`` aggregated over the queries a document
    appears in: every document judged on a pair of the run, then queries and labelled positives up to a fifth of
    ``SHOWN_POINTS`` each, and the rest shared between kept and dropped candidates, so each stratum shows.

    A document's verdict is its most cautious one, its rule "kept" if any query keeps it, its score and risk the
    highest. Columns: x, y, kind (query / positive / document), id, hover, and the colour column.
    """
    run = require_run(store, run_id)
    size, rng = SHOWN_POINTS, np.random.default_rng(seed)
    doc_index = pd.Index(pairs.doc_ids)
    is_doc = (projection["kind"] == "document").to_numpy()
    code = np.where(is_doc, doc_index.get_indexer(projection["id"]), -1)
    labels = _doc_labels(pairs, doc_index, judged)
    judged_mask = np.isin(code, labels.index.to_numpy()) & (code >= 0)
    positive_ids = set(positive_qrels(store.qrels(run["dataset"], run["split"]))["doc_id"])
    is_pos = is_doc & projection["id"].astype(object).isin(positive_ids).to_numpy()  # 10× faster than arrow strings
    kept = np.where(code >= 0, pairs.doc_kept[code], False)

    def take(mask: np.ndarray, quota: int) -> np.ndarray:
        found = np.flatnonzero(mask & ~judged_mask)
        return found if len(found) <= quota else rng.choice(found, quota, replace=False)

    queries, pos = take(~is_doc, size // 5), take(is_pos, size // 5)
    room = max(0, size - len(queries) - len(pos))
    candidate = (code >= 0) & ~is_pos
    kept_free, dropped_free = (int((candidate & k & ~judged_mask).sum()) for k in (kept, ~kept))
    n_kept = min(kept_free, max(room // 2, room - dropped_free))
    chosen = np.sort(np.concatenate([np.flatnonzero(judged_mask), queries, pos, take(candidate & kept, n_kept),
                                     take(candidate & ~kept, room - n_kept)]).astype(int))
    frame = projection.iloc[chosen].reset_index(drop=True)
    codes = code[chosen]
    known = codes >= 0
    facts = pd.DataFrame({"kept": np.where(known, pairs.doc_kept[codes], None),
                          "score": np.where(known, pairs.doc_score[codes], np.nan),
                          "label": labels.reindex(codes).to_numpy()})
    if colour == "risk":
        facts["risk"] = np.nan
        facts.loc[known, "risk"] = _doc_risk(store, run_id, pairs, codes[known])
    values = _colour_values(facts, colour).to_numpy()
    point_pos = is_pos[chosen]
    if colour in ("verdict", "rule"):
        values = values.astype(object)
        values[~is_doc[chosen]] = "query"
        values[point_pos & ~known] = "positive"
    texts = _texts(store, run["dataset"], frame.loc[frame["kind"] == "query", "id"].tolist(),
                   frame.loc[frame["kind"] == "document", "id"].tolist())
    return pd.DataFrame({"x": frame["x"], "y": frame["y"], "kind": np.where(point_pos, "positive", frame["kind"]),
                         "id": frame["id"], "hover": [texts.get(k, "") for k in zip(frame["kind"], frame["id"])],
                         colour: values})


def documents_queries(pairs: RunPairs, doc_ids: list[str], shown: int = 5) -> pd.DataFrame:
    """For documents picked on the whole-dataset map: how many of the run's queries mined each, and which.

    A whole-dataset point is a document, but a verdict belongs to a (query, document) pair, so the map lists the
    pairs a selection stands for instead of judging them all alike. Columns: doc_id, queries, query_ids (the
    first ``shown`` ids, comma-separated); only documents that are candidates, in selection order.
    """
    picked = list(dict.fromkeys(doc_ids))
    codes = pd.Index(pairs.doc_ids).get_indexer(picked)
    rows = pairs.rows_of_docs(codes[codes >= 0])
    grouped = pd.Series(pairs.query_ids[pairs.query[rows]]).groupby(pairs.doc_ids[pairs.doc[rows]],
                                                                     sort=False).agg(list)
    rows = [{"doc_id": d, "queries": len(grouped[d]), "query_ids": ", ".join(map(str, grouped[d][:shown]))
             + (" …" if len(grouped[d]) > shown else "")} for d in picked if d in grouped.index]
    return pd.DataFrame(rows, columns=["doc_id", "queries", "query_ids"])
