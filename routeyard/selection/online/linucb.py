"""`linucb`: contextual LinUCB over the prompt embedding (disjoint model per candidate).

Features: the unit prompt embedding, reduced by a fixed seeded random projection to `dims - 1`
dimensions (default dims 32; `dims: 0` keeps the full embedding), plus a constant bias feature.
Each model keeps A⁻¹ (updated by Sherman-Morrison) and b, and predicts `prior + θ·x` (θ = A⁻¹b,
fitted to reward - prior): a model with little data is pulled towards the optimistic `prior`
(default 1.0), so newcomers are tried. Score = prior + θ·x + `alpha`·sqrt(xᵀA⁻¹x) - λ·cost
(alpha default 0.5). Without an embedding (no context) only the bias feature is used.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from routeyard.selection.base import AlgorithmBuild, register
from routeyard.selection.common import number
from routeyard.selection.online.base import (
    OnlineAlgorithm,
    check_reward,
    decode_array,
    encode_array,
)


@register
class LinUCBSelection(OnlineAlgorithm):
    name = "linucb"
    needs_embedding = True

    def __init__(self, options: dict[str, Any] | None = None, build: AlgorithmBuild | None = None):
        super().__init__(options, build)
        self.alpha = number(self.options, "alpha", 0.5)
        self.prior = number(self.options, "prior", 1.0, minimum=-1e9)
        self.ridge = number(self.options, "ridge", 1.0)
        if self.ridge <= 0:
            raise ValueError("algorithm_options.ridge must be > 0")
        dims = self.options.get("dims", 32)
        if isinstance(dims, bool) or not isinstance(dims, int) or dims < 0 or dims == 1:
            raise ValueError("algorithm_options.dims must be 0 (no projection) or an integer >= 2")
        self.dims = dims
        self.input_dim: int | None = None  # fixed by the first context seen
        self.projection_seed = self.seed
        self.projection: np.ndarray | None = None
        self.a_inv: dict[str, np.ndarray] = {}
        self.b: dict[str, np.ndarray] = {}
        self.counts: dict[str, int] = {}
        self._last_ucb: dict[str, tuple[float, float]] = {}

    # -- features --------------------------------------------------------------------------

    def _fix_input(self, input_dim: int) -> None:
        if self.input_dim is None:
            self.input_dim = input_dim
            self._make_projection()
        elif input_dim != self.input_dim:
            raise ValueError(f"context has {input_dim} dimensions; this learner was fed "
                             f"{self.input_dim}")

    def _make_projection(self) -> None:
        if not self.dims or self.input_dim is None:
            self.projection = None
            return
        out = self.dims - 1
        # Its own generator: the projection depends on the seed only, never on traffic.
        rng = np.random.default_rng([self.projection_seed, 0x11CB])
        self.projection = rng.standard_normal((self.input_dim, out)) / np.sqrt(out)

    def features(self, context: np.ndarray | None) -> np.ndarray:
        if context is not None:
            vector = np.asarray(context, dtype=np.float64).ravel()
            self._fix_input(vector.shape[0])
            if self.projection is not None:
                vector = vector @ self.projection
            return np.append(vector, 1.0)
        # The full embedding plus bias without projection; before any context, bias only.
        size = self.dims or (1 if self.input_dim is None else self.input_dim + 1)
        x = np.zeros(size)
        x[-1] = 1.0
        return x

    def _model(self, model: str, size: int) -> tuple[np.ndarray, np.ndarray]:
        a_inv = self.a_inv.get(model)
        if a_inv is None or a_inv.shape[0] != size:
            return np.eye(size) / self.ridge, np.zeros(size)
        return a_inv, self.b[model]

    # -- selection and feedback -------------------------------------------------------------

    def choose_index(self, names: list[str], costs: list[float] | np.ndarray,
                     context: np.ndarray | None = None) -> int:
        x = self.features(context)
        values = np.empty(len(names))
        self._last_ucb = {}
        for i, name in enumerate(names):
            a_inv, b = self._model(name, x.shape[0])
            a_x = a_inv @ x
            mean = self.prior + float(b @ a_x)  # θ·x = (A⁻¹b)·x = b·(A⁻¹x), A⁻¹ symmetric
            bonus = self.alpha * float(np.sqrt(max(float(x @ a_x), 0.0)))
            values[i] = mean + bonus
            self._last_ucb[name] = (mean, bonus)
        return self.argmax(values - self.penalty(costs))

    def explain(self, model: str) -> str:
        mean, bonus = self._last_ucb.get(model, (self.prior, 0.0))
        return f"predicted {mean:.3f} + bonus {bonus:.3f} over {self.counts.get(model, 0)}"

    def update(self, model: str, reward: float, context: np.ndarray | None = None) -> None:
        reward = check_reward(reward)
        with self.lock:
            x = self.features(context)
            a_inv, b = self._model(model, x.shape[0])
            a_x = a_inv @ x
            a_inv = a_inv - np.outer(a_x, a_x) / (1.0 + float(x @ a_x))  # Sherman-Morrison
            self.a_inv[model] = a_inv
            self.b[model] = b + (reward - self.prior) * x
            self.counts[model] = self.counts.get(model, 0) + 1

    # -- state -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"dims": self.dims, "input_dim": self.input_dim, "counts": self.counts,
                "projection_seed": self.projection_seed,
                "a_inv": {k: encode_array(v) for k, v in self.a_inv.items()},
                "b": {k: encode_array(v) for k, v in self.b.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["dims"] != self.dims:
            raise ValueError(f"state has dims {state['dims']}, this learner {self.dims}")
        self.input_dim = state["input_dim"]
        self.projection_seed = int(state["projection_seed"])
        self._make_projection()
        self.counts = {str(k): int(v) for k, v in state["counts"].items()}
        self.a_inv = {str(k): decode_array(v) for k, v in state["a_inv"].items()}
        self.b = {str(k): decode_array(v) for k, v in state["b"].items()}
