"""Trainable routers (kNN, MF, IRT, MLP, ensemble, baselines): fit on a routing dataset, save
as .npz.

Importing this package registers every algorithm in `TRAINABLE_ROUTERS`; sklearn is imported
only when a router trains, and when the ensemble hashes a prompt's text.
"""

from routeyard.selection.learned import baselines, ensemble, irt, knn, mf, mlp
from routeyard.selection.learned.base import (
    TRAINABLE_ROUTERS,
    TrainableRouter,
    load_router,
    register_trainable,
)

__all__ = ["TRAINABLE_ROUTERS", "TrainableRouter", "baselines", "ensemble", "irt", "knn",
           "load_router", "mf", "mlp", "register_trainable"]
