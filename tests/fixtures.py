"""Small real-text datasets built in code, so tests never depend on files outside the repository."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Six topics; each query has one labelled positive and at least one near-duplicate or paraphrase that nobody
# labelled (a planted false negative), plus unrelated documents.
DOCS = {
    "py-join": ("os.path.join", "Join one or more path components intelligently, inserting a slash between them."),
    "py-join-dup": ("posixpath.join", "Join one or more path segments intelligently, inserting a '/' between them."),
    "py-split": ("os.path.split", "Split a pathname into a pair (head, tail) where tail is the last component."),
    "py-sort": ("sorted", "Return a new list containing all items from the iterable in ascending order."),
    "py-sort-dup": ("list.sort", "Sort the list in place in ascending order; the sort is stable."),
    "py-rev": ("reversed", "Return a reverse iterator over the values of the given sequence."),
    "heat-1": ("Heat conduction in composite slabs",
               "Transient heat conduction through a slab made of two layers with different conductivities."),
    "heat-2": ("Thermal conduction in layered walls",
               "Heat flow through composite walls of several layers is computed with a one-dimensional model."),
    "heat-3": ("Radiative cooling of hot plates", "Radiation dominates cooling of plates above 1000 K."),
    "bio-1": ("Mitochondria and ATP", "Mitochondria produce most of the cell's ATP by oxidative phosphorylation."),
    "bio-2": ("Cellular respiration", "Oxidative phosphorylation in the mitochondrion synthesises ATP for the cell."),
    "bio-3": ("Photosynthesis", "Chloroplasts capture light energy to fix carbon dioxide into sugars."),
    "geo-1": ("Paris", "Paris is the capital and largest city of France, on the river Seine."),
    "geo-2": ("French capital", "The capital of France is Paris, its most populous city."),
    "geo-3": ("Berlin", "Berlin is the capital of Germany and its largest city."),
    "geo-4": ("Madrid", "Madrid is the capital of Spain, in the centre of the Iberian peninsula."),
    "food-1": ("Sourdough bread", "Sourdough is leavened with a culture of wild yeast and lactic acid bacteria."),
    "food-2": ("Baking with natural leaven", "Bread rises with a starter of wild yeasts and lactobacilli."),
    "food-3": ("Pasta", "Pasta is made from durum wheat semolina and water, then dried."),
    "sport-1": ("Marathon", "The marathon is a long-distance race of 42.195 kilometres."),
    "sport-2": ("Road running", "A full marathon covers 42.195 km on roads."),
    "sport-3": ("Sprint", "The 100 metres sprint is the shortest common outdoor running race."),
    "misc-1": ("Volcanoes", "Volcanoes erupt molten rock called magma from beneath the crust."),
    "misc-2": ("Tides", "Tides are caused by the gravitational pull of the moon and the sun."),
    "misc-3": ("Unicode ✓", "Text with ünïcödé, emoji 🙂 and 漢字 must survive import and export."),
    "misc-4": ("", "A document without a title about jazz improvisation and swing rhythm."),
    "misc-5": ("Markup", "<script>alert('x')</script> **not bold** and a [link](http://example.com)."),
    "misc-6": ("Glaciers", "Glaciers carve U-shaped valleys as they move slowly downhill."),
    "misc-7": ("Chess", "Chess is a board game for two players on an eight by eight grid."),
    "misc-8": ("Coffee", "Coffee beans are roasted seeds of the Coffea plant."),
}
QUERIES = {
    "q1": "how do I join path components",
    "q2": "sort a list in ascending order",
    "q3": "heat conduction through composite slabs",
    "q4": "which organelle makes ATP",
    "q5": "what is the capital of France",
    "q6": "bread leavened with wild yeast",
    "q7": "how long is a marathon",
    "q8": "what causes tides",
}
TRAIN = {"q1": {"py-join": 1}, "q2": {"py-sort": 1}, "q3": {"heat-1": 2, "heat-2": 1}, "q4": {"bio-1": 1},
         "q5": {"geo-1": 1}, "q6": {"food-1": 1}}
TEST = {"q7": {"sport-1": 1, "sport-2": 2}, "q8": {"misc-2": 1}}
PLANTED_FALSE_NEGATIVES = {("q1", "py-join-dup"), ("q2", "py-sort-dup"), ("q4", "bio-2"), ("q5", "geo-2"),
                           ("q6", "food-2")}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def write_qrels(path: Path, qrels: dict[str, dict[str, int]]) -> None:
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, ds in qrels.items() for d, s in ds.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def make_beir(folder: Path) -> Path:
    """A tiny BEIR folder: graded qrels, two splits, several positives per query, an empty title, unicode."""
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "corpus.jsonl", [{"_id": k, "title": t, "text": x} for k, (t, x) in DOCS.items()])
    write_jsonl(folder / "queries.jsonl", [{"_id": k, "text": v} for k, v in QUERIES.items()])
    (folder / "qrels").mkdir(exist_ok=True)
    write_qrels(folder / "qrels" / "train.tsv", TRAIN)
    write_qrels(folder / "qrels" / "test.tsv", TEST)
    return folder


def triplet_rows() -> list[dict]:
    rows = []
    for q, positives in TRAIN.items():
        for d in positives:
            rows.append({"anchor": QUERIES[q], "positive": DOCS[d][1], "negative": DOCS["misc-7"][1]})
    return rows


@contextmanager
def reaped(procs: list) -> Iterator[list]:
    """Child processes the block starts: on leaving, join them, and kill any still alive, so a failed test
    leaves none behind."""
    try:
        yield procs
        for proc in procs:
            proc.join(timeout=60)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()


def make_synthetic_beir(folder: Path, n_docs: int, n_queries: int, seed: int = 0) -> Path:
    """A BEIR folder of ``n_docs`` documents recombined from the tiny fixture's sentences' words, each query a
    stretch of one document's words with that document its positive: enough documents for several encoding and
    writing batches, without ../shared."""
    import random

    rng = random.Random(seed)
    words = sorted({w.strip(".,;:()'\"").lower() for _, text in DOCS.values() for w in text.split()} - {""})
    docs = {f"d{i}": " ".join(rng.choices(words, k=rng.randint(8, 30))) for i in range(n_docs)}
    picked = rng.sample(sorted(docs), n_queries)
    queries = {f"q{i}": " ".join(docs[d].split()[:6]) for i, d in enumerate(picked)}
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "corpus.jsonl", [{"_id": k, "title": "", "text": v} for k, v in docs.items()])
    write_jsonl(folder / "queries.jsonl", [{"_id": k, "text": v} for k, v in queries.items()])
    (folder / "qrels").mkdir(exist_ok=True)
    write_qrels(folder / "qrels" / "train.tsv", {f"q{i}": {d: 1} for i, d in enumerate(picked)})
    return folder
