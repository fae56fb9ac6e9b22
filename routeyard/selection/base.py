"""The selection contract: candidates in, one chosen model (plus the reason) out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from routeyard.pool.latency import LatencyTracker
    from routeyard.selection.ledger import BudgetLedger
    from routeyard.signals.base import RequestContext


class CandidateView(Protocol):
    """What selection may know of a model: its config facts and current availability."""

    name: str

    def is_available(self) -> bool: ...

    def fits(self, prompt_tokens: int) -> bool: ...


@dataclass(slots=True, frozen=True)
class AlgorithmBuild:
    """What an algorithm is built with besides its options: its dependencies come in here, at
    construction, never attached afterwards."""

    base_dir: Path | None = None  # relative artifact paths resolve against it
    # The Router's spend ledger (budget-aware selection reads it); None offline.
    ledger: BudgetLedger | None = None
    # What the pool observed of each model's latency (latency-aware selection); None: a
    # private, empty tracker.
    tracker: LatencyTracker | None = None
    # Mixed into the seed of randomised algorithms. A serving Router passes a random value, so
    # that replicas (and restarts) sharing one learned state never make the same draws; offline
    # tools pass None, so a seed alone reproduces a run.
    entropy: int | None = None


@dataclass(slots=True, frozen=True)
class Selection:
    model: str
    reason: str
    # The probability with which this model was chosen (the decision log keeps it for
    # off-policy evaluation): 1 for deterministic algorithms.
    probability: float = 1.0
    # Each candidate's predicted score, where the algorithm has one (higher is better).
    scores: dict[str, float] | None = None


class SelectionAlgorithm(ABC):
    name: ClassVar[str]
    needs_embedding: ClassVar[bool] = False  # the planner then loads the embedding model
    # Whether its selections carry every candidate's score (a softmax exploration needs them).
    gives_scores: ClassVar[bool] = False

    def __init__(self, options: dict[str, Any] | None = None,
                 build: AlgorithmBuild | None = None):
        """`options` are the decision's `algorithm_options`."""
        self.options = options or {}
        self.build = build or AlgorithmBuild()

    @abstractmethod
    def select(self, candidates: list[CandidateView], prompt_tokens: int,
               ctx: RequestContext | None = None) -> Selection | None:
        """Return the chosen candidate, or None when no candidate can take the request."""


SELECTION_ALGORITHMS: dict[str, type[SelectionAlgorithm]] = {}


def register(cls: type[SelectionAlgorithm]) -> type[SelectionAlgorithm]:
    SELECTION_ALGORITHMS[cls.name] = cls
    return cls


def make_algorithm(name: str, options: dict[str, Any] | None = None,
                   build: AlgorithmBuild | None = None) -> SelectionAlgorithm:
    return SELECTION_ALGORITHMS[name](options, build)
