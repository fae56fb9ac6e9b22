"""The selection contract: candidates in, one chosen model (plus the reason) out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Protocol


class CandidateView(Protocol):
    """What selection may know of a model: its config facts and current availability."""

    name: str

    def is_available(self) -> bool: ...

    def fits(self, prompt_tokens: int) -> bool: ...


@dataclass(slots=True, frozen=True)
class Selection:
    model: str
    reason: str


class SelectionAlgorithm(ABC):
    name: ClassVar[str]

    @abstractmethod
    def select(self, candidates: list[CandidateView], prompt_tokens: int) -> Selection | None:
        """Return the chosen candidate, or None when no candidate can take the request."""


SELECTION_ALGORITHMS: dict[str, type[SelectionAlgorithm]] = {}


def register(cls: type[SelectionAlgorithm]) -> type[SelectionAlgorithm]:
    SELECTION_ALGORITHMS[cls.name] = cls
    return cls


def make_algorithm(name: str) -> SelectionAlgorithm:
    return SELECTION_ALGORITHMS[name]()
