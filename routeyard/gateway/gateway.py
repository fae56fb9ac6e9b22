"""The gateway as the Router builds it: keys, limits and budgets, and their administration.

A request meets it three times:

    caller(headers, model)   who asks (a dict lookup for a known key), and may it ask for
                             this model; then the planner, steered by the caller's soft budget
    admit(plan)              before a backend is called: limits and hard budgets, counted
    ticket.settle(...)       by the accounting when the answer ends (release() if it never
                             does): slots freed, tokens corrected, cost spent
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from routeyard.config.schema import RouteyardConfig
from routeyard.gateway.admin import KeyAdmin
from routeyard.gateway.callers import EDGE_CALLER, Caller
from routeyard.gateway.counters import Counters, LocalCounters
from routeyard.gateway.keys import KeyRing
from routeyard.gateway.limiter import Limiter, Ticket
from routeyard.gateway.redis_counters import RedisCounters
from routeyard.gateway.steer import STEERS_FROM, SoftBudgetSteer
from routeyard.metrics import Metrics
from routeyard.state import Store

if TYPE_CHECKING:
    from routeyard.pool import PooledModel
    from routeyard.signals import RequestContext

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"  # what `state.backend: redis` uses by default


class Admissible(Protocol):
    """What admission reads of a planned request (a RoutePlan)."""

    caller: Caller | None
    ticket: Ticket | None
    context: RequestContext
    models: list[PooledModel]


class Gateway:
    def __init__(self, config: RouteyardConfig, store: Store, metrics: Metrics) -> None:
        settings = config.gateway
        self.keys = KeyRing(store, user_keys=config.server.api_keys,
                            admin_keys=config.server.admin_keys, cache_s=settings.key_cache_s,
                            static_limits=settings.static_key_limits)
        self.limiter = Limiter(counters_for(config, store, settings.slot_lease_s),
                               fail_open=settings.on_redis_down == "fail_open",
                               lease_s=settings.slot_lease_s, metrics=metrics)
        self.admin = KeyAdmin(store, self.keys, self.limiter)

    async def start(self) -> None:
        await self.limiter.counters.start()

    async def close(self) -> None:
        await self.limiter.counters.close()

    async def caller(self, headers: Mapping[str, str] | None, model: str) -> Caller:
        """The request's caller (as the HTTP edge resolved it, else from its key), once it
        may ask for `model` (else a 403)."""
        caller = EDGE_CALLER.get() or await self.keys.caller_of(headers)
        caller.check_model(model)
        return caller

    def steer(self, caller: Caller) -> SoftBudgetSteer | None:
        """The caller's soft budget, once it is spent enough to change a selection."""
        state = self.limiter.soft_state(caller, above=STEERS_FROM)
        return SoftBudgetSteer(state) if state is not None else None

    async def admit(self, plan: Admissible) -> None:
        """Count the planned request against its caller's limits, or refuse it (429)."""
        if plan.caller is None:  # planned without the Router (embeddings)
            # No headers at all: a library call (an HTTP request always has some).
            plan.caller = await self.caller(plan.context.headers or None,
                                            plan.context.body["model"])
        plan.ticket = await self.limiter.admit(plan.caller, plan.context, plan.models[0])

    @staticmethod
    def release(plan: Admissible) -> None:
        """The request is over: if the accounting did not settle it, nothing was spent."""
        if plan.ticket is not None:
            plan.ticket.release()


def counters_for(config: RouteyardConfig, store: Store, lease_s: float) -> Counters:
    """Redis when the config names one (exact across replicas), else in this process."""
    state = config.state
    url = state.redis_url or (DEFAULT_REDIS_URL if state.backend == "redis" else None)
    if url is None:
        return LocalCounters(store)
    return RedisCounters(url, key_prefix=state.key_prefix,
                         timeout_s=config.gateway.redis_timeout_s, lease_s=lease_s)
