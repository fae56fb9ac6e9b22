"""Admission and settlement of one request against its caller's limits and budgets.

`admit` runs when a planned request is about to call a backend: it counts one request against
RPM, the prompt's tokens against TPM, takes a concurrency slot and reserves the expected cost
against hard budgets, in every scope of the caller (its key, its tenant) at once, or refuses
with a 429 that says which limit and when to retry. The `Ticket` it returns is settled exactly
once, by the accounting when the answer ends (streams too), or released if the request fails
before that: the slot is freed, the tokens corrected to the answer's usage, the cost spent.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from routeyard.errors import BudgetExceeded, LimiterUnavailable, RateLimited, RouteyardError
from routeyard.gateway.callers import Caller
from routeyard.gateway.counters import (
    PERIOD_TTL_S,
    Admitted,
    Charge,
    Counters,
    Refusal,
    Settlement,
    SettleScope,
    retry_after_header,
)
from routeyard.gateway.redis_counters import RedisDown
from routeyard.metrics import Metrics
from routeyard.selection.budget import Budget, BudgetState
from routeyard.selection.common import expected_output_tokens
from routeyard.selection.ledger import PERIODS, period_id
from routeyard.tokens import load_tokenizer

if TYPE_CHECKING:
    from routeyard.pool import PooledModel
    from routeyard.signals import RequestContext

log = logging.getLogger("routeyard.gateway")

EXPECTED_OUTPUT_TOKENS = 256  # a hard budget reserves this many when max_tokens is not set
_LIMIT_NAMES = {"rpm": "requests per minute", "tpm": "tokens per minute",
                "parallel": "concurrent requests"}


@dataclass(slots=True)
class Ticket:
    """One admitted request, to be settled exactly once."""

    id: str
    caller: Caller
    charges: tuple[Charge, ...]
    limiter: Limiter
    settled: bool = False
    admitted_at: int = 0  # on the counters' clock

    def settle(self, prompt_tokens: int, completion_tokens: int, cost_usd: float) -> None:
        if not self.settled:
            self.settled = True
            self.limiter.settle(self, prompt_tokens, completion_tokens, cost_usd)

    def release(self) -> None:
        """The request ended without an answer: nothing spent, its prompt tokens returned."""
        self.settle(0, 0, 0.0)


class Periods:
    """Period ids of a time, worked out once per minute (UTC days and months begin on a
    minute): `ids` by period, and `kept`: (id, seconds its spend is kept, 0: forever) of each
    period, as a settlement adds to them."""

    def __init__(self) -> None:
        self._minute = -1
        self.ids: dict[str, str] = {}
        self.kept: tuple[tuple[str, int], ...] = ()

    def at(self, now: float) -> Periods:
        minute = int(now // 60)
        if minute != self._minute:
            self.ids = {period: period_id(period, now) for period in PERIODS}
            self.kept = tuple((self.ids[p], int(PERIOD_TTL_S[p] or 0)) for p in PERIODS)
            self._minute = minute
        return self

    def current(self, period_ids: set[str]) -> set[str]:
        """Those of `period_ids` that are still current."""
        return period_ids & set(self.ids.values())


class Limiter:
    def __init__(self, counters: Counters, *, fail_open: bool, lease_s: float,
                 metrics: Metrics, clock: Callable[[], float] = time.time) -> None:
        self.counters = counters
        self.fail_open = fail_open
        self.lease_s = lease_s
        self.metrics = metrics
        self.clock = clock
        self.periods = Periods()
        # Spend per (scope, period id) of soft budgets as last seen: what they steer by.
        self._seen: dict[tuple[str, str], float] = {}
        self._prune_at = 10_000
        # Ticket ids: unique across replicas (a random prefix), cheap within one (a count).
        self._ticket_prefix = secrets.token_hex(6)
        self._tickets = itertools.count()

    async def admit(self, caller: Caller, ctx: RequestContext, model: PooledModel
                    ) -> Ticket | None:
        """The request's ticket; None for a caller nothing is counted for (no key)."""
        if not caller.scopes:
            return None
        ticket = Ticket(f"{self._ticket_prefix}{next(self._tickets):x}", caller, (), self)
        if not caller.counted:
            return ticket
        ids = self.periods.at(self.clock()).ids
        tokens, reserve = 0, 0.0
        charges: list[Charge] = []
        for scope in caller.scopes:
            if not scope.counted:
                continue
            limits = scope.limits
            if limits.tpm and not tokens:
                await load_tokenizer()  # once per process, in a thread
                tokens = ctx.prompt_tokens
            if scope.hard and not reserve:
                reserve = model.config.pricing.cost(
                    ctx.prompt_tokens, expected_output_tokens(EXPECTED_OUTPUT_TOKENS, ctx))
            charges.append(Charge(scope.id, limits,
                                  tuple([ids[budget.period] for budget in limits.budgets]),
                                  tokens if limits.tpm else 0, reserve if scope.hard else 0.0,
                                  scope.tracked))
        try:
            outcome = await self.counters.admit(ticket.id, charges, self.lease_s)
        except RedisDown:
            if not self.fail_open:
                self._refused("client_rate_limiter_unavailable")
                raise LimiterUnavailable(
                    "Limits cannot be checked right now (the limits store is down); retry "
                    "shortly.", headers=retry_after_header(1.0)) from None
            self.metrics.errors.labels("gateway_limits_unchecked").inc()
            return ticket  # let through uncounted: nothing to free when it settles
        if isinstance(outcome, Refusal):
            raise self._refusal_error(caller, charges, outcome)
        self._remember(charges, outcome)
        ticket.charges = tuple(charges)
        ticket.admitted_at = outcome.at
        return ticket

    def settle(self, ticket: Ticket, prompt_tokens: int, completion_tokens: int,
               cost_usd: float) -> None:
        if cost_usd <= 0 and not ticket.charges:
            return
        kept = self.periods.at(self.clock()).kept
        charged = {charge.scope: charge for charge in ticket.charges}
        parts = []
        for scope in ticket.caller.scopes:
            charge = charged.get(scope.id)
            if charge is not None:
                parts.append(SettleScope(scope.id, charge.tracked, charge.reserved, charge.tokens,
                                         bool(charge.limits.tpm), prompt_tokens - charge.tokens,
                                         completion_tokens, ticket.admitted_at, kept))
            elif cost_usd > 0 and scope.spends:  # spend only
                parts.append(SettleScope(scope.id, False, 0.0, 0, False, 0, 0, 0, kept))
            if cost_usd > 0 and scope.soft:
                for period, _ in kept:  # what a soft budget steers by, until seen again
                    key = (scope.id, period)
                    if key in self._seen:
                        self._seen[key] += cost_usd
        self.counters.settle(Settlement(ticket.id, cost_usd, tuple(parts),
                                        admitted=bool(ticket.charges)))

    def soft_state(self, caller: Caller, above: float = 0.0) -> BudgetState | None:
        """The caller's most spent soft budget (key's or tenant's), as last seen; None when it
        has none spent more than the fraction `above`."""
        if not caller.soft:
            return None
        ids = self.periods.at(self.clock()).ids
        tightest, most = None, above
        for scope in caller.scopes:
            for budget in scope.limits.budgets:
                if budget.mode == "soft":
                    spent = self._seen.get((scope.id, ids[budget.period]), 0.0)
                    if spent > most * budget.limit_usd:
                        tightest, most = (scope.id, budget, spent), spent / budget.limit_usd
        if tightest is None:
            return None
        scope_id, budget, spent = tightest
        return BudgetState(Budget(scope_id, budget.limit_usd, budget.period), spent)

    def _remember(self, charges: list[Charge], outcome: Admitted) -> None:
        if len(self._seen) > self._prune_at:  # ended periods' entries go
            current = self.periods.current({period for _, period in self._seen})
            self._seen = {k: v for k, v in self._seen.items() if k[1] in current}
            self._prune_at = max(10_000, 2 * len(self._seen))
        for charge, spent in zip(charges, outcome.spent, strict=True):
            for budget, period, amount in zip(charge.limits.budgets, charge.periods, spent,
                                              strict=True):
                if budget.mode == "soft":
                    self._seen[(charge.scope, period)] = amount

    def _refusal_error(self, caller: Caller, charges: list[Charge], refusal: Refusal
                       ) -> RouteyardError:
        charge = charges[refusal.charge]
        whose = _whose(caller, charge.scope)
        if refusal.kind == "budget":
            budget = charge.limits.budgets[refusal.budget]
            self._refused("client_budget_exceeded")
            headers = {"x-should-retry": "false"}
            if budget.period != "total":
                headers.update(retry_after_header(_until_next(budget.period, self.clock())))
            return BudgetExceeded(
                f"The {budget.period} budget of {whose} is spent: ${refusal.spent:.4f} of "
                f"${budget.limit_usd:g} (with requests in flight counted at their expected "
                "cost).", headers=headers)
        limit = {"rpm": charge.limits.rpm, "tpm": charge.limits.tpm,
                 "parallel": charge.limits.max_parallel}[refusal.kind]
        detail = ""
        if refusal.kind == "tpm":
            detail = f" ({refusal.used} used in the last 60 s, {charge.tokens} requested)"
        self._refused("client_rate_limit_exceeded")
        return RateLimited(
            f"Rate limit of {whose} reached: {limit} {_LIMIT_NAMES[refusal.kind]}{detail}. "
            f"Retry after {max(refusal.retry_after_s, 0.001):.3f} s.",
            headers=retry_after_header(refusal.retry_after_s))

    def _refused(self, kind: str) -> None:
        self.metrics.errors.labels(kind).inc()


def _whose(caller: Caller, scope: str) -> str:
    if scope.startswith("tenant:"):
        return f"tenant '{scope[7:]}'"
    return f"key {caller.key_id}"


def _until_next(period: str, now: float) -> float:
    """Seconds until the current UTC day or month ends."""
    moment = datetime.fromtimestamp(now, UTC)
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        end = start + timedelta(days=1)
    else:
        end = (start.replace(day=1) + timedelta(days=32)).replace(day=1)
    return (end - moment).total_seconds()
