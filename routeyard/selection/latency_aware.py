"""Load- and latency-aware selection: `latency_aware` (observed TTFT/TPOT) and `load_aware`
(requests in flight per unit endpoint weight: Routeyard's own count, or the backends' scraped
queues when their metrics are scraped, docs/pool.md#backend-metrics)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from routeyard.pool.latency import LatencyTracker
from routeyard.selection.base import (
    AlgorithmBuild,
    CandidateView,
    Selection,
    SelectionAlgorithm,
    register,
)
from routeyard.selection.common import eligible, expected_output_tokens, number

if TYPE_CHECKING:
    from routeyard.signals.base import RequestContext


@register
class LatencyAwareSelection(SelectionAlgorithm):
    """Lowest expected latency = TTFT + expected output tokens * TPOT, both EWMAs of what the
    pool observed. A model with no (or only stale) observations is tried first: its expected
    latency counts as 0, so every candidate gets measured."""

    name = "latency_aware"

    def __init__(self, options: dict[str, Any] | None = None, build: AlgorithmBuild | None = None):
        super().__init__(options, build)
        self.output_tokens = int(number(self.options, "expected_output_tokens", 256))
        # The pool's observations, shared with the executor that records them.
        tracker = self.build.tracker  # an empty tracker is falsy: test against None
        self.tracker = tracker if tracker is not None else LatencyTracker()

    def select(self, candidates: list[CandidateView], prompt_tokens: int,
               ctx: RequestContext | None = None) -> Selection | None:
        pool, note = eligible(candidates, prompt_tokens)
        if not pool:
            return None
        output = expected_output_tokens(self.output_tokens, ctx)
        best_index, best_latency = 0, float("inf")
        for index, candidate in enumerate(pool):
            estimate = self.tracker.estimate(candidate)
            if estimate is None:
                return Selection(candidate.name,
                                 f"latency_aware: no recent latency observed for it yet; "
                                 f"trying it{note}")
            ttft, tpot = estimate
            latency = ttft + output * tpot
            if latency < best_latency:
                best_index, best_latency = index, latency
        return Selection(pool[best_index].name,
                         f"latency_aware: lowest expected latency {best_latency * 1000:.0f} ms "
                         f"(TTFT + {output} tokens * TPOT){note}")


@register
class LoadAwareSelection(SelectionAlgorithm):
    """The candidate whose available endpoints carry the fewest requests in flight per unit
    of weight (`Endpoint.in_flight`; ties: the first listed)."""

    name = "load_aware"

    def select(self, candidates: list[CandidateView], prompt_tokens: int,
               ctx: RequestContext | None = None) -> Selection | None:
        pool, note = eligible(candidates, prompt_tokens)
        if not pool:
            return None
        best_index, best_load = 0, float("inf")
        for index, candidate in enumerate(pool):
            endpoints = [e for e in candidate.endpoints  # type: ignore[attr-defined]
                         if e.is_available()] or candidate.endpoints  # type: ignore[attr-defined]
            weight = sum(e.weight for e in endpoints)
            load = sum(e.in_flight() for e in endpoints) / weight if weight > 0 else float("inf")
            if load < best_load:
                best_index, best_load = index, load
        return Selection(pool[best_index].name,
                         f"load_aware: least loaded, {best_load:.2f} requests in flight per "
                         f"unit of endpoint weight{note}")
