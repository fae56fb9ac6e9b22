"""The probability each selection records for its choice (the decision log keeps it for
off-policy evaluation): exact for ε-greedy and ties, estimated for Thompson sampling; checked
against the frequencies of many seeded draws."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest

from routeyard.selection import make_algorithm


@dataclass
class Candidate:
    name: str
    price: float = 1.0

    def is_available(self) -> bool:
        return True

    def fits(self, prompt_tokens: int) -> bool:
        return True

    @property
    def config(self) -> object:  # what `priced` reads: the model's pricing
        price = self.price

        class Pricing:
            input_per_mtok = price
            output_per_mtok = price

            def cost(self, prompt: int, completion: int) -> float:
                return (prompt + completion) * price / 1e6

        class Config:
            pricing = Pricing()

        return Config()


CANDIDATES = [Candidate("a"), Candidate("b"), Candidate("c")]


def draws(name: str, options: dict[str, object], n: int = 4000
          ) -> tuple[Counter[str], dict[str, set[float]]]:
    algorithm = make_algorithm(name, {"seed": 3, **options})
    if name == "ema":
        algorithm.update("b", 1.0)  # b is the greedy choice
        algorithm.update("a", 0.2)
        algorithm.update("c", 0.2)
    if name == "thompson":
        for _ in range(6):
            algorithm.update("b", 1.0)
            algorithm.update("a", 0.5)
    seen: Counter[str] = Counter()
    recorded: dict[str, set[float]] = {}
    for _ in range(n):
        selection = algorithm.select(CANDIDATES, 10)  # type: ignore[arg-type]
        assert selection is not None and 0 < selection.probability <= 1
        assert selection.scores is not None and set(selection.scores) == {"a", "b", "c"}
        seen[selection.model] += 1
        recorded.setdefault(selection.model, set()).add(round(selection.probability, 6))
    return seen, recorded


def test_epsilon_greedy_probabilities_are_exact_and_match_the_draws() -> None:
    seen, recorded = draws("ema", {"epsilon": 0.3})
    assert recorded == {"b": {round(0.1 + 0.7, 6)}, "a": {0.1}, "c": {0.1}}
    for model, p in (("b", 0.8), ("a", 0.1), ("c", 0.1)):
        assert seen[model] / 4000 == pytest.approx(p, abs=0.025)


def test_ties_share_the_probability() -> None:
    _, recorded = draws("ema", {"epsilon": 0.0}, n=50)
    assert recorded == {"b": {1.0}}
    algorithm = make_algorithm("ema", {"seed": 1, "epsilon": 0})
    selection = algorithm.select(CANDIDATES, 10)  # type: ignore[arg-type]
    assert selection is not None and selection.probability == pytest.approx(1 / 3)


def test_thompson_estimates_are_close_to_the_frequencies() -> None:
    seen, recorded = draws("thompson", {})
    for model, probabilities in recorded.items():
        frequency = seen[model] / 4000
        mean = sum(probabilities) / len(probabilities)
        assert abs(mean - frequency) < 0.06, (model, mean, frequency)


def test_deterministic_algorithms_record_one() -> None:
    for name in ("static", "cheapest", "quality_cost"):
        selection = make_algorithm(name, {}).select(CANDIDATES, 10)  # type: ignore[arg-type]
        assert selection is not None and selection.probability == 1.0
