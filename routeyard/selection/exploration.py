"""Exploration with logged propensities: a decision's `exploration:` block.

The decision's algorithm chooses as usual; an explorer then draws the model actually served from
a known distribution around that choice, and says with what probability it served it (and, where
that is exact, every candidate's probability). The decision log keeps both, so that
`routeyard evaluate-policy` can weigh each logged event by the chance its model had.

    exploration: {epsilon: 0.05, max_daily_usd: 2}   # a uniform draw 5% of the time
    exploration: {temperature: 0.1}                   # a softmax over the algorithm's scores

Spend on explored requests (those served by another model than the algorithm's own choice)
counts against `max_daily_usd` per UTC day in the Router's spend ledger, which replicas sharing a
store sum (about a second stale); once it is reached the decision serves its algorithm's choice,
unexplored, until the day ends.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from routeyard.config.schema import ExplorationConfig
from routeyard.selection.base import CandidateView, Selection
from routeyard.state import DecisionRecord

if TYPE_CHECKING:
    from routeyard.selection.ledger import BudgetLedger

LEDGER_PREFIX = "exploration:"  # the spend ledger's key for a decision's explored spend


@dataclass(slots=True, frozen=True)
class Drawn:
    """What an explorer served, and the record the decision log keeps of how."""

    selection: Selection  # the model served, with its probability under the whole policy
    record: dict[str, Any]  # {kind, explored, probabilities?, paused?}


class Explorer(ABC):
    kind: str

    def __init__(self, config: ExplorationConfig, decision: str, rng: random.Random,
                 ledger: BudgetLedger | None) -> None:
        self.config = config
        self.rng = rng
        self.ledger = ledger
        self.ledger_key = LEDGER_PREFIX + decision

    def apply(self, selection: Selection, candidates: Sequence[CandidateView]) -> Drawn:
        """Draw the model to serve around the algorithm's `selection`."""
        names = [c.name for c in candidates if c.is_available()]
        if len(names) < 2 or selection.model not in names:
            return Drawn(selection, {"kind": self.kind, "explored": False})
        if self._capped():
            return Drawn(selection, {"kind": self.kind, "explored": False, "paused": True})
        return self.draw(selection, names)

    def _capped(self) -> bool:
        cap = self.config.max_daily_usd
        return cap is not None and self.ledger is not None \
            and self.ledger.spent(self.ledger_key, "day") >= cap

    @abstractmethod
    def draw(self, selection: Selection, names: list[str]) -> Drawn:
        """Draw among `names` (at least two, the algorithm's choice among them)."""


class EpsilonExplorer(Explorer):
    """With probability ε a uniform draw over the available candidates, else the algorithm's
    choice. Over a deterministic algorithm every candidate's probability is exact; over a
    randomised one (Thompson, ...) only the algorithm's own choice's is, and a model drawn
    uniformly is logged with ε/n, a lower bound of its chance (docs/learning.md)."""

    kind = "epsilon"

    def draw(self, selection: Selection, names: list[str]) -> Drawn:
        epsilon = float(self.config.epsilon or 0.0)
        share = epsilon / len(names)
        chosen = self.rng.choice(names) if self.rng.random() < epsilon else selection.model
        own = selection.probability if chosen == selection.model else 0.0
        probability = share + (1.0 - epsilon) * own
        record: dict[str, Any] = {"kind": self.kind, "explored": chosen != selection.model}
        if selection.probability >= 1.0:  # a deterministic choice: all of them are exact
            record["probabilities"] = {
                name: share + (1.0 - epsilon) * (name == selection.model) for name in names}
        if chosen == selection.model:
            return Drawn(_with_probability(selection, probability), record)
        why = (f"explored (ε={epsilon:g}): drawn uniformly instead of {selection.model} "
               f"({selection.reason})")
        return Drawn(Selection(chosen, why, probability, selection.scores), record)


class SoftmaxExplorer(Explorer):
    """A draw from the softmax of the algorithm's scores at the configured temperature.
    Candidates without a score get none of the probability; without two scored candidates
    the algorithm's choice stands."""

    kind = "softmax"

    def draw(self, selection: Selection, names: list[str]) -> Drawn:
        scores = selection.scores or {}
        scored = [name for name in names if name in scores]
        if len(scored) < 2:
            return Drawn(selection, {"kind": self.kind, "explored": False})
        temperature = float(self.config.temperature or 1.0)
        top = max(scores[name] for name in scored)
        weights = [math.exp((scores[name] - top) / temperature) for name in scored]
        total = sum(weights)
        probabilities = {name: w / total for name, w in zip(scored, weights, strict=True)}
        chosen = self.rng.choices(scored, weights=weights)[0]
        record = {"kind": self.kind, "explored": chosen != selection.model,
                  "probabilities": probabilities}
        probability = probabilities[chosen]
        if chosen == selection.model:
            return Drawn(_with_probability(selection, probability), record)
        why = (f"explored (softmax, T={temperature:g}): drawn with probability "
               f"{probability:.3f} instead of {selection.model} ({selection.reason})")
        return Drawn(Selection(chosen, why, probability, selection.scores), record)


EXPLORERS: dict[str, type[Explorer]] = {"epsilon": EpsilonExplorer, "softmax": SoftmaxExplorer}


def explorer_kind(config: ExplorationConfig) -> str:
    return "epsilon" if config.epsilon is not None else "softmax"


def make_explorer(config: ExplorationConfig, decision: str, rng: random.Random,
                  ledger: BudgetLedger | None) -> Explorer:
    return EXPLORERS[explorer_kind(config)](config, decision, rng, ledger)


def spend_recorder(ledger: BudgetLedger) -> Callable[[Any, DecisionRecord, str | None], None]:
    """An accounting observer: counts an explored request's cost against its decision's daily
    exploration spend (the whole cost of the request, not its difference from the
    algorithm's choice: the cap bounds what exploring can cost at worst)."""

    def record(plan: Any, decision: DecisionRecord, _text: str | None) -> None:
        exploration = (plan.selection or {}).get("exploration")
        if exploration is not None and exploration.get("explored"):
            ledger.record(LEDGER_PREFIX + str(decision.decision), decision.cost_usd)

    return record


def _with_probability(selection: Selection, probability: float) -> Selection:
    return Selection(selection.model, selection.reason, probability, selection.scores)
