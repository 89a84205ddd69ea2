"""The streaming BM25 gives bm25s's own scores and rankings, whatever the chunking of the corpus."""

from __future__ import annotations

import bm25s
import numpy as np

from core.lexical import Bm25, Bm25Builder
from tests.fixtures import DOCS

CORPUS = [f"{title} {text}" for title, text in DOCS.values()]
QUERIES = ["join path components", "heat heat conduction in slabs", "sorting a list in place", "zzz unseen",
           "the of and"]


def _reference() -> bm25s.BM25:
    model = bm25s.BM25()
    model.index(bm25s.tokenize(CORPUS, stopwords="en", show_progress=False), show_progress=False)
    return model


def test_pair_scores_equal_bm25s_for_every_document_and_any_chunking():
    reference = _reference()
    builder = Bm25Builder()
    for start in range(0, len(CORPUS), 7):
        builder.add(CORPUS[start:start + 7])
    ours = builder.build()
    queries = ours.query_matrix(QUERIES)
    docs = np.arange(len(CORPUS))
    for row, query in enumerate(QUERIES):
        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)[0]
        expected = reference.get_scores(tokens) if tokens else np.zeros(len(CORPUS))
        got = ours.pair_scores(queries, np.full(len(CORPUS), row), docs)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert ours.pair_scores(queries, np.full(len(CORPUS), 0), docs).max() > 0


def test_search_ranks_like_bm25s():
    reference = _reference()
    scores, ids = Bm25.of(CORPUS).search(QUERIES[:3], 4)
    tokens = bm25s.tokenize(QUERIES[:3], stopwords="en", show_progress=False, return_ids=False)
    ref_ids, ref_scores = reference.retrieve(tokens, k=4, show_progress=False, n_threads=1)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5)
    for got, want, s in zip(ids, ref_ids, ref_scores):
        distinct = s[:-1] > s[1:] + 1e-6  # where scores tie, either order is right
        assert list(got[:-1][distinct]) == list(want[:-1][distinct])
