"""Item response theory, RADAR-style: models have an ability, prompts a difficulty.

P(correct | prompt i, model m) = sigmoid(a_m·(θ_m - d_i) + alpha_m·(A·e_i)), with the difficulty
d_i = w·e_i + c read from the prompt's embedding and a_m = softplus(ã_m) > 0 the model's
discrimination. The optional `dim`-dimensional term (multidimensional IRT) lets a model be
strong on some kinds of prompt and weak on others; dim = 0 is the classic 2PL model.
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

CANDIDATES = ({"dim": 0, "weight_decay": 1e-4}, {"dim": 8, "weight_decay": 1e-4},
              {"dim": 8, "weight_decay": 1e-2}, {"dim": 32, "weight_decay": 1e-3})


def _forward(params: Params, x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    difficulty = x @ params["w"] + params["c"]  # (n,)
    gap = params["theta"][None, :] - difficulty[:, None]  # (n, m)
    discrimination = np.logaddexp(0.0, params["a"])  # softplus, (m,)
    z = x @ params["A"].T  # (n, dim); dim may be 0
    logits = discrimination * gap + z @ params["alpha"].T
    return logits, {"gap": gap, "discrimination": discrimination, "z": z}


def _predict(params: Params, x: np.ndarray) -> np.ndarray:
    return sigmoid(_forward(params, np.asarray(x, dtype=float))[0])


def _objective(x: np.ndarray, y: np.ndarray) -> Callable[[Params], tuple[float, Params]]:
    def loss_and_grads(params: Params) -> tuple[float, Params]:
        logits, cache = _forward(params, x)
        loss, g = bce_grad(logits, y)
        s = cache["discrimination"]
        d_difficulty = -(g * s).sum(axis=1)
        dz = g @ params["alpha"]
        return loss, {
            "theta": (g * s).sum(axis=0),
            "a": (g * cache["gap"]).sum(axis=0) * sigmoid(params["a"]),
            "w": x.T @ d_difficulty, "c": np.array([d_difficulty.sum()]),
            "alpha": g.T @ cache["z"], "A": dz.T @ x}
    return loss_and_grads


def _init(d: int, y: np.ndarray, dim: int, seed: int) -> Params:
    rng = np.random.default_rng(seed)
    prior = np.clip(y.mean(axis=0), 1e-3, 1 - 1e-3)
    return {"theta": np.log(prior / (1 - prior)), "a": np.full(y.shape[1], 0.5413),  # a = 1
            "w": np.zeros(d), "c": np.zeros(1),
            "A": rng.normal(0, 1 / np.sqrt(d), (dim, d)),
            "alpha": rng.normal(0, 0.1, (y.shape[1], dim))}


def _train(x: np.ndarray, y: np.ndarray, dim: int, weight_decay: float, seed: int) -> Params:
    return early_stopped_fit(x, y, dim, weight_decay, seed, _init, _objective)


@register_trainable
class IrtRouter(GradientRouter):
    kind = "irt"
    candidates = CANDIDATES
    train_fn = staticmethod(_train)  # staticmethod: a plain function would bind as a method
    predict_fn = staticmethod(_predict)

    def difficulty(self, embeddings: np.ndarray) -> np.ndarray:
        """Each prompt's learned difficulty (higher: fewer models answer it)."""
        return np.asarray(embeddings, dtype=float) @ self.params["w"] + self.params["c"]
