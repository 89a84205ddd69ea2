"""The built-in demo: a real-text retrieval dataset built from the installed Python standard library.

A newcomer must see real negatives within minutes and with no download, so the demo is made from text every
machine that runs the app already has: docstrings. Each documented function, method or class becomes a document
(title = dotted name, text = signature + docstring); the first sentence of its docstring becomes a query whose
labelled positive is that document. The standard library re-exports objects under several names
(``os.path.join`` is ``posixpath.join``, ``random.choice`` is ``random.Random.choice``) and has near-identical
functions (``operator.add`` / ``operator.__add__``); only one name is labelled, so the others are natural,
verifiable false negatives for the reviewer to find.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.files import atomic_dir
from core.jobs import StageProgress

if TYPE_CHECKING:
    from core.store import Store
    from core.workspace import Workspace

DEMO_DATASET = "stdlib-demo"
DEMO_DEPTH = 50
DEMO_NEGATIVES = 5
MAX_DOCUMENTS = 1200
MAX_DOC_CHARS = 700
MAX_NAMES_PER_OBJECT = 3
MAX_PER_MODULE = 30  # spread the corpus over many modules instead of exhausting the first few
TEST_EVERY = 5  # every 5th query goes to the "test" split so evaluation has held-out queries
# Ordered: when one object has several public names, the first module listed here gives the labelled one.
MODULES = (
    "os.path", "posixpath", "genericpath", "os", "shutil", "glob", "fnmatch", "pathlib", "tempfile",
    "json", "csv", "configparser", "collections", "itertools", "functools", "operator", "heapq", "bisect",
    "copy", "string", "textwrap", "re", "difflib", "unicodedata", "random", "statistics", "math", "cmath",
    "fractions", "datetime", "time", "calendar", "urllib.parse", "base64", "binascii", "zlib", "gzip",
    "hashlib", "hmac", "secrets", "uuid", "html", "shlex", "struct", "io", "codecs", "inspect", "types",
    "contextlib", "dataclasses", "enum", "pprint", "reprlib", "keyword", "ipaddress", "mimetypes",
    "zipfile", "tarfile", "logging", "warnings", "traceback", "ast", "tokenize", "threading", "queue",
    "subprocess", "sys", "builtins", "locale", "platform", "sqlite3", "email.utils",
)
_SIGNATURE_LINE = re.compile(r"^[\w.]+\(.*\)(\s*->.*)?$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


@dataclass(frozen=True)
class Entry:
    """One public name of a documented object."""

    module: str  # the module it was found in, e.g. "os.path"
    name: str  # dotted, e.g. "os.path.join"
    short: str  # what the signature starts with, e.g. "join"
    identity: int  # same object under several names ⇒ same identity
    signature: str
    doc: str


def summary(doc: str) -> str | None:
    """The docstring's first sentence, skipping a leading C-style signature paragraph; None if unusable."""
    paragraphs = [p.strip() for p in doc.split("\n\n") if p.strip()]
    if paragraphs and _SIGNATURE_LINE.match(paragraphs[0].splitlines()[0]):
        paragraphs = paragraphs[1:]
    if not paragraphs:
        return None
    first = " ".join(paragraphs[0].split())
    sentence = _SENTENCE_END.split(first, maxsplit=1)[0].strip()
    if len(sentence.split()) < 4 or not 20 <= len(sentence) <= 200:
        return None
    return sentence


def _signature(obj: object) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""


def _identity(obj: object) -> int:
    """Bound methods of a module-level instance (``random.choice``) are the class's function underneath."""
    return id(getattr(obj, "__func__", obj))


def _entry(module: str, name: str, short: str, obj: object) -> Entry | None:
    doc = inspect.getdoc(obj)
    if not doc or len(doc) < 30:
        return None
    return Entry(module, f"{module}.{name}", short, _identity(obj), _signature(obj), doc)


def _defined_near(cls: type, module_name: str) -> bool:
    """Classes of the module's own package (or its C accelerator); skips builtins a module merely imports."""
    top = module_name.split(".")[0]
    return cls.__module__.lstrip("_").split(".")[0] == top


def harvest(modules: tuple[str, ...] = MODULES) -> Iterator[Entry]:
    """Every documented public function, class and method reachable from ``modules``, in a stable order."""
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for attr in sorted(dir(module)):
            if attr.startswith("_"):
                continue
            obj = getattr(module, attr, None)
            if inspect.isroutine(obj):
                entry = _entry(module_name, attr, attr, obj)
                if entry:
                    yield entry
            elif inspect.isclass(obj) and _defined_near(obj, module_name):
                entry = _entry(module_name, attr, attr, obj)
                if entry:
                    yield entry
                for meth in sorted(vars(obj)):
                    member = getattr(obj, meth, None)
                    if (not meth.startswith("_") or meth in {"__add__", "__contains__", "__len__"}) \
                            and inspect.isroutine(member):
                        entry = _entry(module_name, f"{attr}.{meth}", meth, member)
                        if entry:
                            yield entry


def demo_content(max_documents: int = MAX_DOCUMENTS) -> tuple[list[dict], list[dict], list[tuple[str, str, str]]]:
    """(corpus rows, query rows, qrels as (split, query_id, doc_id)) for the demo dataset."""
    names_per_object: dict[int, int] = {}
    per_module: dict[str, int] = {}
    corpus: list[dict] = []
    first_doc_of: dict[int, str] = {}
    summaries: dict[int, str] = {}
    for entry in harvest():
        if len(corpus) >= max_documents:
            break
        if names_per_object.get(entry.identity, 0) >= MAX_NAMES_PER_OBJECT \
                or per_module.get(entry.module, 0) >= MAX_PER_MODULE:
            continue
        per_module[entry.module] = per_module.get(entry.module, 0) + 1
        names_per_object[entry.identity] = names_per_object.get(entry.identity, 0) + 1
        text = f"{entry.short}{entry.signature}\n\n{entry.doc}" if entry.signature else entry.doc
        corpus.append({"_id": entry.name, "title": entry.name, "text": text[:MAX_DOC_CHARS]})
        if entry.identity not in first_doc_of:
            first_doc_of[entry.identity] = entry.name
            sentence = summary(entry.doc)
            if sentence:
                summaries[entry.identity] = sentence
    queries: list[dict] = []
    qrels: list[tuple[str, str, str]] = []
    seen_text: set[str] = set()
    for identity, sentence in summaries.items():
        if sentence.lower() in seen_text:  # identical summaries of different objects: one query, one positive
            continue
        seen_text.add(sentence.lower())
        query_id = f"q{len(queries) + 1:04d}"
        queries.append({"_id": query_id, "text": sentence})
        split = "test" if len(queries) % TEST_EVERY == 0 else "train"
        qrels.append((split, query_id, first_doc_of[identity]))
    return corpus, queries, qrels


def build_demo_beir(folder: str | Path, max_documents: int = MAX_DOCUMENTS) -> Path:
    """Write the demo as a BEIR folder (corpus.jsonl, queries.jsonl, qrels/train.tsv, qrels/test.tsv)."""
    folder = Path(folder)
    corpus, queries, qrels = demo_content(max_documents)
    with atomic_dir(folder) as tmp:
        for name, rows in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
            (tmp / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                    encoding="utf-8")
        (tmp / "qrels").mkdir()
        for split in ("train", "test"):
            lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t1" for s, q, d in qrels if s == split]
            (tmp / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def demo_needed(store: Store) -> bool:
    """True for an empty workspace, or one whose demo import finished but whose demo run did not."""
    names = [d["name"] for d in store.datasets()]
    return not names or (names == [DEMO_DATASET] and not store.runs(DEMO_DATASET))


def ensure_demo(workspace: Workspace, stage: StageProgress | None = None,
                max_documents: int = MAX_DOCUMENTS) -> str | None:
    """Build, import and mine the demo when the workspace holds no dataset; returns the demo run id, or None.

    Each step is skipped when already done, so a build interrupted half-way (closed tab, killed server)
    resumes where it stopped instead of starting over or leaving a dataset without a run.
    """
    from core.datasets import ingest
    from core.mining import mine
    from core.projection import ensure_projection
    from core.risk import ensure_risk
    from core.rules import RuleSpec

    stage = stage or (lambda msg, frac: None)
    store = workspace.store()
    try:
        names = [d["name"] for d in store.datasets()]
        if names and DEMO_DATASET not in names:
            return None  # the user's own workspace: never add the demo to it
        if DEMO_DATASET not in names:
            stage("collecting standard-library docstrings", 0.02)
            folder = build_demo_beir(workspace.root / "demo-source", max_documents)
            stage("importing the demo dataset", 0.08)
            ingest(store, folder, DEMO_DATASET)
        runs = store.runs(DEMO_DATASET)
        if runs:
            run_id = runs[-1]["run_id"]  # the oldest: the demo's own run
        else:
            run_id = mine(store, workspace, DEMO_DATASET, "train", depth=DEMO_DEPTH,
                          spec=RuleSpec("top", num_negatives=DEMO_NEGATIVES),
                          stage=lambda msg, frac: stage(f"mining: {msg}", 0.1 + 0.75 * frac)).run_id
        stage("scoring false-negative risk", 0.86)
        ensure_risk(store, workspace, run_id)
        stage("projecting embeddings (PCA)", 0.92)
        ensure_projection(store, workspace, run_id, method="pca")
        stage("demo ready", 1.0)
        return run_id
    finally:
        store.close()
