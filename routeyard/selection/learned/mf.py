"""Matrix factorisation in RouteLLM's spirit, for any number of models.

quality(prompt, model) = sigmoid(⟨W·e_prompt, v_model⟩ + b_model), fitted by full-batch Adam on
binary cross-entropy against the recorded scores (soft scores are fine targets).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from routeyard.selection.learned.base import register_trainable
from routeyard.selection.learned.optim import (
    GradientRouter,
    Params,
    bce_grad,
    early_stopped_fit,
    sigmoid,
)

CANDIDATES = ({"dim": 16, "weight_decay": 1e-4}, {"dim": 16, "weight_decay": 1e-2},
              {"dim": 64, "weight_decay": 1e-3}, {"dim": 64, "weight_decay": 1e-2})


def _logits(params: Params, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = x @ params["W"].T
    return z @ params["V"].T + params["b"], z


def _predict(params: Params, x: np.ndarray) -> np.ndarray:
    return sigmoid(_logits(params, np.asarray(x, dtype=float))[0])


def _train(x: np.ndarray, y: np.ndarray, dim: int, weight_decay: float, seed: int) -> Params:
    return early_stopped_fit(x, y, dim, weight_decay, seed, _init, _objective)


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


@register_trainable
class MfRouter(GradientRouter):
    kind = "mf"
    candidates = CANDIDATES
    train_fn = staticmethod(_train)  # staticmethod: a plain function would bind as a method
    predict_fn = staticmethod(_predict)
