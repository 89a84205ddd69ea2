"""Train a cross-encoder teacher when none ships: a dataset split's labelled positives against sampled negatives,
plus the team's verdicts.

RocketQA (Qu et al., NAACL 2021, §4.2 and Algorithm 1) denoises a retriever's hard negatives with a cross-encoder
trained on the labelled data, its negatives sampled from the top passages the retriever returns. This is that
cross-encoder: with ``run`` the negatives are drawn (seeded) from that mining run's candidates of each query, as
RocketQA draws them from the dual encoder's top-k; without it they are random documents of the corpus, and a query
whose candidates run short is topped up with random documents. Every person's resolved verdict on the dataset is
training data too (false negatives as positives, true negatives as negatives; unsure carries no evidence and is
left out), and no document a person judged, or any labelled positive of the query, is ever sampled as its negative.
The loss is binary cross-entropy on (query, document) pairs (sentence-transformers' ``BinaryCrossEntropyLoss``,
the loss of its MS MARCO rerankers). The model starts from the bundled all-MiniLM-L6-v2 (a new, randomly initialised
one-logit head) or any local model, and is saved atomically with ``manifest.json``.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from core import labels
from core.devices import resolve_device
from core.encoders import default_model_path, model_fingerprint, resolve_model_path
from core.errors import UserError
from core.files import atomic_dir
from core.jobs import CountProgress, Job, counted
from core.lookups import document_texts, positive_qrels, require_dataset, require_run
from core.train import progress_callback, require_empty_out, training_arguments

if TYPE_CHECKING:
    from core.store import Store
    from core.workspace import Workspace

MANIFEST = "manifest.json"
LOSS = "BinaryCrossEntropyLoss"


@dataclass
class RerankerOptions:
    split: str = "train"
    run: str | None = None  # sample negatives from this run's candidates (RocketQA); None: random documents
    negatives: int = 4  # sampled negatives per labelled positive
    epochs: float = 1.0
    batch_size: int = 32
    max_steps: int | None = None
    seed: int = 0
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    max_length: int = 256  # tokens per (query, document) pair, kept by the saved model (256: the bundled MiniLM's)
    device: str = "auto"  # core.devices.resolve_device: auto, cpu, cuda (every GPU), cuda:N or mps
    base_model: str | None = None  # default: the bundled all-MiniLM-L6-v2

    def validate(self) -> None:
        if self.negatives < 1:
            raise UserError("--negatives must be at least 1")
        if self.epochs <= 0 or self.batch_size < 1:
            raise UserError("--epochs must be positive and --batch-size at least 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise UserError("--max-steps must be at least 1")
        if self.learning_rate <= 0:
            raise UserError("--learning-rate must be positive")
        if self.max_length < 16:
            raise UserError("--max-length must be at least 16 tokens")


@dataclass
class TrainingPairs:
    """(query, document, label) pairs with where each came from; ``counts`` go to the manifest."""

    query_ids: list[str] = field(default_factory=list)
    doc_ids: list[str] = field(default_factory=list)
    labels: list[float] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, pairs: list[tuple[str, str]], label: float) -> None:
        for query_id, doc_id in pairs:
            self.query_ids.append(query_id)
            self.doc_ids.append(doc_id)
            self.labels.append(label)


def _random_documents(rng: random.Random, doc_ids: list[str], k: int, blocked: set[str]) -> list[str]:
    """``k`` distinct documents outside ``blocked`` (fewer when the corpus has no more): a sample large enough that
    at most ``len(blocked)`` of it can be refused."""
    drawn = rng.sample(doc_ids, min(len(doc_ids), k + len(blocked)))
    return [d for d in drawn if d not in blocked][:k]


def training_pairs(store: Store, dataset: str, split: str, run_id: str | None = None, negatives: int = 4,
                   seed: int = 0) -> TrainingPairs:
    """The split's labelled positives, each with ``negatives`` sampled negatives, plus the dataset's resolved
    verdicts (people's only; unsure ignored), in a seeded, reproducible order."""
    require_dataset(store, dataset)
    splits = store.splits(dataset)
    if split not in splits:
        raise UserError(f"dataset {dataset!r} has no split {split!r} (it has {', '.join(splits) or 'no qrels'})")
    labelled = positive_qrels(store.qrels(dataset, split))
    if labelled.empty:
        raise UserError(f"split {split!r} of dataset {dataset!r} has no positives (qrels with grade > 0) to train on")
    candidates: dict[str, list[str]] = {}
    if run_id is not None:
        run = require_run(store, run_id)
        if run["dataset"] != dataset:
            raise UserError(f"run {run_id} mined dataset {run['dataset']!r}, not {dataset!r}")
        frame = store.candidates(run_id, with_signals=False, with_risk=False)
        candidates = frame.groupby("query_id", sort=False)["doc_id"].agg(list).to_dict()

    verdicts = labels.resolved(store, dataset)
    by_label = {label: list(zip(rows["query_id"], rows["doc_id"])) for label, rows in verdicts.groupby("label")}
    known = set(zip(labelled["query_id"], labelled["doc_id"]))
    any_positive = positive_qrels(store.qrels(dataset))
    blocked: dict[str, set[str]] = {}
    for query_id, doc_id in [*zip(any_positive["query_id"], any_positive["doc_id"]),
                             *zip(verdicts["query_id"], verdicts["doc_id"])]:
        blocked.setdefault(query_id, set()).add(doc_id)
    verdict_positives = [p for p in by_label.get("false_negative", []) if p not in known]
    verdict_negatives = [p for p in by_label.get("true_negative", []) if p not in known]

    rng = random.Random(seed)
    doc_ids = [d for chunk in store.iter_documents(dataset) for d in chunk["doc_id"]]
    per_query = labelled.groupby("query_id")["doc_id"].count().sort_index()
    hard: list[tuple[str, str]] = []
    easy: list[tuple[str, str]] = []
    for query_id, positives in per_query.items():
        wanted, block = negatives * int(positives), blocked.get(query_id, set())
        pool = sorted(set(candidates.get(query_id, [])) - block)
        taken = rng.sample(pool, min(wanted, len(pool)))
        hard += [(query_id, d) for d in taken]
        easy += [(query_id, d) for d in _random_documents(rng, doc_ids, wanted - len(taken), block | set(taken))]

    pairs = TrainingPairs()
    pairs.add(sorted(known), 1.0)
    pairs.add(verdict_positives, 1.0)
    pairs.add(hard + easy, 0.0)
    pairs.add(verdict_negatives, 0.0)
    pairs.counts = {"queries": len(per_query), "positives": len(known), "verdict_positives": len(verdict_positives),
                    "run_negatives": len(hard), "random_negatives": len(easy),
                    "verdict_negatives": len(verdict_negatives),
                    "unsure_ignored": len(by_label.get("unsure", [])), "pairs": len(pairs.labels)}
    return pairs


def default_out(workspace: Workspace, dataset: str, options: RerankerOptions) -> Path:
    """Where the app saves a cross-encoder: models/reranker-<dataset>-<split>-s<seed>-<UTC time> in the workspace."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return workspace.models_dir / f"reranker-{dataset}-{options.split}-s{options.seed}-{stamp}"


def trained_rerankers(workspace: Workspace) -> list[dict]:
    """Manifests of the cross-encoders trained into this workspace, newest first, each with its ``path``."""
    found = [{**json.loads(m.read_text(encoding="utf-8")), "path": str(m.parent)}
             for m in workspace.models_dir.glob(f"*/{MANIFEST}")]
    return sorted((m for m in found if m.get("loss") == LOSS), key=lambda m: m["finished"], reverse=True)


def _dataset(store: Store, dataset: str, pairs: TrainingPairs):
    """The pairs as a ``datasets.Dataset`` of (query, document, label) texts, documents as the retriever sees them."""
    from datasets import Dataset

    queries = store.queries(dataset, sorted(set(pairs.query_ids)))
    query_text = dict(zip(queries["query_id"], queries["text"]))
    docs = store.documents(dataset, sorted(set(pairs.doc_ids)))
    doc_text = dict(zip(docs["doc_id"], document_texts(docs)))
    return Dataset.from_dict({"query": [query_text[q] for q in pairs.query_ids],
                              "document": [doc_text[d] for d in pairs.doc_ids], "label": pairs.labels})


def train_reranker_job(store: Store, dataset: str, out: str | Path, options: RerankerOptions) -> Job:
    """``train_reranker`` in a background thread (``Job.result`` is its manifest, with ``path``: where it was
    saved), as ``core.train.train_job``."""
    from core import roles

    roles.require(roles.TRAIN)
    return Job(f"train-reranker:{dataset}:{Path(out).name}",
               lambda stage: {**train_reranker(store, dataset, out, options,
                                                progress=counted(stage, "training step")), "path": str(out)})


def train_reranker(store: Store, dataset: str, out: str | Path, options: RerankerOptions | None = None,
                   progress: CountProgress | None = None) -> dict:
    """Fine-tune a CrossEncoder on ``training_pairs`` and save it with ``manifest.json`` to ``out``; returns the
    manifest. ``out`` appears only once complete: the model is written to a locked temporary sibling and renamed,
    and a killed run's leftover sibling is removed by the next writer (``core.files``). Admins only, once accounts
    exist (core.roles)."""
    from core import audit, roles

    roles.require(roles.TRAIN)
    options = options or RerankerOptions()
    options.validate()
    device = resolve_device(options.device)
    out = require_empty_out(out)
    base_path = resolve_model_path(options.base_model)
    pairs = training_pairs(store, dataset, options.split, options.run, options.negatives, options.seed)
    train_dataset = _dataset(store, dataset, pairs)

    import sentence_transformers
    import torch
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from transformers import set_seed

    set_seed(options.seed)
    started = time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    from safetensors import SafetensorError

    try:
        model = CrossEncoder(str(base_path), num_labels=1, max_length=options.max_length, device=device,
                             local_files_only=True)
    except (OSError, ValueError, SafetensorError) as exc:  # the folder's fault; anything else is a bug
        raise UserError(f"model {base_path}: cannot be loaded as a cross-encoder ({exc})") from None
    with tempfile.TemporaryDirectory(prefix="negspace-reranker-") as scratch, atomic_dir(out) as staged:
        args = training_arguments(
            device, CrossEncoderTrainingArguments, output_dir=str(Path(scratch) / "trainer"),
            num_train_epochs=options.epochs, max_steps=options.max_steps or -1,
            per_device_train_batch_size=options.batch_size, learning_rate=options.learning_rate,
            warmup_steps=options.warmup_ratio, seed=options.seed, data_seed=options.seed, save_strategy="no",
            report_to="none", logging_steps=10, disable_tqdm=progress is not None, dataloader_num_workers=0)
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=train_dataset,
                                      loss=BinaryCrossEntropyLoss(model),
                                      callbacks=[progress_callback(progress)] if progress else None)
        result = trainer.train()
        model.save(str(staged))
        manifest = {
            "dataset": dataset, "split": options.split, "run": options.run,
            "negatives_from": f"run {options.run} (random documents where it ran short)" if options.run
            else "random documents",
            "counts": pairs.counts,
            "base_model": str(base_path) if base_path != default_model_path() else "default",
            "base_fingerprint": model_fingerprint(base_path),
            **{k: v for k, v in asdict(options).items() if k not in {"base_model", "split", "run", "device"}},
            "loss": LOSS, "device": device,
            "steps": int(result.global_step), "train_loss": float(result.training_loss),
            "threads": torch.get_num_threads(), "sentence_transformers": sentence_transformers.__version__,
            "started": started_at, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 1),
        }
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    audit.record(store, "train reranker", dataset, out=str(out), steps=manifest["steps"], pairs=manifest["counts"]["pairs"])
    return manifest
