"""Nearest-neighbour search (FAISS) and lexical scoring (bm25s).

Exact inner-product search is fast enough below a few hundred thousand vectors, so it is the default; above
``APPROX_THRESHOLD`` we switch to IVF (cheaper to build than HNSW on two cores), probing enough lists to keep
recall@100 ≥ 0.95 against exact search (see benchmarks/bench_scale.py and docs/BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from core.encoders import Encoder
    from core.jobs import StageProgress

APPROX_THRESHOLD = 200_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 256
IVF_TRAIN_PER_LIST = 40
# Probing 8 % of sqrt(n) lists keeps recall@100 ≥ 0.95 against exact search (bench_scale.py).
IVF_PROBE_FRACTION = 0.08


def build_index(vectors: np.ndarray, kind: str = "auto"):
    """An inner-product index over unit vectors: ``flat`` (exact), ``ivf``, ``hnsw``, or ``auto`` by size."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = vectors.shape[1]
    if kind == "auto":
        kind = "ivf" if len(vectors) > APPROX_THRESHOLD else "flat"
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "ivf":
        nlist = max(1, int(np.sqrt(len(vectors))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample = vectors[rng.choice(len(vectors), size=min(len(vectors), IVF_TRAIN_PER_LIST * nlist),
                                    replace=False)]
        index.train(sample)
        index.nprobe = max(8, int(np.ceil(IVF_PROBE_FRACTION * nlist)))
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        raise ValueError(f"unknown index kind {kind!r}")
    index.add(vectors)
    return index


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, ids); ids are -1 where the index holds fewer than k vectors."""
    k = max(1, min(k, index.ntotal))
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = max(HNSW_EF_SEARCH, k)
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


@dataclass
class DenseHits:
    """Unit vectors of both sides and each query's top-k: ``scores`` and ``ids`` rows follow the query order."""

    doc_vecs: np.ndarray
    query_vecs: np.ndarray
    scores: np.ndarray  # (queries, k) inner products, best first
    ids: np.ndarray  # (queries, k) row numbers into the documents, -1 where fewer than k exist


def encode_and_search(encoder: Encoder, doc_texts: Sequence[str], query_texts: Sequence[str], k: int,
                      kind: str = "auto", stage: StageProgress | None = None, encode_share: float = 0.8) -> DenseHits:
    """Encode documents and queries (cached) and search the top-k: the one dense path of mining and evaluation.

    Progress: document encoding spans fractions 0 to ``encode_share``; then queries, then search.
    """
    stage = stage or (lambda message, fraction: None)
    stage("encoding documents", 0.0)
    doc_vecs = encoder.encode_documents(
        doc_texts, progress=lambda done, total: stage(f"encoding documents {done}/{total}",
                                                      encode_share * done / max(total, 1)))
    stage("encoding queries", encode_share)
    query_vecs = encoder.encode_queries(list(query_texts))
    stage("searching", encode_share + (1 - encode_share) / 4)
    scores, ids = search(build_index(doc_vecs, kind), query_vecs, k)
    return DenseHits(doc_vecs, query_vecs, scores, ids)


class Bm25:
    """bm25s over a corpus, able to score arbitrary (query, document) pairs as well as search."""

    def __init__(self, corpus: Sequence[str]):
        import bm25s

        self._bm25s = bm25s
        self.tokens = bm25s.tokenize(list(corpus), stopwords="en", show_progress=False)
        self.model = bm25s.BM25()
        self.model.index(self.tokens, show_progress=False)
        self.size = len(corpus)

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) each of shape (len(queries), k), in the same order as dense ``search``."""
        k = max(1, min(k, self.size))
        query_tokens = self._bm25s.tokenize(list(queries), stopwords="en", show_progress=False,
                                            return_ids=False)
        query_tokens = [q if q else [""] for q in query_tokens]
        ids, scores = self.model.retrieve(query_tokens, k=k, show_progress=False, n_threads=1)
        return np.asarray(scores, dtype=np.float32), np.asarray(ids)

    def scores(self, query: str, doc_indices: Sequence[int]) -> np.ndarray:
        """BM25 score of chosen documents for one query (0 where no query term occurs)."""
        tokens = self._bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)[0]
        if not tokens:
            return np.zeros(len(doc_indices), dtype=np.float32)
        all_scores = self.model.get_scores(tokens)
        return np.asarray(all_scores, dtype=np.float32)[np.asarray(doc_indices, dtype=np.int64)]
