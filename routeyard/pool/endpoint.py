"""Per-endpoint run-time state: outstanding requests, circuit breaker, health."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from routeyard.config.schema import ModelConfig
from routeyard.pool.backend_metrics import BackendLoad
from routeyard.pool.preference import EndpointPreference
from routeyard.pool.providers.base import EndpointTarget, Provider


@dataclass(slots=True)
class CircuitBreaker:
    """Opens after N consecutive failures; after the cooldown lets one probe through.

    closed → (threshold failures) → open → (cooldown) → half-open: one request is let
    through; its success closes the breaker, its failure opens it again.
    """

    failure_threshold: int
    cooldown_s: float
    consecutive_failures: int = 0
    opened_at: float | None = None
    probe_in_flight: bool = False
    # Injectable so tests can step through the cooldown without sleeping.
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at >= self.cooldown_s:
            return "half_open"
        return "open"

    def allows(self) -> bool:
        state = self.state
        return state == "closed" or (state == "half_open" and not self.probe_in_flight)

    def on_attempt(self) -> None:
        if self.opened_at is not None:
            self.probe_in_flight = True

    def on_success(self) -> None:
        self.consecutive_failures = 0
        self.opened_at = None
        self.probe_in_flight = False

    def on_abandoned(self) -> None:
        self.probe_in_flight = False

    def on_failure(self) -> None:
        self.consecutive_failures += 1
        self.probe_in_flight = False
        if self.opened_at is not None or self.consecutive_failures >= self.failure_threshold:
            self.opened_at = self.clock()


@dataclass(slots=True, eq=False)  # identity semantics: each endpoint is one live thing
class Endpoint:
    name: str
    model: str
    target: EndpointTarget
    provider: Provider
    weight: float
    breaker: CircuitBreaker
    healthy: bool = True  # set by active health checks
    outstanding: int = 0
    # The backend's own reported load (backend_metrics.py); None: its metrics are not scraped.
    backend_load: BackendLoad | None = None

    def is_available(self) -> bool:
        return self.healthy and self.breaker.allows()

    def in_flight(self) -> float:
        """Requests this endpoint is working on: Routeyard's own count, or, while a scraped
        reading is fresh, the backend's (see `BackendLoad.in_flight`)."""
        scraped = self.backend_load
        if scraped is None:
            return self.outstanding
        return scraped.in_flight(self.outstanding, time.monotonic())

    def load(self) -> float:
        """Least-in-flight-requests score, weighted: lower is better."""
        return (self.in_flight() + 1) / self.weight


@dataclass(slots=True, eq=False)
class PooledModel:
    """A model with its endpoints; satisfies selection's CandidateView."""

    name: str
    config: ModelConfig
    endpoints: list[Endpoint] = field(default_factory=list)

    def is_available(self) -> bool:
        return any(endpoint.is_available() for endpoint in self.endpoints)

    def fits(self, prompt_tokens: int) -> bool:
        return prompt_tokens <= self.config.context_window

    def endpoints_in_order(self, prefer: EndpointPreference | None = None) -> list[Endpoint]:
        """Endpoints by weighted load, lowest first; a session's preferred endpoint of this
        model first when it may be (see preference.py). The executor skips unavailable ones."""
        if len(self.endpoints) == 1:
            return self.endpoints
        ordered = sorted(self.endpoints, key=Endpoint.load)
        if prefer is None or prefer.model != self.name:
            return ordered
        return _preferred_first(ordered, prefer)


def _preferred_first(ordered: list[Endpoint], prefer: EndpointPreference) -> list[Endpoint]:
    """`ordered` (by load, lowest first) with the preferred endpoint moved to the front, or
    unchanged: when it is gone (a reload removed it), unavailable, or overloaded."""
    preferred = next((e for e in ordered if e.name == prefer.endpoint), None)
    if preferred is None or preferred is ordered[0] or not preferred.is_available():
        return ordered
    least = next((e for e in ordered if e.is_available()), preferred)
    if preferred.load() - least.load() > prefer.max_extra_load:
        return ordered  # a hot session endpoint: spread the load; the cache rebuilds elsewhere
    return [preferred, *(e for e in ordered if e is not preferred)]
