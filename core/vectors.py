"""Vectors of a run's documents and queries, and TF-IDF rows: what risk signals and triage compare candidates with.

The encoder is the one the run was mined with, so after mining every vector is an embedding-cache hit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from core.devices import device_type, resolve_device
from core.encoders import Encoder, load_encoder
from core.errors import UserError
from core.lookups import document_texts

if TYPE_CHECKING:
    from core.store import Store
    from core.workspace import Workspace

NEAR_DUPLICATE_COSINE = 0.95  # embedding cosine at or above which a document is a near-duplicate of a positive


def run_encoder(workspace: Workspace, run: dict, model: str | None = None, device: str = "auto") -> Encoder:
    """The encoder a run was mined with (same precision and prompts, so every vector comes from the cache), on
    ``device``. A run encoded in fp16 (on a GPU) cannot be continued on a CPU: that is one line naming the run."""
    params = run["params"]
    device = resolve_device(device)
    precision = run["stats"].get("precision") or "auto"
    if precision == "fp16" and device_type(device) == "cpu":
        raise UserError(f"run {run['run_id']}: its vectors are fp16 (mined on {run['stats'].get('device', 'a GPU')}), "
                        f"which cpu cannot encode; use --device cuda or mps")
    return load_encoder(model or params.get("model_path"), cache_dir=workspace.embeddings_dir, precision=precision,
                        query_prompt=params.get("query_prompt"), document_prompt=params.get("document_prompt"),
                        device=device)


class Vectors:
    """Unit vectors of a dataset's documents and queries by id, encoded on demand (cache hits after mining)."""

    def __init__(self, store: Store, dataset: str, encoder: Encoder):
        self.store, self.dataset, self.encoder = store, dataset, encoder

    def documents(self, ids: list[str]) -> tuple[dict[str, int], np.ndarray, list[str]]:
        docs = self.store.documents(self.dataset, ids)
        texts = document_texts(docs)
        row = {d: i for i, d in enumerate(docs["doc_id"])}
        return row, self.encoder.encode_documents(texts), texts

    def queries(self, ids: list[str]) -> tuple[dict[str, int], np.ndarray]:
        queries = self.store.queries(self.dataset, ids)
        row = {q: i for i, q in enumerate(queries["query_id"])}
        return row, self.encoder.encode_queries(queries["text"].tolist())


def tfidf_matrix(texts: list[str]):
    """L2-normalised TF-IDF rows (English stop words removed), IDF taken from the texts themselves."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        return TfidfVectorizer(stop_words="english", sublinear_tf=True, dtype=np.float32).fit_transform(texts)
    except ValueError:  # every text is empty or stop words only
        from scipy.sparse import csr_matrix

        return csr_matrix((len(texts), 1), dtype=np.float32)
