"""Full-batch Adam in numpy for the small latent models (MF, IRT): no torch needed.

Training stops early on a held-out loss when one is given; the epoch count found that way is
reused when refitting on all of train.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from routeyard.dataset import RoutingDataset
from routeyard.selection.learned.base import TrainableRouter

Params = dict[str, np.ndarray]
LossAndGrads = Callable[[Params], tuple[float, Params]]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # tanh form: no overflow warnings


def bce_grad(logits: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean binary cross-entropy (soft targets allowed) and its gradient in the logits."""
    p = sigmoid(logits)
    eps = 1e-7
    loss = -np.mean(target * np.log(p + eps) + (1 - target) * np.log(1 - p + eps))
    return float(loss), (p - target) / target.size


def adam(params: Params, loss_and_grads: LossAndGrads, *, epochs: int, lr: float = 0.01,
         weight_decay: float = 0.0, val_loss: Callable[[Params], float] | None = None,
         patience: int = 30, check_every: int = 5) -> tuple[Params, int]:
    """Minimise; returns (best params, epochs run to reach them).

    `weight_decay` is an L2 penalty on every array except 1-d biases.
    """
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(x) for k, x in params.items()}
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    best, best_epoch, best_val, stale = _copy(params), epochs, np.inf, 0
    for epoch in range(1, epochs + 1):
        _, grads = loss_and_grads(params)
        for key, grad in grads.items():
            if weight_decay and params[key].ndim > 1:
                grad = grad + weight_decay * params[key]
            m[key] = beta1 * m[key] + (1 - beta1) * grad
            v[key] = beta2 * v[key] + (1 - beta2) * grad * grad
            m_hat = m[key] / (1 - beta1 ** epoch)
            v_hat = v[key] / (1 - beta2 ** epoch)
            params[key] = params[key] - lr * m_hat / (np.sqrt(v_hat) + eps)
        if val_loss is not None and epoch % check_every == 0:
            loss = val_loss(params)
            if loss < best_val - 1e-5:
                best, best_epoch, best_val, stale = _copy(params), epoch, loss, 0
            else:
                stale += 1
                if stale >= patience // check_every:
                    break
    if val_loss is None:
        return params, epochs
    return best, best_epoch


def _copy(params: Params) -> Params:
    return {k: v.copy() for k, v in params.items()}


MAX_EPOCHS = 1500


def early_stopped_fit(x: np.ndarray, y: np.ndarray, dim: int, weight_decay: float, seed: int,
                      init: Callable[[int, np.ndarray, int, int], Params],
                      objective: Callable[[np.ndarray, np.ndarray],
                                          Callable[[Params], tuple[float, Params]]]) -> Params:
    """Early-stop on an inner split to find the epoch count, then refit on all rows."""
    from routeyard.selection.learned.tuning import split_rows

    x = np.asarray(x, dtype=float)
    inner, held = split_rows(len(x), 0.15, seed + 1)
    _, epochs = adam(init(x.shape[1], y, dim, seed), objective(x[inner], y[inner]),
                     epochs=MAX_EPOCHS, weight_decay=weight_decay,
                     val_loss=lambda p: objective(x[held], y[held])(p)[0])
    params, _ = adam(init(x.shape[1], y, dim, seed), objective(x, y), epochs=epochs,
                     weight_decay=weight_decay)
    return params


class GradientRouter(TrainableRouter):
    """A router trained by `train_fn` and served by `predict_fn`; (dim, weight decay) is chosen
    among `candidates` on a validation split of train unless given."""

    candidates: ClassVar[tuple[dict[str, Any], ...]]
    train_fn: ClassVar[Callable[[np.ndarray, np.ndarray, int, float, int], Params]]
    predict_fn: ClassVar[Callable[[Params, np.ndarray], np.ndarray]]

    def __init__(self, dim: int | None = None, weight_decay: float = 1e-3,
                 seed: int = 0) -> None:
        super().__init__()
        self.dim, self.weight_decay, self.seed = dim, weight_decay, seed
        self.params: Params = {}
        self.validation: dict[str, float] = {}

    def _fit(self, train: RoutingDataset, embeddings: np.ndarray) -> None:
        from threadpoolctl import threadpool_limits

        from routeyard.selection.learned.tuning import choose_candidate

        with threadpool_limits(1):  # BLAS threads fight on a busy 2-core box
            if self.dim is None:
                best, self.validation = choose_candidate(train, embeddings, self.candidates,
                                                         self._fit_predict)
                self.dim, self.weight_decay = int(best["dim"]), float(best["weight_decay"])
            self.params = type(self).train_fn(embeddings, train.scores, self.dim,
                                              self.weight_decay, self.seed)

    def _fit_predict(self, candidate: dict[str, Any], fit: RoutingDataset,
                     fit_embeddings: np.ndarray, val_embeddings: np.ndarray) -> np.ndarray:
        params = type(self).train_fn(fit_embeddings, fit.scores, int(candidate["dim"]),
                                     float(candidate["weight_decay"]), self.seed)
        return type(self).predict_fn(params, val_embeddings)

    def predict_quality(self, embeddings: np.ndarray) -> np.ndarray:
        return type(self).predict_fn(self.params, embeddings)

    def parameters(self) -> dict[str, np.ndarray]:
        return dict(self.params)

    def load_parameters(self, parameters: dict[str, np.ndarray]) -> None:
        self.params = {k: np.asarray(v, dtype=float) for k, v in parameters.items()}
