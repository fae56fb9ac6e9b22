"""Per-model score predictors from scikit-learn, served in numpy.

Two families compete on a validation split of train: one logistic regression per model
(soft scores are fitted exactly by weighting each row once as a success and once as a
failure) and a multi-output MLP regressor. The winner's weights are exported as arrays, so
serving imports neither sklearn nor pickle.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from routeyard.dataset import RoutingDataset
from routeyard.selection.learned.base import TrainableRouter, register_trainable
from routeyard.selection.learned.optim import sigmoid
from routeyard.selection.learned.tuning import choose_candidate

CANDIDATES = ({"family": "logistic", "C": 0.1}, {"family": "logistic", "C": 1.0},
              {"family": "logistic", "C": 10.0},
              {"family": "mlp", "hidden": 128, "alpha": 1e-3},
              {"family": "mlp", "hidden": 128, "alpha": 1e-1})


@register_trainable
class MlpRouter(TrainableRouter):
    kind = "mlp"

    def __init__(self, config: dict[str, Any] | None = None, seed: int = 0) -> None:
        super().__init__()
        self.config = config  # None: chosen on a validation split of train
        self.seed = seed
        self.weights: dict[str, np.ndarray] = {}
        self.validation: dict[str, float] = {}

    def _fit(self, train: RoutingDataset, embeddings: np.ndarray) -> None:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # BLAS threads fight on a busy 2-core box
            if self.config is None:
                self.config, self.validation = choose_candidate(
                    train, embeddings, CANDIDATES,
                    lambda c, fit, xf, xv: _predict(_train(c, xf, fit.scores, self.seed), xv))
            self.weights = _train(self.config, embeddings, train.scores, self.seed)

    def predict_quality(self, embeddings: np.ndarray) -> np.ndarray:
        return _predict(self.weights, embeddings)

    def parameters(self) -> dict[str, np.ndarray]:
        return dict(self.weights)

    def load_parameters(self, parameters: dict[str, np.ndarray]) -> None:
        self.weights = {k: np.asarray(v) for k, v in parameters.items()}


def _predict(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Numpy forward pass: W0/b0 … Wn/bn, ReLU between layers; a sigmoid head if logistic."""
    h = np.asarray(x, dtype=float)
    n_layers = sum(1 for k in weights if k.startswith("W"))
    for layer in range(n_layers):
        h = h @ weights[f"W{layer}"] + weights[f"b{layer}"]
        if layer < n_layers - 1:
            h = np.maximum(h, 0.0)
    if bool(weights["logistic"]):
        return sigmoid(h)
    return np.clip(h, 0.0, 1.0)


def _train(config: dict[str, Any], x: np.ndarray, y: np.ndarray,
           seed: int) -> dict[str, np.ndarray]:
    if config["family"] == "logistic":
        return _train_logistic(float(config["C"]), x, y)
    return _train_mlp(int(config["hidden"]), float(config["alpha"]), x, y, seed)


def _train_logistic(c: float, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    n, m = y.shape
    coef, intercept = np.zeros((x.shape[1], m)), np.zeros(m)
    doubled = np.vstack([x, x])
    labels = np.concatenate([np.ones(n), np.zeros(n)])
    for j in range(m):
        weight = np.concatenate([y[:, j], 1.0 - y[:, j]])
        if weight[:n].sum() == 0 or weight[n:].sum() == 0:  # one class only: a constant
            intercept[j] = 10.0 if weight[:n].sum() else -10.0
            continue
        model = LogisticRegression(C=c, max_iter=500)
        model.fit(doubled, labels, sample_weight=weight)
        coef[:, j], intercept[j] = model.coef_[0], model.intercept_[0]
    return {"W0": coef, "b0": intercept, "logistic": np.array(True)}


def _train_mlp(hidden: int, alpha: float, x: np.ndarray, y: np.ndarray,
               seed: int) -> dict[str, np.ndarray]:
    from sklearn.neural_network import MLPRegressor

    model = MLPRegressor(hidden_layer_sizes=(hidden,), alpha=alpha, early_stopping=True,
                         max_iter=300, random_state=seed)
    model.fit(x, y)
    weights: dict[str, np.ndarray] = {"logistic": np.array(False)}
    for layer, (w, b) in enumerate(zip(model.coefs_, model.intercepts_, strict=True)):
        weights[f"W{layer}"], weights[f"b{layer}"] = w, b
    return weights
