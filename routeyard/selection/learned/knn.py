"""kNN: a prompt's quality per model is the mean score of its k nearest training prompts.

Cosine on unit embeddings is a dot product, so a query is one (1 x d)·(d x n) product plus a
partial sort: about 0.1 ms at n = 10k on a CPU, no index needed at this size.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from routeyard.dataset import RoutingDataset
from routeyard.selection.learned.base import TrainableRouter, register_trainable
from routeyard.selection.learned.tuning import choose_candidate

K_CANDIDATES = (5, 10, 20, 40, 80, 160, 320)


@register_trainable
class KnnRouter(TrainableRouter):
    kind = "knn"

    def __init__(self, k: int | None = None) -> None:
        super().__init__()
        self.k = k  # None: chosen on a validation split of train
        self.train_embeddings = np.zeros((0, 0), dtype=np.float32)
        self.train_scores = np.zeros((0, 0), dtype=np.float32)
        self.validation: dict[str, float] = {}

    def _fit(self, train: RoutingDataset, embeddings: np.ndarray) -> None:
        if self.k is None:
            candidates = [{"k": k} for k in K_CANDIDATES if k < 0.8 * len(train)] or [{"k": 1}]
            best, self.validation = choose_candidate(train, embeddings, candidates, _fit_predict)
            self.k = int(best["k"])
        self.train_embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        self.train_scores = np.asarray(train.scores, dtype=np.float32)

    def predict_quality(self, embeddings: np.ndarray) -> np.ndarray:
        return _neighbour_mean(np.asarray(embeddings, dtype=np.float32), self.train_embeddings,
                               self.train_scores, self.k or 40)

    def parameters(self) -> dict[str, np.ndarray]:
        # float16 halves the artifact; neighbours barely move at this precision.
        return {"embeddings": self.train_embeddings.astype(np.float16),
                "scores": self.train_scores.astype(np.float16), "k": np.array(self.k)}

    def load_parameters(self, parameters: dict[str, np.ndarray]) -> None:
        # float32 at serving time: numpy's float16 matmul is many times slower.
        self.train_embeddings = np.ascontiguousarray(parameters["embeddings"], dtype=np.float32)
        self.train_scores = np.asarray(parameters["scores"], dtype=np.float32)
        self.k = int(parameters["k"])


def _neighbour_mean(queries: np.ndarray, keys: np.ndarray, scores: np.ndarray,
                    k: int) -> np.ndarray:
    k = max(1, min(k, len(keys)))
    similarity = queries @ keys.T
    if k < len(keys):
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    else:
        nearest = np.broadcast_to(np.arange(len(keys)), (len(queries), len(keys)))
    return scores[nearest].mean(axis=1).astype(float)


def _fit_predict(candidate: dict[str, Any], fit: RoutingDataset, fit_embeddings: np.ndarray,
                 val_embeddings: np.ndarray) -> np.ndarray:
    return _neighbour_mean(val_embeddings.astype(np.float32), fit_embeddings.astype(np.float32),
                           fit.scores.astype(np.float32), int(candidate["k"]))
