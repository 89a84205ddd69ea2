"""``--engine ray``: encode on a Ray cluster by filling the workspace's embedding cache.

Ray only computes vectors. The driver finds the texts the cache lacks, Ray Data streams them through a pool of
actors that each load the model once (same folder, precision and prompt as the driver's ``Encoder``), and the
driver writes the returned batches into the cache, up to ``CACHE_BATCH`` texts per transaction: one process
writes the cache, and only whole batches. Afterwards ``Encoder.encode`` finds every vector cached, so search,
rules, risk and the app never know Ray was involved. Ray is imported only inside these functions, so the local
engine never needs it.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Iterable
from contextlib import redirect_stdout
from itertools import islice
from pathlib import Path

import numpy as np

from core.encoders import CACHE_BATCH, CHUNK, Encoder, text_key
from core.errors import UserError
from core.jobs import CountProgress

RAY_MISSING = "--engine ray needs Ray: pip install -r requirements-ray.txt"
# The job ships this package to the workers, which need only its dependencies and the model folder at the same path.
RUNTIME_ENV = {"py_modules": [str(Path(__file__).resolve().parent)]}
FILL_CHUNK = 50_000  # texts looked up in the cache and shipped to Ray at a time
THREADS_PER_ACTOR = 2  # torch threads per CPU actor: fewer, larger actors each hold one copy of the model


def _import_ray():
    try:
        import ray
        import ray.data  # the engine needs ray[data], not bare ray
    except ImportError:
        raise UserError(RAY_MISSING) from None
    return ray


def connect(num_cpus: int | None = None) -> None:
    """Join the cluster RAY_ADDRESS names, or start a local one (of ``num_cpus`` CPUs when given).

    Ray's console output stays off stdout, where the CLI writes JSON: workers' prints are not forwarded (their
    failures still come back as exceptions) and Ray logs warnings only, on stderr. A Ray the caller already
    initialised is used as it is; it must ship this package itself (``runtime_env=RUNTIME_ENV``).
    """
    ray = _import_ray()
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        _probe(address)
    try:
        ray.init(address=address, num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING, runtime_env=RUNTIME_ENV)
    except (ConnectionError, ValueError) as exc:  # no cluster at "auto", a malformed address
        raise UserError(f"RAY_ADDRESS={address}: cannot connect to a Ray cluster ({exc})") from None
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def _probe(address: str) -> None:
    """Refuse a host:port nothing listens on: Ray itself retries such an address for many minutes."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "local" or malformed: ray.init resolves or refuses it
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise UserError(f"RAY_ADDRESS={address}: no Ray cluster answers there ({exc.strerror or exc})") from None


def pool_size(cpus: float, gpus: float,
              threads_per_actor: int = THREADS_PER_ACTOR) -> tuple[int, int | None, dict[str, float]]:
    """(actors, torch threads per actor (None on GPUs), Ray resources per actor) for a cluster's totals.

    One actor per GPU; on CPUs as many as fit while one CPU slot stays free, because Ray Data stalls when its
    actors hold every CPU slot and its own tasks cannot be scheduled.
    """
    if gpus >= 1:
        return int(gpus), None, {"num_gpus": 1}
    free = int(cpus) - 1
    if free < 1:  # a one-CPU cluster: the actor asks for half the slot, so Ray Data's tasks still fit beside it
        return 1, 1, {"num_cpus": cpus / 2}
    threads = max(1, min(threads_per_actor, free))
    return free // threads, threads, {"num_cpus": threads}


class _EncodeBatches:
    """A Ray actor: loads the model once, then turns {key, text} batches into {key, vec} batches.

    ``model`` is the driver encoder's (path, fingerprint, precision, bf16 cosine, dim), so the actor encodes
    exactly as the driver would; it has no cache folder, because only the driver writes the cache.
    """

    def __init__(self, model: tuple, prompt: str | None, threads: int | None):
        if threads is not None:  # this actor's share of the node, not every core of it
            os.environ["RAYON_NUM_THREADS"] = str(threads)  # read when the fast tokenizer first runs
        self.encoder = Encoder(*model, device="cpu" if threads is not None else "cuda")  # cuda: the GPU Ray gave it
        self.encoder.model  # noqa: B018 - load now, once per actor, not inside the first batch
        if threads is not None:
            import torch

            torch.set_num_threads(threads)  # loading set it to every core of the node
        self.prompt = prompt

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        # a progress callback turns the encoder's console bar off: nobody reads a worker's stderr
        vectors = self.encoder.encode(texts, self.prompt, progress=lambda done, total: None)
        return {"key": batch["key"], "vec": vectors}


def fill_cache(encoder: Encoder, texts: Iterable[str], prompt: str | None,
               progress: CountProgress | None = None) -> int:
    """Encode on Ray every text (under ``prompt``) that ``encoder.cache`` lacks; returns how many were encoded.

    ``texts`` is read once, ``FILL_CHUNK`` at a time: each chunk's missing texts go to Ray's object store before
    the next is read, so a streamed corpus is never held whole in this process.
    """
    ray = _import_ray()
    cache = encoder.cache
    if cache is None:
        raise ValueError("fill_cache needs an encoder with a cache folder: the cache is where Ray's vectors go")
    parts, seen, total, source = [], set(), 0, iter(texts)
    while chunk := list(islice(source, FILL_CHUNK)):
        keyed = {key: t for t in chunk if (key := text_key(t, prompt)) not in seen}
        seen.update(keyed)
        known = cache.get(list(keyed))
        missing = sorted(((k, t) for k, t in keyed.items() if k not in known), key=lambda kt: len(kt[1]))
        if missing:
            connect()
            # length-sorted rows cut into blocks of at most CHUNK: each block is one batch of similar lengths
            # (less padding), counted as soon as it comes back
            parts.append(ray.data.from_items([{"key": k, "text": t} for k, t in missing],
                                             override_num_blocks=-(-len(missing) // CHUNK)))
            total += len(missing)
    if not total:
        return 0
    resources = ray.cluster_resources()
    actors, threads, per_actor = pool_size(resources.get("CPU", 1), resources.get("GPU", 0))
    model = (encoder.path, encoder.fingerprint, encoder.precision, encoder.bf16_cosine, encoder.dim)
    dataset = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]  # Ray's union needs two or more
    vectors = dataset.map_batches(
        _EncodeBatches, batch_size=None, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
        fn_constructor_kwargs={"model": model, "prompt": prompt, "threads": threads}, **per_actor)
    done, keys, vecs = 0, [], []
    with redirect_stdout(sys.stderr):  # Ray prints task and actor failures on stdout, where the CLI's JSON goes
        for batch in vectors.iter_batches(batch_size=None, batch_format="numpy"):
            keys += list(batch["key"])
            vecs.append(np.asarray(batch["vec"], dtype=np.float32))
            done += len(batch["key"])
            if len(keys) >= CACHE_BATCH or done == total:  # as many per transaction as the local engine
                cache.put(keys, np.concatenate(vecs))
                keys, vecs = [], []
            if progress is not None:
                progress(done, total)
    return total
