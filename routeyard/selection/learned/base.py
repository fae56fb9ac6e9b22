"""Trainable routers: learn per-model quality from a routing dataset, then pick by
quality - λ·cost.

Every trainable router predicts a quality for each (prompt, model) pair; the choice is
argmax over models of `quality - λ · cost / cost_scale`, where λ is the router's cost/quality
knob (swept offline to draw the curve; fixed per decision when serving) and `cost_scale` the
mean cost of the dearest model on train, so λ is comparable across datasets. Prompts are seen
as their embeddings (the bundled static model, `routeyard.signals.embedder`); routers with
`uses_text` also read the prompt's text (`predict(embeddings, texts)`), and a router may price
each prompt by the cost it expects for it (`expected_costs`) instead of train's mean costs.

Artifacts are .npz files (numpy arrays only, no pickle) with `kind` naming the class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from routeyard.dataset import RoutingDataset


class TrainableRouter(ABC):
    kind: ClassVar[str]
    uses_text: ClassVar[bool] = False  # predict() reads the prompts' text, not only embeddings

    def __init__(self) -> None:
        self.models: list[str] = []
        self.mean_costs = np.zeros(0)  # per model, on train: the serving-time cost estimate
        self.cost_scale = 1.0

    # -- training and prediction --------------------------------------------------------------

    def fit(self, train: RoutingDataset, embeddings: np.ndarray) -> None:
        """Learn from `train` (embeddings: one unit row per prompt)."""
        self.models = list(train.models)
        self.mean_costs = train.costs.mean(axis=0)
        self.cost_scale = float(self.mean_costs.max()) or 1.0
        self._fit(train, embeddings)

    @abstractmethod
    def _fit(self, train: RoutingDataset, embeddings: np.ndarray) -> None: ...

    @abstractmethod
    def predict_quality(self, embeddings: np.ndarray) -> np.ndarray:
        """(n_prompts, n_models) predicted quality."""

    def predict(self, embeddings: np.ndarray,
                texts: Sequence[str] | None = None) -> np.ndarray:
        """(n_prompts, n_models) predicted quality; routers that read the prompt's text as
        well as its embedding (`uses_text`) need `texts`, the others ignore it."""
        return self.predict_quality(embeddings)

    def expected_costs(self, embeddings: np.ndarray,
                       texts: Sequence[str] | None = None) -> np.ndarray:
        """(n_prompts, n_models) cost the router expects each call to have: train's mean cost
        per model unless the router estimates it from the prompt. A test row's true cost is
        never used: it is not known before the call."""
        return np.broadcast_to(self.mean_costs, (len(embeddings), len(self.mean_costs)))

    def predict_with_costs(self, embeddings: np.ndarray, texts: Sequence[str] | None = None
                           ) -> tuple[np.ndarray, np.ndarray]:
        """`predict` and `expected_costs` together (a router may share work between them)."""
        return self.predict(embeddings, texts), self.expected_costs(embeddings, texts)

    def choose(self, embeddings: np.ndarray, lam: float,
               costs: np.ndarray | None = None,
               texts: Sequence[str] | None = None) -> np.ndarray:
        """Index of the chosen model per prompt. `costs` defaults to the expected costs."""
        quality = self.predict(embeddings, texts)
        cost = self.expected_costs(embeddings, texts) if costs is None else costs
        return np.argmax(quality - lam * cost / self.cost_scale, axis=1)

    # -- artifacts ---------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        arrays = {f"p_{k}": v for k, v in self.parameters().items()}
        np.savez(path, kind=np.array(self.kind), models=np.array(self.models),
                 mean_costs=self.mean_costs, cost_scale=np.array(self.cost_scale), **arrays)

    @abstractmethod
    def parameters(self) -> dict[str, np.ndarray]:
        """What `save` stores beside models and costs."""

    @abstractmethod
    def load_parameters(self, parameters: dict[str, np.ndarray]) -> None: ...


TRAINABLE_ROUTERS: dict[str, type[TrainableRouter]] = {}


def register_trainable(cls: type[TrainableRouter]) -> type[TrainableRouter]:
    TRAINABLE_ROUTERS[cls.kind] = cls
    return cls


def load_router(path: str | Path, **options: Any) -> TrainableRouter:
    with np.load(path, allow_pickle=False) as data:
        kind = str(data["kind"])
        if kind not in TRAINABLE_ROUTERS:
            raise ValueError(f"{path}: unknown router kind '{kind}'")
        router = TRAINABLE_ROUTERS[kind](**options)
        router.models = [str(m) for m in data["models"]]
        router.mean_costs = np.asarray(data["mean_costs"], dtype=float)
        router.cost_scale = float(data["cost_scale"])
        router.load_parameters({k[2:]: np.asarray(data[k]) for k in data.files
                                if k.startswith("p_")})
    return router
