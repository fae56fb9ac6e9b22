"""Reference routers that ignore the prompt: the floor every learned router must beat."""

from __future__ import annotations

import numpy as np

from routeyard.dataset import RoutingDataset
from routeyard.selection.learned.base import TrainableRouter, register_trainable


@register_trainable
class PriorRouter(TrainableRouter):
    """Each model's mean train quality: λ then trades prior quality against cost."""

    kind = "prior"

    def __init__(self) -> None:
        super().__init__()
        self.prior = np.zeros(0)

    def _fit(self, train: RoutingDataset, embeddings: np.ndarray) -> None:
        self.prior = train.scores.mean(axis=0)

    def predict_quality(self, embeddings: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.prior, (len(embeddings), len(self.prior))).copy()

    def parameters(self) -> dict[str, np.ndarray]:
        return {"prior": self.prior}

    def load_parameters(self, parameters: dict[str, np.ndarray]) -> None:
        self.prior = np.asarray(parameters["prior"], dtype=float)


@register_trainable
class CheapestRouter(TrainableRouter):
    """Always the cheapest model on train, whatever λ (quality is ranked by cheapness)."""

    kind = "cheapest"

    def _fit(self, train: RoutingDataset, embeddings: np.ndarray) -> None:
        pass

    def predict_quality(self, embeddings: np.ndarray) -> np.ndarray:
        # Negative cost in units of the knob's scale: any λ ≥ 0 keeps the cheapest on top.
        row = -self.mean_costs / self.cost_scale
        return np.broadcast_to(row, (len(embeddings), len(row))).copy()

    def parameters(self) -> dict[str, np.ndarray]:
        return {}

    def load_parameters(self, parameters: dict[str, np.ndarray]) -> None:
        pass
