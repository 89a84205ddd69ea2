"""BM25 over a corpus built in one streaming pass, in bounded memory, with bm25s's tokens and scores.

Mining needs two things from BM25: the score of every mined (query, document) pair (a risk signal and a column
reviewers read) and, for hybrid mining, each query's BM25 top-N. ``bm25s.BM25.index`` needs the whole tokenised
corpus as Python lists of ids first: at a million documents that alone took minutes and gigabytes. Here documents
are tokenised chunk by chunk with bm25s's own ``Tokenizer`` (same splitter, lower-casing and English stop words)
straight into a sparse term-count matrix, and the Lucene BM25 of Kamphuis et al. (ECIR 2020), bm25s's default, is
applied to it as sparse algebra:

    score(q, d) = Σ_{t ∈ q} idf(t) · tf(t, d) / (tf(t, d) + k1 · (1 − b + b · |d| / avgdl))
    idf(t)      = ln(1 + (N − df(t) + 0.5) / (df(t) + 0.5))

with k1 = 1.5, b = 0.75 and a query term counted as often as it occurs, exactly as ``bm25s.BM25().get_scores``
(tests compare the two). Pair scores are row-wise dot products, linear in the number of pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

K1 = 1.5
B = 0.75
_PAIR_CHUNK = 200_000  # pairs scored per sparse product: bounds the temporary matrices
_SEARCH_CHUNK = 64  # queries per dense score block in ``search``: 64 × N float32


class Bm25Builder:
    """Feed documents in order with ``add``; ``build`` returns the ``Bm25`` of everything added."""

    def __init__(self) -> None:
        from bm25s.tokenization import Tokenizer

        self.tokenizer = Tokenizer(stopwords="en")
        self._chunks: list = []

    def add(self, texts: Sequence[str]) -> None:
        from scipy.sparse import csr_matrix

        ids = self.tokenizer.tokenize(list(texts), update_vocab=True, return_as="ids", show_progress=False)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        indices = np.fromiter((t for x in ids for t in x), dtype=np.int32, count=int(indptr[-1]))
        counts = csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr),
                            shape=(len(ids), np.iinfo(np.int32).max))
        counts.sum_duplicates()
        self._chunks.append(counts)

    def build(self) -> Bm25:
        from scipy.sparse import csr_matrix, vstack

        vocab = len(self.tokenizer.get_vocab_dict())
        parts = [csr_matrix((c.data, c.indices, c.indptr), shape=(c.shape[0], max(vocab, 1)))
                 for c in self._chunks]
        self._chunks = []
        counts = vstack(parts, format="csr") if parts else csr_matrix((0, max(vocab, 1)), dtype=np.float32)
        return Bm25(self.tokenizer, counts)


class Bm25:
    """BM25 term weights of a corpus (documents × vocabulary), scoring pairs and searching by sparse products."""

    def __init__(self, tokenizer, counts) -> None:
        self.tokenizer = tokenizer
        n_docs = counts.shape[0]
        lengths = np.asarray(counts.sum(axis=1)).ravel()
        avg = float(lengths.mean()) if n_docs and lengths.sum() else 1.0
        df = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float64)
        idf = np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
        norm = np.repeat((K1 * (1 - B + B * lengths / avg)).astype(np.float32), np.diff(counts.indptr))
        tf = counts.data
        counts.data = idf[counts.indices] * tf / (tf + norm)
        self.weights = counts  # csr, documents × vocabulary
        self.size = n_docs

    @classmethod
    def of(cls, corpus: Sequence[str]) -> Bm25:
        builder = Bm25Builder()
        builder.add(corpus)
        return builder.build()

    def query_matrix(self, queries: Sequence[str]):
        """Queries × vocabulary term counts; words the corpus never uses are dropped (they score 0)."""
        from scipy.sparse import csr_matrix

        ids = self.tokenizer.tokenize(list(queries), update_vocab=False, return_as="ids", show_progress=False)
        known = [[t for t in x if t < self.weights.shape[1]] for x in ids]
        indptr = np.concatenate([[0], np.cumsum([len(x) for x in known])]).astype(np.int64)
        indices = np.fromiter((t for x in known for t in x), dtype=np.int32, count=int(indptr[-1]))
        matrix = csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr),
                            shape=(len(known), self.weights.shape[1]))
        matrix.sum_duplicates()
        return matrix

    def pair_scores(self, queries, query_rows: np.ndarray, doc_rows: np.ndarray) -> np.ndarray:
        """BM25 of pairs (``queries[query_rows[i]]``, document ``doc_rows[i]``); ``queries`` from ``query_matrix``."""
        out = np.zeros(len(query_rows), dtype=np.float32)
        for start in range(0, len(query_rows), _PAIR_CHUNK):
            stop = start + _PAIR_CHUNK
            product = queries[query_rows[start:stop]].multiply(self.weights[doc_rows[start:stop]])
            out[start:stop] = np.asarray(product.sum(axis=1)).ravel()
        return out

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query, best first, shaped like dense search (ids of equal scores by row)."""
        k = max(1, min(k, self.size))
        matrix = self.query_matrix(queries)
        weights_t = self.weights.T.tocsr()
        scores = np.zeros((len(queries), k), dtype=np.float32)
        ids = np.zeros((len(queries), k), dtype=np.int64)
        for start in range(0, len(queries), _SEARCH_CHUNK):
            block = (matrix[start:start + _SEARCH_CHUNK] @ weights_t).toarray()
            top = np.argpartition(-block, k - 1, axis=1)[:, :k] if k < block.shape[1] else \
                np.tile(np.arange(block.shape[1]), (len(block), 1))
            top_scores = np.take_along_axis(block, top, axis=1)
            order = np.lexsort((top, -top_scores), axis=1)
            ids[start:start + len(block)] = np.take_along_axis(top, order, axis=1)
            scores[start:start + len(block)] = np.take_along_axis(top_scores, order, axis=1)
        return scores, ids
