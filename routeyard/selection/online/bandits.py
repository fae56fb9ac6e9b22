"""Context-free bandits: `ema` (exponential moving average, ε-greedy) and `thompson`
(Beta-Bernoulli Thompson sampling with fractional rewards)."""

from __future__ import annotations

from typing import Any

import numpy as np

from routeyard.selection.base import AlgorithmBuild, register
from routeyard.selection.common import number
from routeyard.selection.online.base import OnlineAlgorithm, check_reward

# Thompson sampling's choice probability is estimated from this many extra draws (standard
# error at most 0.5/sqrt(256) ≈ 0.03; docs/state.md says so).
PROBABILITY_DRAWS = 256


@register
class EmaSelection(OnlineAlgorithm):
    """Per-model exponential moving average of reward; argmax(ema - λ·cost), ε-greedy.

    Options: `alpha` (default 0.1; the first 1/alpha rewards are averaged plainly, so early
    estimates are not biased towards the prior), `epsilon` (default 0.05), `prior` (the value of
    a model never rewarded, default 1.0: optimistic, so every new model is tried).
    """

    name = "ema"

    def __init__(self, options: dict[str, Any] | None = None, build: AlgorithmBuild | None = None):
        super().__init__(options, build)
        self.alpha = number(self.options, "alpha", 0.1)
        self.epsilon = number(self.options, "epsilon", 0.05)
        self.prior = number(self.options, "prior", 1.0)
        if not 0 < self.alpha <= 1:
            raise ValueError("algorithm_options.alpha must be in (0, 1]")
        if self.epsilon > 1:
            raise ValueError("algorithm_options.epsilon must be in [0, 1]")
        self.values: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def choose_index(self, names: list[str], costs: list[float] | np.ndarray,
                     context: np.ndarray | None = None) -> int:
        values = np.array([self.values.get(n, self.prior) for n in names])
        return self.epsilon_greedy(values - self.penalty(costs), self.epsilon)

    def explain(self, model: str) -> str:
        return f"ema {self.values.get(model, self.prior):.3f} over {self.counts.get(model, 0)}"

    def update(self, model: str, reward: float, context: np.ndarray | None = None) -> None:
        reward = check_reward(reward)
        with self.lock:
            count = self.counts.get(model, 0) + 1
            rate = max(self.alpha, 1.0 / count)
            old = self.values.get(model, self.prior)
            self.values[model] = old + rate * (reward - old)
            self.counts[model] = count

    def state_dict(self) -> dict[str, Any]:
        return {"values": self.values, "counts": self.counts}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.values = {str(k): float(v) for k, v in state["values"].items()}
        self.counts = {str(k): int(v) for k, v in state["counts"].items()}


@register
class ThompsonSelection(OnlineAlgorithm):
    """Beta-Bernoulli Thompson sampling: alpha += r, beta += 1 - r; argmax(sample - λ·cost).

    Options: `prior_alpha`, `prior_beta` (default 1, 1: a uniform prior for new models).
    """

    name = "thompson"

    def __init__(self, options: dict[str, Any] | None = None, build: AlgorithmBuild | None = None):
        super().__init__(options, build)
        self.prior_alpha = number(self.options, "prior_alpha", 1.0)
        self.prior_beta = number(self.options, "prior_beta", 1.0)
        if self.prior_alpha <= 0 or self.prior_beta <= 0:
            raise ValueError("algorithm_options.prior_alpha and prior_beta must be > 0")
        self.params: dict[str, list[float]] = {}  # model -> [alpha, beta]
        self._estimator = np.random.default_rng([self.seed, 0x7E57])

    def _params(self, model: str) -> list[float]:
        return self.params.get(model, [self.prior_alpha, self.prior_beta])

    def choose_index(self, names: list[str], costs: list[float] | np.ndarray,
                     context: np.ndarray | None = None) -> int:
        params = np.array([self._params(n) for n in names])
        relative = self.penalty(costs)  # λ·cost (+ λ_energy·energy), already weighted
        samples = self.rng.beta(params[:, 0], params[:, 1])
        index = self.argmax(samples - relative)
        if len(names) > 1:
            # No closed form: estimate P(this index wins) from PROBABILITY_DRAWS more draws,
            # from a generator of their own (the serving draws stay as they were).
            draws = self._estimator.beta(params[:, 0], params[:, 1],
                                         size=(PROBABILITY_DRAWS, len(names)))
            wins = np.count_nonzero(np.argmax(draws - relative, axis=1) == index)
            self._probability = max(1, wins) / PROBABILITY_DRAWS
        self._values = params[:, 0] / params.sum(axis=1) - relative
        return index

    def explain(self, model: str) -> str:
        a, b = self._params(model)
        seen = a + b - self.prior_alpha - self.prior_beta
        return f"posterior mean {a / (a + b):.3f} over {seen:g}"

    def update(self, model: str, reward: float, context: np.ndarray | None = None) -> None:
        reward = check_reward(reward)
        with self.lock:
            a, b = self._params(model)
            self.params[model] = [a + reward, b + 1.0 - reward]

    def state_dict(self) -> dict[str, Any]:
        return {"params": self.params}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.params = {str(k): [float(v[0]), float(v[1])] for k, v in state["params"].items()}
