"""2-D maps of a run's queries, positives and candidates, computed once and cached in the workspace.

A map is a pure function of the mined pool (which queries, which documents, which model), so it is stored once
per *mining* run and shared by every run derived from it by a rule change. Vectors come from the embedding cache
the run was mined with, so projecting never re-encodes. PCA is instant and is shown first; UMAP is better at
keeping neighbourhoods (near-duplicates sit together) but costs a ~35 s numba compile per process, so the app
warms a reducer in the background (``warm_umap``) and switches to UMAP when it is ready.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core.labels import CAUTION_ORDER
from core.lookups import document_texts, positives_by_query, require_run
from core.vectors import run_encoder

if TYPE_CHECKING:
    from core.store import Store
    from core.workspace import Workspace

METHODS = ("pca", "umap")
MAX_POINTS = 30_000  # above this the map samples candidates (queries and positives are always kept)
_umap_lock = threading.Lock()


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


def points(store: Store, workspace: Workspace, run_id: str, max_points: int = MAX_POINTS, seed: int = 0
           ) -> tuple[pd.DataFrame, np.ndarray]:
    """The run's queries and documents (positives + candidates) with their cached unit vectors.

    Frame columns: kind ('query' | 'document'), id, text (what hovering shows).
    """
    run = require_run(store, run_id)
    dataset = run["dataset"]
    cands = store.candidates(run_id)
    query_ids = list(dict.fromkeys(cands["query_id"]))
    positives = positives_by_query(store, dataset, run["split"])
    pos_ids = list(dict.fromkeys(d for q in query_ids for d in positives.get(q, [])))
    cand_ids = [d for d in dict.fromkeys(cands["doc_id"]) if d not in set(pos_ids)]
    room = max(0, max_points - len(query_ids) - len(pos_ids))
    if len(cand_ids) > room:
        rng = np.random.default_rng(seed)
        cand_ids = [cand_ids[i] for i in sorted(rng.choice(len(cand_ids), size=room, replace=False))]
    encoder = run_encoder(workspace, run)
    queries = store.queries(dataset, query_ids)
    docs = store.documents(dataset, pos_ids + cand_ids)
    doc_texts = document_texts(docs)
    vectors = np.vstack([encoder.encode_queries(queries["text"].tolist()).reshape(-1, encoder.dim),
                         encoder.encode_documents(doc_texts).reshape(-1, encoder.dim)])
    frame = pd.DataFrame({"kind": ["query"] * len(queries) + ["document"] * len(docs),
                          "id": list(queries["query_id"]) + list(docs["doc_id"]),
                          "text": list(queries["text"]) + doc_texts})
    return frame, vectors


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """The two leading principal components (exact SVD; milliseconds for tens of thousands of points)."""
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def umap_2d(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """UMAP with cosine distance; seeded so the same run always gets the same picture."""
    import umap

    n_neighbors = max(2, min(15, len(vectors) - 1))
    with _umap_lock:  # numba-compiled UMAP is not worth running twice at once on a small machine
        reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=0.1, metric="cosine",
                            random_state=seed, init="random" if len(vectors) < 10 else "spectral")
        return reducer.fit_transform(vectors)


def warm_umap() -> float:
    """Fit a tiny UMAP so numba compiles its kernels now, not when a user first opens the map; returns seconds."""
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    umap_2d(rng.normal(size=(64, 8)).astype(np.float32))
    return time.perf_counter() - started


def load_projection(store: Store, workspace: Workspace, run_id: str, method: str) -> pd.DataFrame | None:
    path = projection_path(workspace, root_run(store, run_id), method)
    return pd.read_parquet(path) if path.exists() else None


def ensure_projection(store: Store, workspace: Workspace, run_id: str, method: str = "pca") -> pd.DataFrame:
    """The stored map of a run, computing and storing it (atomically) the first time it is asked for.

    Columns: kind, id, text, x, y.
    """
    if method not in METHODS:
        raise ValueError(f"unknown projection method {method!r}")
    existing = load_projection(store, workspace, run_id, method)
    if existing is not None:
        return existing
    frame, vectors = points(store, workspace, run_id)
    coords = pca_2d(vectors) if method == "pca" else umap_2d(vectors)
    frame["x"], frame["y"] = coords[:, 0].astype(float), coords[:, 1].astype(float)
    path = projection_path(workspace, root_run(store, run_id), method)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return frame


def best_projection(store: Store, workspace: Workspace, run_id: str) -> tuple[pd.DataFrame, str]:
    """UMAP when it has been computed for this run, else PCA (computed now if needed): never waits on UMAP."""
    umap_frame = load_projection(store, workspace, run_id, "umap")
    if umap_frame is not None:
        return umap_frame, "umap"
    return ensure_projection(store, workspace, run_id, "pca"), "pca"


COLOUR_BY = ("verdict", "rule", "score", "risk")


def _colour_values(frame: pd.DataFrame, colour: str) -> pd.Series:
    if colour == "verdict":
        return frame["label"].fillna("unjudged")
    if colour == "rule":
        return frame["kept"].map({True: "kept", False: "dropped"})
    return frame[colour].astype(float)


def anchored_points(projection: pd.DataFrame, candidates: pd.DataFrame, positives: list[str], query_id: str,
                    judged: pd.DataFrame, colour: str) -> pd.DataFrame:
    """One query, its positives and its candidates on the map, coloured by ``colour`` (see COLOUR_BY).

    ``candidates`` are the run's candidates, ``judged`` holds query_id, doc_id, label. Columns: x, y, kind
    (query / positive / document), id, hover, and the colour column named after ``colour``.
    """
    own = candidates[candidates["query_id"] == query_id].merge(
        judged[judged["query_id"] == query_id][["doc_id", "label"]], on="doc_id", how="left")
    docs = projection[projection["kind"] == "document"].set_index("id")
    own = own[own["doc_id"].isin(docs.index)]
    cand = pd.DataFrame({"x": docs.loc[own["doc_id"], "x"].to_numpy(), "y": docs.loc[own["doc_id"], "y"].to_numpy(),
                         "kind": "document", "id": own["doc_id"].to_numpy(),
                         "hover": [f"rank {r} · s={s:.3f} · {docs.at[d, 'text']}"
                                   for r, s, d in zip(own["rank"], own["score"], own["doc_id"])],
                         colour: _colour_values(own, colour).to_numpy()})
    query = projection[(projection["kind"] == "query") & (projection["id"] == query_id)]
    pos = docs.loc[[d for d in positives if d in docs.index]].reset_index()
    fixed = "positive" if colour in ("verdict", "rule") else np.nan
    anchors = pd.concat([
        pd.DataFrame({"x": query["x"], "y": query["y"], "kind": "query", "id": query["id"], "hover": query["text"],
                      colour: "query" if colour in ("verdict", "rule") else np.nan}),
        pd.DataFrame({"x": pos["x"], "y": pos["y"], "kind": "positive", "id": pos["id"], "hover": pos["text"],
                      colour: fixed}),
    ], ignore_index=True)
    return pd.concat([anchors, cand], ignore_index=True)


def dataset_points(projection: pd.DataFrame, candidates: pd.DataFrame, positive_ids: set[str],
                   judged: pd.DataFrame, colour: str) -> pd.DataFrame:
    """Every projected document (and query) coloured by ``colour`` aggregated over the queries it appears in.

    A document's verdict is its most cautious one (false negative > unsure > true negative), its rule "kept"
    if any query keeps it, its score and risk the highest; labelled positives are marked as such.
    """
    cands = candidates.merge(judged[["query_id", "doc_id", "label"]], on=["query_id", "doc_id"], how="left")
    per_doc = cands.groupby("doc_id").agg(kept=("kept", "max"), score=("score", "max"), risk=("risk", "max"))
    labelled = cands.dropna(subset=["label"])
    if not labelled.empty:
        labelled = labelled.assign(order=labelled["label"].map(CAUTION_ORDER)).sort_values("order")
        per_doc["label"] = labelled.drop_duplicates("doc_id").set_index("doc_id")["label"]
    else:
        per_doc["label"] = None
    frame = projection.merge(per_doc, left_on="id", right_index=True, how="left")
    values = _colour_values(frame, colour)
    is_pos = (frame["kind"] == "document") & frame["id"].isin(positive_ids)
    if colour in ("verdict", "rule"):
        values = values.astype(object)
        values[frame["kind"] == "query"] = "query"
        values[is_pos & frame["kept"].isna()] = "positive"
    frame = frame.assign(kind=np.where(is_pos, "positive", frame["kind"]), hover=frame["text"])
    frame[colour] = values
    return frame[["x", "y", "kind", "id", "hover", colour]]


def documents_queries(candidates: pd.DataFrame, doc_ids: list[str], shown: int = 5) -> pd.DataFrame:
    """For documents picked on the whole-dataset map: how many of the run's queries mined each, and which.

    A whole-dataset point is a document, but a verdict belongs to a (query, document) pair, so the map lists the
    pairs a selection stands for instead of judging them all alike. Columns: doc_id, queries, query_ids (the
    first ``shown`` ids, comma-separated); only documents that are candidates, in selection order.
    """
    picked = list(dict.fromkeys(doc_ids))
    own = candidates[candidates["doc_id"].isin(picked)]
    grouped = own.groupby("doc_id", sort=False)["query_id"].agg(list)
    rows = [{"doc_id": d, "queries": len(grouped[d]), "query_ids": ", ".join(map(str, grouped[d][:shown]))
             + (" …" if len(grouped[d]) > shown else "")} for d in picked if d in grouped.index]
    return pd.DataFrame(rows, columns=["doc_id", "queries", "query_ids"])
