"""Trainable routers (kNN, MF, IRT, MLP, baselines): fit on a routing dataset, save as .npz.

Importing this package registers every algorithm in `TRAINABLE_ROUTERS`; sklearn is imported
only when the MLP router trains.
"""

from routeyard.selection.learned import baselines, irt, knn, mf, mlp
from routeyard.selection.learned.base import (
    TRAINABLE_ROUTERS,
    TrainableRouter,
    load_router,
    register_trainable,
)

__all__ = ["TRAINABLE_ROUTERS", "TrainableRouter", "baselines", "irt", "knn", "load_router",
           "mf", "mlp", "register_trainable"]
