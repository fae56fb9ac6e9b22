"""Prompt embeddings on a CPU, offline: the bundled static model, or sentence-transformers.

The bundled model is all-MiniLM-L6-v2 distilled into a model2vec static model (see
scripts/distill_embedding.py): ~0.05 ms for a short prompt, no torch. Any sentence-transformers
model can be used instead through the `embeddings-st` extra where its weights are available.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

BUILTIN_MODEL = Path(__file__).parent / "models" / "minilm-static"


class Embedder(Protocol):
    dimensions: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 rows, one per text."""

    def embed_one(self, text: str) -> np.ndarray: ...


class StaticEmbedder:
    def __init__(self, path: Path = BUILTIN_MODEL) -> None:
        from model2vec import StaticModel  # imported here: only deployments using it pay

        self._model: Any = StaticModel.from_pretrained(str(path))
        # Stored as float16 to halve the package; averaging float32 rows is ~15% faster.
        self._model.embedding = np.asarray(self._model.embedding, dtype=np.float32)
        self.dimensions = int(self._model.dim)

    def embed(self, texts: list[str]) -> np.ndarray:
        vectors = np.asarray(self._model.encode(texts or [""]), dtype=np.float32)
        return _normalise(vectors)

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


class SentenceTransformerEmbedder:
    def __init__(self, name: str) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as error:
            raise RuntimeError(
                f"embedding model '{name}' needs sentence-transformers: "
                "pip install 'routeyard[embeddings-st]'") from error
        self._model: Any = SentenceTransformer(name, device="cpu")
        self.dimensions = int(self._model.get_sentence_embedding_dimension())

    def embed(self, texts: list[str]) -> np.ndarray:
        vectors = self._model.encode(texts or [""], convert_to_numpy=True)
        return _normalise(np.asarray(vectors, dtype=np.float32))

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


@cache
def load_embedder(model: str = "builtin") -> Embedder:
    """One embedder per model per process (it is read-only and shared across reloads)."""
    if model == "builtin":
        return StaticEmbedder()
    return SentenceTransformerEmbedder(model)


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
