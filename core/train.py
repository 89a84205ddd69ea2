"""Fine-tune a small retriever on a run's raw or curated negatives with sentence-transformers.

Rows are (query, positive, negative) triplets or (query, positive, negative_1..k) n-tuples, batched with
``NO_DUPLICATES`` so a text never meets itself in a batch.
Contrastive losses treat every other document in the batch as a negative, so removing a judged false
negative from the query's own negatives (what ``selection`` does) is not enough: the same document can arrive as
another row's positive or negative. The loss subclasses here therefore receive each row's index as its label and
set the logits of a query's known positives and judged false negatives to −inf before the softmax, matched by
document text, so a re-uploaded copy under another id is masked as well.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from core.devices import check_precision, choose_precision, resolve_device
from core.encoders import cpu_bf16_pays, default_model_path, model_fingerprint, resolve_model_path, text_key
from core.errors import UserError
from core.jobs import CountProgress, Job, counted
from core.lookups import document_texts
from core.selection import TrainingData, select

if TYPE_CHECKING:
    from core.store import Store
    from core.workspace import Workspace

LOSSES = ("mnrl", "cmnrl", "gist")
MANIFEST = "negspace_training.json"


# -- false-negative masking ------------------------------------------------------------------------------------------
class FalseNegativeMask:
    """Which (anchor row, candidate document) pairs of a batch must not count as negatives.

    Built once from the training rows; ``matrix`` turns a batch's row indices (the ``label`` column) into a boolean
    (batch, batch × columns) mask laid out like the losses' ``docs_all = cat(positives, negatives)``.
    """

    def __init__(self, row_queries: Sequence[str], row_docs: Sequence[Sequence[bytes]],
                 blocked: dict[str, set[bytes]]):
        self.row_queries, self.row_docs, self.blocked = list(row_queries), list(row_docs), blocked

    def matrix(self, labels, columns: int):
        import torch

        rows = [int(i) for i in labels.tolist()]
        size = len(rows)
        mask = torch.zeros(size, size * columns, dtype=torch.bool)
        for i, row_i in enumerate(rows):
            blocked = self.blocked.get(self.row_queries[row_i])
            if not blocked:
                continue
            for c in range(columns):
                for j, row_j in enumerate(rows):
                    if self.row_docs[row_j][c] in blocked and not (c == 0 and i == j):
                        mask[i, c * size + j] = True
        return mask.to(labels.device)


class MaskedSimilarity:
    """cos_sim that sets the current batch's masked (query, document) entries to −inf.

    MNRL scores all queries against all documents in one call; CMNRL in consecutive chunks of queries, so the
    rows of the mask are consumed in order and wrap around for a second pass.
    """

    __name__ = "cos_sim"

    def __init__(self) -> None:
        self.mask = None
        self.row = 0

    @contextmanager
    def batch(self, mask) -> Iterator[None]:
        self.mask, self.row = mask, 0
        try:
            yield
        finally:
            self.mask = None

    def __call__(self, a, b):
        from sentence_transformers.util import cos_sim

        sim = cos_sim(a, b)
        if self.mask is None:
            return sim
        if b.shape[0] != self.mask.shape[1]:
            raise RuntimeError(f"false-negative mask covers {self.mask.shape[1]} documents, the loss scored "
                               f"{b.shape[0]}: this sentence-transformers version scores differently")
        rows = self.mask[self.row:self.row + a.shape[0]]
        self.row = (self.row + a.shape[0]) % self.mask.shape[0]
        return sim.masked_fill(rows, float("-inf"))


def _losses():
    """Loss classes, built on first use so importing core.train does not import torch."""
    from sentence_transformers.sentence_transformer.losses import (CachedMultipleNegativesRankingLoss,
                                                                   GISTEmbedLoss, MultipleNegativesRankingLoss)

    class MaskedMNRL(MultipleNegativesRankingLoss):
        """MultipleNegativesRankingLoss that never scores a query's masked documents as negatives."""

        def __init__(self, model, mask: FalseNegativeMask, **kwargs):
            super().__init__(model, similarity_fct=MaskedSimilarity(), **kwargs)
            self.fn_mask = mask

        def forward(self, sentence_features, labels):
            sentence_features = list(sentence_features)
            with self.similarity_fct.batch(self.fn_mask.matrix(labels, len(sentence_features) - 1)):
                return super().forward(sentence_features, labels)

    class MaskedCMNRL(CachedMultipleNegativesRankingLoss):
        """CachedMultipleNegativesRankingLoss (GradCache) with the same mask, applied at every loss pass."""

        def __init__(self, model, mask: FalseNegativeMask, **kwargs):
            super().__init__(model, similarity_fct=MaskedSimilarity(), **kwargs)
            self.fn_mask = mask

        def calculate_loss(self, reps, labels=None, *, with_backward: bool = False):
            with self.similarity_fct.batch(self.fn_mask.matrix(labels, len(reps) - 1)):
                return super().calculate_loss(reps, labels, with_backward=with_backward)

    class MaskedGIST(GISTEmbedLoss):
        """GISTEmbedLoss whose guide-based filtering is joined by the human verdicts.

        GIST scores the anchor against each candidate column with ``sim_matrix(anchor, column)``; the first call
        is always (anchor, positive). Matrices of the anchor against a document column get that column's block
        of the mask; anchor-anchor, positive-positive and the guide's matrices are left to GIST.
        """

        def __init__(self, model, guide, mask: FalseNegativeMask, **kwargs):
            super().__init__(model, guide, **kwargs)
            self.fn_mask = mask
            self._mask = None
            self._anchor = None
            self._columns: list = []

        def forward(self, sentence_features, labels):
            sentence_features = list(sentence_features)
            self._mask, self._anchor, self._columns = self.fn_mask.matrix(labels, len(sentence_features) - 1), None, []
            try:
                return super().forward(sentence_features, labels)
            finally:
                self._mask, self._anchor, self._columns = None, None, []

        def sim_matrix(self, embed1, embed2):
            sim = super().sim_matrix(embed1, embed2)
            if self._mask is None:
                return sim
            if self._anchor is None:
                self._anchor = embed1
            if embed1 is not self._anchor or embed2 is self._anchor:
                return sim
            if not any(embed2 is c for c in self._columns):
                self._columns.append(embed2)
            column = next(i for i, c in enumerate(self._columns) if c is embed2)
            size = sim.shape[0]
            return sim.masked_fill(self._mask[:, column * size:(column + 1) * size], float("-inf"))

    return MaskedMNRL, MaskedCMNRL, MaskedGIST


def make_loss(name: str, model, mask: FalseNegativeMask, guide=None, **kwargs):
    """The chosen masked loss (``kwargs`` go to the sentence-transformers loss); ``gist`` needs the frozen guide
    model (the base model before training)."""
    mnrl, cmnrl, gist = _losses()
    if name == "mnrl":
        return mnrl(model, mask, **kwargs)
    if name == "cmnrl":
        return cmnrl(model, mask, **kwargs)
    if name == "gist":
        if guide is None:
            raise ValueError("gist needs a guide model")
        return gist(model, guide, mask, **kwargs)
    raise UserError(f"unknown loss {name!r} (use {', '.join(LOSSES)})")


# -- training rows ---------------------------------------------------------------------------------------------------
ROW_LAYOUTS = ("triplet", "ntuple")


@dataclass
class Rows:
    """Training rows as columns: anchor, positive and one or more negative columns (``negatives[c][row]``)."""

    anchor: list[str] = field(default_factory=list)
    positive: list[str] = field(default_factory=list)
    negatives: list[list[str]] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    doc_keys: list[tuple[bytes, ...]] = field(default_factory=list)  # positive, then each negative column
    filled: int = 0  # rows that got a random negative because their query ran out of hard ones

    def dataset(self):
        from datasets import Dataset

        names = ["negative"] if len(self.negatives) == 1 else [f"negative_{c + 1}" for c in range(len(self.negatives))]
        return Dataset.from_dict({"anchor": self.anchor, "positive": self.positive,
                                  **dict(zip(names, self.negatives)), "label": list(range(len(self.anchor)))})


def build_rows(training: TrainingData, masked_doc_texts: dict[str, str], seed: int = 0,
               layout: str = "triplet") -> tuple[Rows, FalseNegativeMask]:
    """Rows from each (query, positive): ``triplet`` = one row per kept negative; ``ntuple`` = one row carrying
    all k negatives (k = the most any query kept).

    n-tuple rows put every hard negative of a query in the same batch as its positive, and give raw and curated
    data of one run the same rows in the same order, so a comparison of the two differs only in the negatives.
    A query short of negatives is topped up with random documents of the training data that are neither its
    positives nor judged false negatives (in-batch negatives would play that role anyway).
    """
    if layout not in ROW_LAYOUTS:
        raise UserError(f"unknown row layout {layout!r} (use {' or '.join(ROW_LAYOUTS)})")
    rng = random.Random(seed)
    texts = {d: training.doc(d) for e in training.examples for d in (*e.positives, *e.negatives)}
    keys = {d: text_key(t, None) for d, t in {**texts, **masked_doc_texts}.items()}
    pool = sorted(texts)
    width = max((len(e.negatives) for e in training.examples), default=0) if layout == "ntuple" else 1
    rows = Rows(negatives=[[] for _ in range(max(width, 1))])
    blocked: dict[str, set[bytes]] = {}
    for example in training.examples:
        block = {keys[d] for d in (*example.positives, *example.masked) if d in keys}
        blocked[example.query_id] = block
        negatives = list(example.negatives)
        wanted = len(rows.negatives) if layout == "ntuple" else 1
        if len(negatives) < wanted:
            taken = {keys[d] for d in negatives}
            spare = [d for d in pool if keys[d] not in block and keys[d] not in taken]
            if len(spare) < wanted - len(negatives):
                continue
            negatives += rng.sample(spare, wanted - len(negatives))
            rows.filled += len(example.positives)
        groups = [negatives] if layout == "ntuple" else [[n] for n in negatives]
        for positive in example.positives:
            for group in groups:
                rows.anchor.append(training.query_text[example.query_id])
                rows.positive.append(texts[positive])
                for column, negative in zip(rows.negatives, group):
                    column.append(texts[negative])
                rows.queries.append(example.query_id)
                rows.doc_keys.append((keys[positive], *(keys[n] for n in group)))
    return rows, FalseNegativeMask(rows.queries, rows.doc_keys, blocked)


def masked_texts(store: Store, training: TrainingData) -> dict[str, str]:
    """Texts of the judged false negatives, which selection does not load (they are in no example)."""
    ids = sorted({d for e in training.examples for d in e.masked})
    if not ids:
        return {}
    docs = store.documents(training.run["dataset"], ids)
    return dict(zip(docs["doc_id"], document_texts(docs)))


# -- training --------------------------------------------------------------------------------------------------------
@dataclass
class TrainOptions:
    data: str = "raw"
    loss: str = "mnrl"
    row_layout: str = "triplet"  # or ntuple: one row per (query, positive) with all its negatives
    epochs: float = 1.0
    batch_size: int = 32
    max_steps: int | None = None
    seed: int = 0
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    max_seq_length: int | None = None  # tokens while training; the saved model keeps the base model's length
    precision: str = "fp32"  # bf16 or fp16: mixed precision on the device; auto: core.devices.choose_precision
    device: str = "auto"  # core.devices.resolve_device: auto, cpu, cuda (every GPU), cuda:N or mps
    unsure: str = "drop"
    eval_split: str | None = "test"  # checked for leakage
    exclude_leaks: bool = False
    base_model: str | None = None  # default: the bundled all-MiniLM-L6-v2

    def validate(self) -> None:
        if self.loss not in LOSSES:
            raise UserError(f"unknown loss {self.loss!r} (use {', '.join(LOSSES)})")
        if self.row_layout not in ROW_LAYOUTS:
            raise UserError(f"unknown row layout {self.row_layout!r} (use {' or '.join(ROW_LAYOUTS)})")
        if self.epochs <= 0 or self.batch_size < 2:
            raise UserError("--epochs must be positive and --batch-size at least 2 (in-batch negatives)")
        if self.max_steps is not None and self.max_steps < 1:
            raise UserError("--max-steps must be at least 1")
        if self.max_seq_length is not None and self.max_seq_length < 8:
            raise UserError("--max-seq-length must be at least 8")


def default_out(workspace: Workspace, run_id: str, options: TrainOptions) -> Path:
    """Where the app saves a model: models/<run>-<data>-<loss>-s<seed>-<UTC time> inside the workspace."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return workspace.models_dir / f"{run_id}-{options.data}-{options.loss}-s{options.seed}-{stamp}"


def trained_models(workspace: Workspace) -> list[dict]:
    """Manifests of the models trained into this workspace, newest first, each with its ``path``."""
    found = []
    for manifest in workspace.models_dir.glob(f"*/{MANIFEST}"):
        found.append({**json.loads(manifest.read_text(encoding="utf-8")), "path": str(manifest.parent)})
    return sorted(found, key=lambda m: m["finished"], reverse=True)


# -- time estimate ---------------------------------------------------------------------------------------------------
# Forward passes a training step costs per text, counting a backward pass as two forwards (the usual 2N vs 6N
# FLOPs per token of a forward against a forward + backward): Cached MNRL embeds each mini-batch twice (GradCache),
# GIST also embeds the batch with its guide model.
FORWARD_PASSES = {"mnrl": 3.0, "cmnrl": 4.0, "gist": 4.0}


@dataclass(frozen=True)
class TrainEstimate:
    """What a training with these options would run and roughly how long, known before it is started: the Train
    page shows it beside the button so nobody starts an hour of CPU training by surprise."""

    rows: int
    steps: int
    seconds_per_step: float | None  # None: nothing was timed on this device in this workspace yet
    basis: str  # where seconds_per_step comes from, in words (or why there is none)

    @property
    def seconds(self) -> float | None:
        return None if self.seconds_per_step is None else self.steps * self.seconds_per_step

    def describe(self) -> str:
        """One sentence for the page: the size of the job, then its time, marked as an estimate with its basis."""
        size = f"{self.steps:,} steps on {self.rows:,} training rows"
        if self.seconds is None:
            return f"{size}; no time estimate: {self.basis}."
        seconds = self.seconds
        took = (f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 90 * 60
                else f"{seconds / 3600:.1f} h")
        return (f"About {took} for {size} ({self.seconds_per_step:.2f} s per step; an estimate, {self.basis}; loading "
                "and saving the model come on top).")


def estimate(store: Store, workspace: Workspace, training: TrainingData, options: TrainOptions) -> TrainEstimate:
    """Steps × seconds per step for ``train(…, options)`` on ``training`` (what ``select`` returns for the run).

    Rows are counted as ``build_rows`` makes them (a query with no negative left gets one random one; a query that
    cannot be topped up is counted anyway); steps as the trainer counts them (``max_steps``, else epochs × batches).
    Seconds per step are measured, never guessed: the newest model trained in this workspace on the same device
    with the same loss, rows, batch size and length gives its own seconds per step; otherwise the newest mining
    run of the dataset on that device gives its encoding speed (in fp32 terms when it encoded under bf16 and
    training will not: its stored ``bf16_speedup``), times the texts a step embeds and ``FORWARD_PASSES``; otherwise
    there is no estimate yet. Training batches are not sorted by length as encoding is, so the first training
    still tends to run longer than this (SciFact, bf16 machine: 11 s per step estimated, 17 measured).
    """
    device = resolve_device(options.device)
    width = 1 if options.row_layout == "triplet" else max((len(e.negatives) for e in training.examples), default=1)
    rows = sum(len(e.positives) * (max(len(e.negatives), 1) if options.row_layout == "triplet" else 1)
               for e in training.examples)
    batch = max(1, min(options.batch_size, rows))
    steps = options.max_steps or max(1, math.ceil(options.epochs * math.ceil(rows / batch)))
    same = ("loss", "row_layout", "batch_size", "max_seq_length")
    for manifest in trained_models(workspace):
        if manifest.get("device") == device and manifest.get("steps") and all(
                manifest.get(key) == getattr(options, key) for key in same):
            return TrainEstimate(rows, steps, manifest["seconds"] / manifest["steps"],
                                 f"measured: the last training with these settings on {device} "
                                 f"({manifest['finished'][:16].replace('T', ' ')} UTC) took "
                                 f"{manifest['seconds'] / manifest['steps']:.2f} s per step")
    for run in store.runs(training.run["dataset"]):
        stats = run.get("stats") or {}
        if str(stats.get("device", "")).split(":")[0] == device.split(":")[0] and stats.get("encoded") and \
                stats.get("encode_seconds"):
            per_text = stats["encode_seconds"] / stats["encoded"]
            texts = batch * (2 + width)  # query, positive and the row's negatives
            # a run encoded under bf16 autocast ran its measured speed-up faster than fp32 training will
            converted = stats.get("precision") == "bf16" and options.precision not in ("bf16", "auto")
            slower = float(stats.get("bf16_speedup") or 1.0) if converted else 1.0
            return TrainEstimate(rows, steps, per_text * slower * texts * FORWARD_PASSES[options.loss],
                                 f"from the encoding speed of mining run {run['run_id']} on {device} "
                                 f"({1 / per_text:,.0f} texts/s"
                                 + (f" in bf16, {1 / (per_text * slower):,.0f} in {options.precision}"
                                    if slower != 1.0 else "")
                                 + f") × {texts} texts per step × {FORWARD_PASSES[options.loss]:g} for forward and "
                                 "backward")
    return TrainEstimate(rows, steps, None, f"nothing was timed on {device} in this workspace yet (the first "
                                            "training or mining on it gives the speed)")


def require_empty_out(out: str | Path) -> Path:
    """``out`` resolved, or a UserError when it holds anything: a trained model never replaces other files."""
    out = Path(out).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not empty; choose another --out or remove it")
    return out


def training_arguments(device: str, arguments: type | None = None, **kwargs):
    """The trainer's arguments on ``device`` (``arguments``: the sentence-transformers arguments class, by default
    the bi-encoder's; the cross-encoder trainer passes its own). Left alone, the trainer takes cuda:0 and spreads a
    batch over every visible GPU (DataParallel), which is what plain ``cuda`` asks for; ``cuda:N`` is pinned to that
    one GPU."""
    from functools import cached_property

    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    arguments = arguments or SentenceTransformerTrainingArguments
    if not device.startswith("cuda:"):
        return arguments(use_cpu=device == "cpu", **kwargs)

    class PinnedArguments(arguments):
        @cached_property
        def _setup_devices(self):
            import torch

            _ = super()._setup_devices  # accelerate's state, set up as usual
            torch.cuda.set_device(device)
            self._n_gpu = 1
            return torch.device(device)

    return PinnedArguments(use_cpu=False, **kwargs)


def progress_callback(progress: CountProgress):
    """Steps done of the trainer's total, told at the start too (step 0 of n: the model is loaded and the first
    step, which can take tens of seconds on a CPU, is under way) and after every step."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            progress(0, state.max_steps)

        def on_step_end(self, args, state, control, **kwargs):
            progress(state.global_step, state.max_steps)

    return Progress()


def train_job(store: Store, run_id: str, out: str | Path, options: TrainOptions) -> Job:
    """``train`` in a background thread (``Job.result`` is its manifest, with ``path``: where it was saved): minutes
    on a CPU, which a click on the page would otherwise stop half-way. The role is checked here, as the job's thread
    has no signed-in account."""
    from core import roles

    roles.require(roles.TRAIN)
    return Job(f"train:{run_id}:{Path(out).name}",
               lambda stage: {**train(store, run_id, out, options, progress=counted(stage, "training step")),
                               "path": str(out)})


def train(store: Store, run_id: str, out: str | Path, options: TrainOptions | None = None,
          progress: CountProgress | None = None, on_leakage: Callable[[object], None] | None = None) -> dict:
    """Train on a run's raw or curated data, save the model and its manifest to ``out``; returns the manifest.

    ``on_leakage`` receives the leakage report before training starts (the CLI prints it, the app shows it).
    Admins only, once accounts exist (core.roles).
    """
    from core import audit, leakage, roles

    roles.require(roles.TRAIN)

    options = options or TrainOptions()
    options.validate()
    device = resolve_device(options.device)
    check_precision(options.precision, device)
    out = require_empty_out(out)
    base_path = resolve_model_path(options.base_model)
    training = select(store, run_id, options.data, options.unsure)
    report = None
    if options.eval_split and options.eval_split != training.run["split"]:
        report = leakage.check(store, training, options.eval_split)
        if options.exclude_leaks and report.any:
            training = leakage.exclude(training, report)
        if on_leakage is not None:
            on_leakage(report)
    rows, mask = build_rows(training, masked_texts(store, training), options.seed, options.row_layout)
    if len(rows.anchor) < 2:
        raise UserError(f"run {run_id} yields {len(rows.anchor)} training rows ({options.data}); need at least 2")

    import torch
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    from transformers import set_seed

    precision = choose_precision(options.precision, device, lambda: cpu_bf16_pays(base_path))
    set_seed(options.seed)
    started = time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    model = SentenceTransformer(str(base_path), device=device, local_files_only=True)
    inference_length = model.max_seq_length
    if options.max_seq_length:
        model.max_seq_length = options.max_seq_length
    guide = SentenceTransformer(str(base_path), device=device, local_files_only=True) \
        if options.loss == "gist" else None
    loss = make_loss(options.loss, model, mask, guide,
                     **({"mini_batch_size": min(16, options.batch_size)} if options.loss == "cmnrl" else {}))
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".training-", dir=out.parent) as scratch:
        args = training_arguments(
            device, output_dir=str(Path(scratch) / "trainer"), num_train_epochs=options.epochs,
            max_steps=options.max_steps or -1, per_device_train_batch_size=min(options.batch_size, len(rows.anchor)),
            learning_rate=options.learning_rate, warmup_steps=options.warmup_ratio, seed=options.seed,
            data_seed=options.seed, batch_sampler=BatchSamplers.NO_DUPLICATES, bf16=precision == "bf16",
            fp16=precision == "fp16", save_strategy="no", report_to="none", logging_steps=10,
            disable_tqdm=progress is not None, dataloader_num_workers=0)
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=rows.dataset(), loss=loss,
                                             callbacks=[progress_callback(progress)] if progress else None)
        result = trainer.train()
        model.max_seq_length = inference_length
        staged = Path(scratch) / "model"
        model.save(str(staged))
        seconds = round(time.perf_counter() - started, 1)
        manifest = {
            "base_model": str(base_path) if base_path != default_model_path() else "default",
            "base_fingerprint": model_fingerprint(base_path), "run": run_id, "dataset": training.run["dataset"],
            "split": training.run["split"], **{k: v for k, v in asdict(options).items() if k != "base_model"},
            "device": device, "precision": precision,
            "steps": int(result.global_step), "train_loss": float(result.training_loss), "rows": len(rows.anchor),
            "queries": len(training.examples), "rows_with_random_negative": rows.filled,
            "masked_false_negatives": sum(len(e.masked) for e in training.examples),
            "leakage": report.to_dict() if report else None,
            "max_seq_length_inference": inference_length, "threads": torch.get_num_threads(),
            "started": started_at, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": seconds,
        }
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        if out.exists():
            out.rmdir()
        shutil.move(str(staged), str(out))
    audit.record(store, "train", run_id, out=str(out), data=manifest.get("data"), steps=manifest["steps"])
    return manifest
