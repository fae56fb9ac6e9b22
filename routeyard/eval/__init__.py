"""The offline side: routing datasets, training, cost/quality metrics, plots.

`evaluate` and `train` are imported on first use: the runner imports the learned routers
(scikit-learn and the embedding model), which `routeyard eval --help` should not pay for.
"""

from __future__ import annotations

from typing import Any

from routeyard.dataset import RoutingDataset, load_dataset, load_split
from routeyard.eval.metrics import (
    Point,
    aiq,
    best_single,
    cost_ratio_at_best,
    max_quality,
    oracle,
    random_router,
    single_model_points,
    upper_hull,
)

__all__ = [
    "Point",
    "RoutingDataset",
    "aiq",
    "best_single",
    "cost_ratio_at_best",
    "evaluate",
    "load_dataset",
    "load_split",
    "max_quality",
    "oracle",
    "random_router",
    "single_model_points",
    "train",
    "upper_hull",
]


def __getattr__(name: str) -> Any:
    if name in ("evaluate", "train"):
        from routeyard.eval import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
