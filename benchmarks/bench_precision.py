"""Encoding throughput and agreement by precision on this CPU: what `precision=auto` decides between.

128 SciFact abstracts (title + text, the model's 256-token limit), the bundled all-MiniLM-L6-v2, batch 64, after a
warm-up; fp32 is the reference. bf16 = CPU autocast (the only other precision the product offers); torch dynamic
int8 quantisation of the Linear layers is measured as the obvious lossy alternative, not offered.

    python3 benchmarks/bench_precision.py        # writes benchmarks/results/precision.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import SHARED, print_table, write_result  # noqa: E402
from core.encoders import default_model_path, document_text, machine_key  # noqa: E402

TEXTS = 128


def _abstracts() -> list[str]:
    texts = []
    with (SHARED / "scifact" / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            texts.append(document_text(doc.get("title"), doc["text"]))
            if len(texts) == TEXTS:
                break
    return texts


def _timed(model, texts: list[str], bf16: bool = False) -> tuple[np.ndarray, float]:
    import torch

    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        model.encode(texts[:8], batch_size=64)
        started = time.perf_counter()
        vecs = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    return np.asarray(vecs, dtype=np.float32), time.perf_counter() - started


def main() -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    texts = _abstracts()
    model = SentenceTransformer(str(default_model_path()), device="cpu")
    ref, fp32_s = _timed(model, texts)
    rows = [{"precision": "fp32", "texts_per_s": round(TEXTS / fp32_s, 1), "speedup": 1.0, "min_cosine": 1.0}]
    low, bf16_s = _timed(model, texts, bf16=True)
    rows.append({"precision": "bf16 autocast", "texts_per_s": round(TEXTS / bf16_s, 1),
                 "speedup": round(fp32_s / bf16_s, 2), "min_cosine": round(float(np.min(np.sum(ref * low, 1))), 5)})
    quantised = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    low, int8_s = _timed(quantised, texts)
    rows.append({"precision": "int8 dynamic (not offered)", "texts_per_s": round(TEXTS / int8_s, 1),
                 "speedup": round(fp32_s / int8_s, 2), "min_cosine": round(float(np.min(np.sum(ref * low, 1))), 5)})
    print_table(rows, ["precision", "texts_per_s", "speedup", "min_cosine"])
    cpu_flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else set()
    write_result("precision", {"texts": TEXTS, "machine_key": machine_key(), "threads": torch.get_num_threads(),
                               "bf16_instructions": sorted(cpu_flags & {"avx512_bf16", "amx_bf16", "amx_tile"}),
                               "rows": rows})


if __name__ == "__main__":
    main()
