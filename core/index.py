"""Nearest-neighbour search (FAISS) over document vectors streamed through a scratch file.

Exact inner-product search is fast enough below a few hundred thousand vectors, so it is the default; above
``APPROX_THRESHOLD`` we switch to IVF (cheaper to build than HNSW on two cores). How many lists to probe depends
on the model's geometry (8 % of √n lists gives recall@100 0.97 on MiniLM vectors but 0.88 on a static model's), so
``calibrate_probes`` measures it: exact top-k of a sample of the real queries, then about the fewest probes
(doubling, then bisecting) whose recall@k on that sample reaches ``TARGET_RECALL`` plus a margin. When an IVF-Flat
copy of the vectors would pass ``COMPRESSED_BYTES`` the lists hold 8-bit scalar-quantised vectors (a quarter of the memory) and the returned
candidates are re-scored exactly from the vector file, so stored scores are always exact. (Jégou et al., "Product
quantization for nearest neighbor search", TPAMI 2011, for the inverted-file search FAISS implements.)

Documents are encoded chunk by chunk into a ``VectorFile`` (an unlinked temporary file: nothing is left behind
if the process is killed) and the index is filled from it chunk by chunk, so only the index itself grows with
the corpus.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from core.encoders import Encoder
    from core.jobs import StageProgress

APPROX_THRESHOLD = 200_000
# An IVF-Flat copy of more than this many bytes of vectors is built over 8-bit vectors instead: at 1M x 384 the
# flat lists take 1,936 MB while filling (they grow by doubling), the 8-bit ones 526 MB (docs/BENCHMARKS.md).
COMPRESSED_BYTES = 1 << 30
TARGET_RECALL = 0.95  # recall@k against exact search that IVF probing must keep
CALIBRATION_MARGIN = 0.01  # aim this much higher on the sample, for the queries outside it
CALIBRATION_QUERIES = 256
CALIBRATION_REFINE = 2  # bisections after doubling: within 2^(1/4) of the fewest probes that reach the goal
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 256
IVF_TRAIN_PER_LIST = 40
IVF_PROBE_FRACTION = 0.08  # the first probe count tried: enough on MiniLM vectors (bench_scale.py)
ADD_CHUNK = 65_536  # vectors read from the file per index.add
QUERY_CHUNK = 4_096  # queries per FAISS search call
PAIR_BLOCK = 65_536  # (query, document) pairs re-scored at once


class VectorFile:
    """Float32 unit vectors appended row-block by row-block to an anonymous temporary file, read back in chunks.

    The file is unlinked as soon as it is created, so it vanishes with the process however that ends. Reads go
    through ``os.pread`` rather than a memory map, so scanning it does not count against the process's memory.
    """

    def __init__(self, dim: int, folder: Path | None = None):
        self.dim, self.rows = dim, 0
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(suffix=".f32", dir=folder)
        os.unlink(name)
        self._fh = os.fdopen(fd, "w+b")

    def __len__(self) -> int:
        return self.rows

    def append(self, vectors: np.ndarray) -> None:
        self._fh.seek(0, os.SEEK_END)
        self._fh.write(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
        self._fh.flush()
        self.rows += len(vectors)

    def read(self, start: int, stop: int) -> np.ndarray:
        stop = min(stop, self.rows)
        width = self.dim * 4
        data = os.pread(self._fh.fileno(), (stop - start) * width, start * width)
        return np.frombuffer(data, dtype=np.float32).reshape(-1, self.dim)

    def chunks(self, size: int = ADD_CHUNK) -> Iterator[np.ndarray]:
        for start in range(0, self.rows, size):
            yield self.read(start, start + size)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The given rows (any order, repeats allowed), reading each distinct row once in file order."""
        rows = np.asarray(rows, dtype=np.int64)
        unique, inverse = np.unique(rows, return_inverse=True)
        out = np.empty((len(unique), self.dim), dtype=np.float32)
        if len(unique):
            breaks = np.flatnonzero(np.diff(unique) != 1) + 1  # runs of consecutive rows: one read each
            for run in np.split(np.arange(len(unique)), breaks):
                out[run] = self.read(int(unique[run[0]]), int(unique[run[-1]]) + 1)
        return out[inverse]

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> VectorFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _chunks(vectors: np.ndarray | VectorFile) -> Iterator[np.ndarray]:
    if isinstance(vectors, VectorFile):
        yield from vectors.chunks()
    else:
        for start in range(0, len(vectors), ADD_CHUNK):
            yield np.ascontiguousarray(vectors[start:start + ADD_CHUNK], dtype=np.float32)


def _take(vectors: np.ndarray | VectorFile, rows: np.ndarray) -> np.ndarray:
    return vectors.take(rows) if isinstance(vectors, VectorFile) else np.asarray(vectors[rows], dtype=np.float32)


def index_kind(n: int, dim: int) -> str:
    """What ``auto`` builds for ``n`` vectors of ``dim`` floats: exact, IVF, or IVF over 8-bit quantised vectors."""
    if n <= APPROX_THRESHOLD:
        return "flat"
    return "ivf" if n * dim * 4 <= COMPRESSED_BYTES else "ivf-sq8"


def build_index(vectors: np.ndarray | VectorFile, kind: str = "auto"):
    """An inner-product index over unit vectors: ``flat`` (exact), ``ivf``, ``ivf-sq8``, ``hnsw`` or ``auto``."""
    import faiss

    dim = vectors.dim if isinstance(vectors, VectorFile) else vectors.shape[1]
    n = len(vectors)
    if kind == "auto":
        kind = index_kind(n, dim)
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind in {"ivf", "ivf-sq8"}:
        nlist = max(1, int(np.sqrt(n)))
        quantizer = faiss.IndexFlatIP(dim)
        if kind == "ivf":
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                                  faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(n, size=min(n, IVF_TRAIN_PER_LIST * nlist), replace=False))
        index.train(_take(vectors, sample))
        index.nprobe = max(8, int(np.ceil(IVF_PROBE_FRACTION * nlist)))
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        raise ValueError(f"unknown index kind {kind!r}")
    for chunk in _chunks(vectors):
        index.add(chunk)
    return index


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, ids), searched in blocks of queries; ids are -1 where the index holds fewer than k vectors."""
    k = max(1, min(k, index.ntotal))
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = max(HNSW_EF_SEARCH, k)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    scores = np.empty((len(queries), k), dtype=np.float32)
    ids = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), QUERY_CHUNK):
        block = slice(start, start + QUERY_CHUNK)
        scores[block], ids[block] = index.search(queries[block], k)
    return scores, ids


def exact_search(vectors: np.ndarray | VectorFile, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k (scores, ids), best first, streaming the vectors chunk by chunk through FAISS's brute-force
    kernel (BLAS) and merging each chunk's top-k into the running one: exact search without an index's copy of
    the vectors. Returns min(k, n) columns, like ``search``."""
    import faiss

    queries = np.ascontiguousarray(queries, dtype=np.float32)
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_ids = np.empty((len(queries), 0), dtype=np.int64)
    offset = 0
    for chunk in _chunks(vectors):
        scores, ids = faiss.knn(queries, chunk, min(k, len(chunk)), metric=faiss.METRIC_INNER_PRODUCT)
        scores, ids = np.concatenate([best_scores, scores], axis=1), np.concatenate([best_ids, ids + offset], axis=1)
        offset += len(chunk)
        if scores.shape[1] > k:
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            scores, ids = np.take_along_axis(scores, top, axis=1), np.take_along_axis(ids, top, axis=1)
        best_scores, best_ids = scores, ids
    order = np.lexsort((best_ids, -best_scores), axis=1)  # best first, ties by id as a flat index orders them
    return np.take_along_axis(best_scores, order, axis=1), np.take_along_axis(best_ids, order, axis=1)


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |found ∩ exact| / |exact|: the share of the true top-k an index returned.

    ``found`` and ``exact`` are (queries, k) id arrays; -1 (no hit) never matches.
    """
    hits = [len(set(f[f >= 0].tolist()) & set(e.tolist())) / max(len(e), 1) for f, e in zip(found, exact)]
    return float(np.mean(hits)) if hits else 1.0


def calibrate_probes(index, vectors: np.ndarray | VectorFile, queries: np.ndarray, k: int,
                     target: float = TARGET_RECALL) -> dict:
    """Set an IVF index's ``nprobe`` to (nearly) the fewest probes whose recall@k against exact search, measured on
    a sample of the queries, reaches ``target`` + ``CALIBRATION_MARGIN``: doubling from its current value until one
    does (all lists if none does), then ``CALIBRATION_REFINE`` geometric bisections between the last count that
    missed and the first that reached it, since search time grows with the probes.

    Returns what was chosen and measured, for the run's statistics, including the seconds the sample took with
    exact search and with the chosen probes: where a model's vectors need many probes, scanning that share of
    8-bit lists costs more than brute force by BLAS, and the caller searches exactly instead.
    """
    k = max(1, min(k, index.ntotal))
    rng = np.random.default_rng(0)
    sample = queries[np.sort(rng.choice(len(queries), size=min(len(queries), CALIBRATION_QUERIES), replace=False))]
    started = time.perf_counter()
    exact = exact_search(vectors, sample, k)[1]
    exact_seconds = time.perf_counter() - started
    goal = target + CALIBRATION_MARGIN
    tried: dict[int, float] = {}
    timed: dict[int, float] = {}

    def reaches(probes: int) -> bool:
        index.nprobe = probes
        started = time.perf_counter()
        found = index.search(sample, k)[1]
        timed[probes] = time.perf_counter() - started
        tried[probes] = recall_at_k(found, exact)
        return tried[probes] >= goal

    missed, probes = None, int(index.nprobe)
    while not reaches(probes) and probes < index.nlist:
        missed, probes = probes, min(index.nlist, probes * 2)
    for _ in range(CALIBRATION_REFINE):
        if missed is None or probes - missed <= max(1, missed // 8):
            break
        middle = int(round(np.sqrt(missed * probes)))
        if reaches(middle):
            probes = middle
        else:
            missed = middle
    index.nprobe = probes
    return {"nlist": int(index.nlist), "nprobe": probes, "sample_queries": len(sample), "k": k,
            "sample_recall": round(tried[probes], 4), "tried": {str(p): round(r, 4) for p, r in sorted(tried.items())},
            "sample_seconds": {"exact": round(exact_seconds, 3), "ivf": round(timed[probes], 3)}}


def exact_scores(doc_vecs: VectorFile, query_vecs: np.ndarray, query_rows: np.ndarray,
                 doc_rows: np.ndarray) -> np.ndarray:
    """Inner product of each (query row, document row) pair, documents read from the vector file.

    Pairs are taken ``PAIR_BLOCK`` at a time: re-scoring a million hits at once would gather two million-row
    copies of the vectors (3 GB at 384 dimensions) where a block needs 200 MB.
    """
    out = np.empty(len(query_rows), dtype=np.float32)
    for start in range(0, len(query_rows), PAIR_BLOCK):
        block = slice(start, start + PAIR_BLOCK)
        out[block] = np.einsum("ij,ij->i", query_vecs[query_rows[block]], doc_vecs.take(doc_rows[block]))
    return out


@dataclass
class DenseHits:
    """Vectors of both sides and each query's top-k: ``scores`` and ``ids`` rows follow the query order.

    ``doc_vecs`` is the scratch file the documents were encoded into; close it (or use the hits as a context
    manager) when done.
    """

    doc_vecs: VectorFile
    query_vecs: np.ndarray
    scores: np.ndarray  # (queries, k) exact inner products, best first
    ids: np.ndarray  # (queries, k) row numbers into the documents, -1 where fewer than k exist
    index: dict  # what was searched: kind, and for IVF the lists, probes and measured sample recall

    def __enter__(self) -> DenseHits:
        return self

    def __exit__(self, *exc: object) -> None:
        self.doc_vecs.close()


def encode_and_search(encoder: Encoder, doc_texts: Sequence[str], query_texts: Sequence[str], k: int,
                      kind: str = "auto", stage: StageProgress | None = None, encode_share: float = 0.8) -> DenseHits:
    """Encode documents and queries (cached) and search the top-k, for a corpus held in memory."""
    return encode_and_search_chunks(encoder, [doc_texts], len(doc_texts), query_texts, k, kind, stage, encode_share)


def encode_and_search_chunks(encoder: Encoder, doc_chunks: Iterable[Sequence[str]], n_docs: int,
                             query_texts: Sequence[str], k: int, kind: str = "auto",
                             stage: StageProgress | None = None, encode_share: float = 0.8,
                             scratch: Path | None = None) -> DenseHits:
    """The one dense path of mining and evaluation: encode documents chunk by chunk (cached) into a vector file,
    index it, encode the queries and search their top-k with exact scores.

    Progress: document encoding spans fractions 0 to ``encode_share``; then queries, then search.
    """
    stage = stage or (lambda message, fraction: None)
    stage("encoding documents", 0.0)
    doc_vecs = VectorFile(encoder.dim, scratch)
    try:
        for texts in doc_chunks:
            done = len(doc_vecs)
            doc_vecs.append(encoder.encode_documents(
                texts, progress=lambda i, total: stage(f"encoding documents {done + i}/{n_docs}",
                                                       encode_share * (done + i) / max(n_docs, 1))))
        stage("encoding queries", encode_share)
        query_vecs = encoder.encode_queries(list(query_texts))
        stage("indexing", encode_share + (1 - encode_share) / 4)
        kind = index_kind(len(doc_vecs), doc_vecs.dim) if kind == "auto" else kind
        index = build_index(doc_vecs, kind)
        facts = {"kind": kind, "searched": "index"}
        if kind in {"ivf", "ivf-sq8"} and len(query_vecs):
            stage("calibrating probes", encode_share + (1 - encode_share) * 3 / 8)
            facts |= calibrate_probes(index, doc_vecs, query_vecs, k)
            if facts["sample_seconds"]["exact"] < facts["sample_seconds"]["ivf"]:
                facts["searched"] = "exact"
        stage("searching", encode_share + (1 - encode_share) / 2)
        if facts["searched"] == "exact":  # the probes recall needs cost more than brute force: stream it
            del index
            scores, ids = exact_search(doc_vecs, query_vecs, k)
        else:
            scores, ids = search(index, query_vecs, k)
            del index
        if facts["searched"] == "index" and kind == "ivf-sq8":  # quantised distances: re-score exactly, re-sort
            rows = np.repeat(np.arange(len(ids)), ids.shape[1])
            found = ids.ravel() >= 0
            exact = np.full(ids.size, -np.inf, dtype=np.float32)
            exact[found] = exact_scores(doc_vecs, query_vecs, rows[found], ids.ravel()[found])
            exact = exact.reshape(ids.shape)
            order = np.argsort(-exact, axis=1, kind="stable")
            ids, scores = np.take_along_axis(ids, order, axis=1), np.take_along_axis(exact, order, axis=1)
        return DenseHits(doc_vecs, query_vecs, scores, ids, facts)
    except BaseException:
        doc_vecs.close()
        raise
