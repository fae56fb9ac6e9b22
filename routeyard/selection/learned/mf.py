"""Matrix factorisation in RouteLLM's spirit, for any number of models.

quality(prompt, model) = sigmoid(⟨W·e_prompt, v_model⟩ + b_model), fitted by full-batch Adam on
binary cross-entropy against the recorded scores (soft scores are fine targets).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from routeyard.eval.dataset import RoutingDataset
from routeyard.selection.learned.base import TrainableRouter, register_trainable
from routeyard.selection.learned.optim import Params, adam, bce_grad, sigmoid
from routeyard.selection.learned.tuning import choose_candidate, split_rows

CANDIDATES = ({"dim": 16, "weight_decay": 1e-4}, {"dim": 16, "weight_decay": 1e-2},
              {"dim": 64, "weight_decay": 1e-3}, {"dim": 64, "weight_decay": 1e-2})
MAX_EPOCHS = 1500


@register_trainable
class MfRouter(TrainableRouter):
    kind = "mf"

    def __init__(self, dim: int | None = None, weight_decay: float = 1e-3,
                 seed: int = 0) -> None:
        super().__init__()
        self.dim, self.weight_decay, self.seed = dim, weight_decay, seed
        self.params: Params = {}
        self.validation: dict[str, float] = {}

    def _fit(self, train: RoutingDataset, embeddings: np.ndarray) -> None:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # BLAS threads fight on a busy 2-core box
            if self.dim is None:
                best, self.validation = choose_candidate(train, embeddings, CANDIDATES,
                                                         self._fit_predict)
                self.dim, self.weight_decay = int(best["dim"]), float(best["weight_decay"])
            self.params = _train(embeddings, train.scores, self.dim, self.weight_decay,
                                 self.seed)

    def _fit_predict(self, candidate: dict[str, Any], fit: RoutingDataset,
                     fit_embeddings: np.ndarray, val_embeddings: np.ndarray) -> np.ndarray:
        params = _train(fit_embeddings, fit.scores, int(candidate["dim"]),
                        float(candidate["weight_decay"]), self.seed)
        return _predict(params, val_embeddings)

    def predict_quality(self, embeddings: np.ndarray) -> np.ndarray:
        return _predict(self.params, embeddings)

    def parameters(self) -> dict[str, np.ndarray]:
        return dict(self.params)

    def load_parameters(self, parameters: dict[str, np.ndarray]) -> None:
        self.params = {k: np.asarray(v, dtype=float) for k, v in parameters.items()}


def _logits(params: Params, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = x @ params["W"].T
    return z @ params["V"].T + params["b"], z


def _predict(params: Params, x: np.ndarray) -> np.ndarray:
    return sigmoid(_logits(params, np.asarray(x, dtype=float))[0])


def _train(x: np.ndarray, y: np.ndarray, dim: int, weight_decay: float, seed: int) -> Params:
    """Early-stop on an inner split to find the epoch count, then refit on all rows."""
    x = np.asarray(x, dtype=float)
    inner, held = split_rows(len(x), 0.15, seed + 1)
    _, epochs = adam(_init(x.shape[1], y, dim, seed), _objective(x[inner], y[inner]),
                     epochs=MAX_EPOCHS, weight_decay=weight_decay,
                     val_loss=lambda p: _objective(x[held], y[held])(p)[0])
    params, _ = adam(_init(x.shape[1], y, dim, seed), _objective(x, y), epochs=epochs,
                     weight_decay=weight_decay)
    return params


def _init(d: int, y: np.ndarray, dim: int, seed: int) -> Params:
    rng = np.random.default_rng(seed)
    prior = np.clip(y.mean(axis=0), 1e-3, 1 - 1e-3)
    return {"W": rng.normal(0, 1 / np.sqrt(d), (dim, d)),
            "V": rng.normal(0, 1 / np.sqrt(dim), (y.shape[1], dim)),
            "b": np.log(prior / (1 - prior))}  # start at each model's prior


def _objective(x: np.ndarray, y: np.ndarray) -> Callable[[Params], tuple[float, Params]]:
    def loss_and_grads(params: Params) -> tuple[float, Params]:
        logits, z = _logits(params, x)
        loss, g = bce_grad(logits, y)
        dz = g @ params["V"]
        return loss, {"W": dz.T @ x, "V": g.T @ z, "b": g.sum(axis=0)}
    return loss_and_grads
