"""`elo`: Elo ratings from pairwise preferences and from absolute rewards.

A preference (winner, loser) moves both ratings by K·(1 - E[winner wins]) (K = `k`, default 32).
An absolute reward r moves one model's rating by K_r·(r - E), E being its expected score
against the field's average rating, K_r = max(`k_reward`, `provisional_k` / (games + 1))
(defaults 16 and 200: a new model's rating moves fast at first, then settles).
Selection: argmax(E - λ·cost), E ∈ (0, 1) the normalised rating. Models with
fewer than `provisional` feedback events (default 10) are served first, so newcomers are rated;
`epsilon` (default 0.05) keeps exploring. Elo is greedy: a newcomer better than a long-played
incumbent is rated quickly but overtakes it only slowly (through ε-exploration).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from routeyard.selection.base import AlgorithmBuild, register
from routeyard.selection.common import number
from routeyard.selection.online.base import OnlineAlgorithm, check_reward


def expected_score(rating: float, opponent: float) -> float:
    return 1.0 / (1.0 + 10.0 ** ((opponent - rating) / 400.0))


@register
class EloSelection(OnlineAlgorithm):
    name = "elo"

    def __init__(self, options: dict[str, Any] | None = None, build: AlgorithmBuild | None = None):
        super().__init__(options, build)
        self.k = number(self.options, "k", 32.0)
        self.k_reward = number(self.options, "k_reward", 16.0)
        self.provisional_k = number(self.options, "provisional_k", 200.0)
        self.initial = number(self.options, "initial_rating", 1500.0, minimum=-1e9)
        self.provisional = int(number(self.options, "provisional", 10))
        self.epsilon = number(self.options, "epsilon", 0.05)
        if self.epsilon > 1:
            raise ValueError("algorithm_options.epsilon must be in [0, 1]")
        self.ratings: dict[str, float] = {}
        self.games: dict[str, int] = {}

    def rating(self, model: str) -> float:
        return self.ratings.get(model, self.initial)

    def field_average(self) -> float:
        return float(np.mean(list(self.ratings.values()))) if self.ratings else self.initial

    def normalised(self, model: str) -> float:
        """The expected score against the field's average rating, in (0, 1)."""
        return expected_score(self.rating(model), self.field_average())

    def choose_index(self, names: list[str], costs: list[float] | np.ndarray,
                     context: np.ndarray | None = None) -> int:
        games = np.array([self.games.get(n, 0) for n in names])
        if games.min() < self.provisional:
            index = self.argmax(-games.astype(np.float64))  # the least-played newcomer
            self._values = None  # game counts are no scores
            return index
        field = self.field_average()
        values = np.array([expected_score(self.rating(n), field) for n in names])
        return self.epsilon_greedy(values - self.penalty(costs), self.epsilon)

    def explain(self, model: str) -> str:
        return f"rating {self.rating(model):.0f} (expected score {self.normalised(model):.3f})"

    def update(self, model: str, reward: float, context: np.ndarray | None = None) -> None:
        reward = check_reward(reward)
        with self.lock:
            field = self.field_average()
            rating = self.rating(model)
            games = self.games.get(model, 0)
            k = max(self.k_reward, self.provisional_k / (games + 1))
            self.ratings[model] = rating + k * (reward - expected_score(rating, field))
            self.games[model] = games + 1

    def update_preference(self, winner: str, loser: str) -> None:
        if winner == loser:
            raise ValueError("a preference needs two different models")
        with self.lock:
            rw, rl = self.rating(winner), self.rating(loser)
            delta = self.k * (1.0 - expected_score(rw, rl))
            self.ratings[winner] = rw + delta
            self.ratings[loser] = rl - delta
            for model in (winner, loser):
                self.games[model] = self.games.get(model, 0) + 1

    def state_dict(self) -> dict[str, Any]:
        return {"ratings": self.ratings, "games": self.games}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ratings = {str(k): float(v) for k, v in state["ratings"].items()}
        self.games = {str(k): int(v) for k, v in state["games"].items()}
