"""A BEIR folder of N documents recombined from the real sentences of the shared corpora, for scale runs.

The shared collections hold about 11k documents; mining, risk and the app must be measured at 10^5–10^6. Each
synthetic document is 3–8 real sentences drawn from the pooled sentences of scifact, dbpedia_entity and
cranfield (so its vocabulary, length and topical mix are those of real text, and sentences shared between
documents make natural near-duplicates). Each query is one sentence of one document, and that document is its
only labelled positive. The same (N, seed) always gives the same files; nothing is copied into the repository.

    python3 benchmarks/scale_corpus.py 100000                 # → benchmarks/.cache/scale-100000-s0/
    python3 benchmarks/scale_corpus.py 100000 --queries 10000 --out /tmp/scale
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, SHARED  # noqa: E402

SOURCES = ("scifact", "dbpedia_entity", "cranfield")
MIN_SENTENCE_CHARS = 30  # shorter splits are headings, abbreviations or markup debris
SENTENCES_PER_DOC = (3, 8)  # inclusive range
QUERY_SHARE = 20  # one query per this many documents ...
MAX_QUERIES = 10_000  # ... capped here unless --queries says otherwise
_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Za-z0-9(])")


def sentences(shared: Path = SHARED) -> list[str]:
    """Every distinct sentence of the shared corpora's texts, in a fixed order (corpus, then file order)."""
    seen: dict[str, None] = {}
    for name in SOURCES:
        path = shared / name / "corpus.jsonl"
        if not path.exists():
            raise SystemExit(f"{path} missing: the scale corpus is built from ../shared/datasets")
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                text = " ".join(str(json.loads(line).get("text") or "").split())
                for sentence in _SPLIT.split(text):
                    if len(sentence) >= MIN_SENTENCE_CHARS:
                        seen.setdefault(sentence)
    return list(seen)


def build(n_docs: int, out: Path, seed: int = 0, n_queries: int | None = None) -> dict:
    """Write corpus.jsonl, queries.jsonl and qrels/train.tsv for ``n_docs`` documents into ``out``."""
    pool = sentences()
    rng = np.random.default_rng(seed)
    n_queries = min(n_docs, n_queries if n_queries is not None else min(MAX_QUERIES, max(1, n_docs // QUERY_SHARE)))
    lengths = rng.integers(SENTENCES_PER_DOC[0], SENTENCES_PER_DOC[1] + 1, size=n_docs)
    picks = rng.integers(0, len(pool), size=int(lengths.sum()))
    starts = np.concatenate([[0], np.cumsum(lengths)])
    query_docs = np.sort(rng.choice(n_docs, size=n_queries, replace=False))
    query_sentence = rng.integers(0, lengths[query_docs])
    width = len(str(n_docs - 1))

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "qrels").mkdir(parents=True)
    with (tmp / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(n_docs):
            text = " ".join(pool[j] for j in picks[starts[i]:starts[i + 1]])
            fh.write(json.dumps({"_id": f"d{i:0{width}d}", "title": "", "text": text}, ensure_ascii=False) + "\n")
    with (tmp / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for k, (doc, s) in enumerate(zip(query_docs, query_sentence)):
            fh.write(json.dumps({"_id": f"q{k}", "text": pool[picks[starts[doc] + s]]}, ensure_ascii=False) + "\n")
    with (tmp / "qrels" / "train.tsv").open("w", encoding="utf-8") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        fh.writelines(f"q{k}\td{doc:0{width}d}\t1\n" for k, doc in enumerate(query_docs))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # a folder is either complete or absent
    return {"documents": n_docs, "queries": n_queries, "sentences": len(pool), "seed": seed, "out": str(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, help="number of documents")
    parser.add_argument("--out", type=Path, help="output folder (default benchmarks/.cache/scale-N-sSEED)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--queries", type=int, help=f"number of queries (default N/{QUERY_SHARE}, at most "
                                                    f"{MAX_QUERIES})")
    args = parser.parse_args()
    if args.n < 1:
        parser.error("N must be at least 1")
    out = args.out or ROOT / "benchmarks" / ".cache" / f"scale-{args.n}-s{args.seed}"
    print(json.dumps(build(args.n, out.resolve(), args.seed, args.queries)))


if __name__ == "__main__":
    main()
