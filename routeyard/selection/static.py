"""Static selection: the first candidate, or the first one that is healthy right now."""

from __future__ import annotations

from typing import TYPE_CHECKING

from routeyard.selection.base import CandidateView, Selection, SelectionAlgorithm, register

if TYPE_CHECKING:
    from routeyard.signals.base import RequestContext


@register
class StaticSelection(SelectionAlgorithm):
    """Always the first candidate whose context window fits; failover handles outages."""

    name = "static"

    def select(self, candidates: list[CandidateView], prompt_tokens: int,
               ctx: RequestContext | None = None) -> Selection | None:
        for index, candidate in enumerate(candidates):
            if candidate.fits(prompt_tokens):
                reason = "first candidate" if index == 0 else "first candidate whose context fits"
                return Selection(candidate.name, reason)
        return None


@register
class FirstHealthySelection(SelectionAlgorithm):
    """The first candidate that fits and has an endpoint whose breaker lets requests through."""

    name = "first_healthy"

    def select(self, candidates: list[CandidateView], prompt_tokens: int,
               ctx: RequestContext | None = None) -> Selection | None:
        fitting = [c for c in candidates if c.fits(prompt_tokens)]
        for candidate in fitting:
            if candidate.is_available():
                return Selection(candidate.name, "first healthy candidate that fits")
        if fitting:
            # Nothing is healthy now; the executor will fail fast unless a breaker re-opens.
            return Selection(fitting[0].name, "no candidate healthy; the first that fits")
        return None
