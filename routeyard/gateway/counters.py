"""Counting limits and spend: what an admission asks, what it gets, and the in-process
counters (the embedded default, with no Redis; exact for one process).

Windows are sliding, not fixed: RPM 10 admits at most 10 requests in any 60 seconds, however
they straddle a minute boundary. RPM keeps each request's time; TPM each request's tokens at
the time they were counted (prompt tokens on admission, completion tokens when the answer
ends), with a running sum. A concurrency slot is held from admission to settlement, with a
lease, so that a slot of a replica that died is freed in the end. A hard budget is checked
against what was spent plus what requests in flight have reserved (their expected cost), so
that concurrent requests cannot all slip under it at once.

Both implementations (this one and `redis_counters.py`) answer the same `admit`, `settle` and
`spend` with the same semantics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from routeyard.config.schema import LimitsConfig
from routeyard.state import Store, StoreUnavailable

log = logging.getLogger("routeyard.gateway")

WINDOW_S = 60.0
# Keep a finished period's spend a while, as the budget ledger does; `total` forever.
PERIOD_TTL_S: dict[str, float | None] = {"day": 3 * 86400.0, "month": 62 * 86400.0,
                                         "total": None}
SPEND_RECORD = "gw:spend:"  # + scope + ":" + period id: a total in USD (in-process counters)
_EPSILON = 1e-9
_FLUSH_S = 1.0

RefusalKind = Literal["rpm", "tpm", "parallel", "budget"]


# Not frozen: these are built per request, and a frozen dataclass's __init__ is slower.
@dataclass(slots=True)
class Charge:
    """One scope's part of an admission."""

    scope: str
    limits: LimitsConfig
    periods: tuple[str, ...]  # the current period id of each of limits.budgets
    tokens: int  # prompt tokens counted against TPM (0 without a TPM limit)
    reserved: float  # dollars held against hard budgets until settled
    tracked: bool  # holds a slot until settled (max_parallel or a hard budget)


@dataclass(frozen=True, slots=True)
class Refusal:
    kind: RefusalKind
    charge: int  # which charge (scope) refused
    retry_after_s: float
    budget: int = -1  # which of its budgets, for "budget"
    spent: float = 0.0  # that budget's spend
    used: int = 0  # tokens in the window, for "tpm"


@dataclass(slots=True)
class Admitted:
    spent: tuple[tuple[float, ...], ...]  # per charge, per budget: spend before this request
    at: int = 0  # when, on the counters' clock (ms; Redis's), for the settlement


@dataclass(slots=True)
class SettleScope:
    scope: str
    tracked: bool
    reserved: float  # what its admission held against hard budgets
    tokens: int  # counted on admission (0: no TPM entry to correct)
    tpm: bool  # the scope has a TPM limit: its window gets the correction and completion
    prompt_delta: int  # actual prompt tokens - counted ones
    completion: int
    admitted_at: int  # Admitted.at
    # (period id, seconds its spend is kept or 0: forever) of the day, month and total whose
    # spend grows by `cost`.
    periods: tuple[tuple[str, int], ...]


@dataclass(slots=True)
class Settlement:
    ticket: str
    cost: float
    scopes: tuple[SettleScope, ...]
    admitted: bool = True  # False: spend only, the request was never counted


class Counters(ABC):
    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open connections, start background work."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Write what is pending and release resources."""

    @abstractmethod
    async def admit(self, ticket: str, charges: list[Charge], lease_s: float
                    ) -> Admitted | Refusal:
        """Check every limit of every charge, then count them all, atomically: a refused
        request counts nowhere."""

    @abstractmethod
    def settle(self, settlement: Settlement) -> None:
        """Free the slots, correct the tokens, add the spend. Never blocks."""

    @abstractmethod
    async def spend(self, scopes: list[str], period: str) -> dict[str, float]:
        """The spend of each scope in a period id (reports; not on the request path)."""


# -- in-process counters ---------------------------------------------------------------------


@dataclass(slots=True)
class _Tokens:
    amount: int
    ticket: str


@dataclass(slots=True)
class _ScopeState:
    requests: deque[float] = field(default_factory=deque)  # admission times
    tokens: deque[tuple[float, _Tokens]] = field(default_factory=deque)
    token_sum: int = 0
    counted: dict[str, _Tokens] = field(default_factory=dict)  # ticket → its admission entry
    in_flight: dict[str, tuple[float, float]] = field(default_factory=dict)  # → (lease, $)
    reserved: float = 0.0

    def trim(self, now: float) -> None:
        cutoff = now - WINDOW_S
        while self.requests and self.requests[0] <= cutoff:
            self.requests.popleft()
        while self.tokens and self.tokens[0][0] <= cutoff:
            _, entry = self.tokens.popleft()
            self.token_sum -= entry.amount
            if self.counted.get(entry.ticket) is entry:
                del self.counted[entry.ticket]
        for ticket in [t for t, (lease, _) in self.in_flight.items() if lease <= now]:
            self.release(ticket)

    def release(self, ticket: str) -> None:
        found = self.in_flight.pop(ticket, None)
        if found is not None:
            self.reserved = max(0.0, self.reserved - found[1]) if self.in_flight else 0.0

    def token_wait(self, needed: int, limit: int, now: float) -> float:
        """Seconds until `needed` more tokens fit under `limit`."""
        used = self.token_sum
        for at, entry in self.tokens:
            used -= entry.amount
            if used + needed <= limit:
                return at + WINDOW_S - now
        return WINDOW_S


class LocalCounters(Counters):
    """Exact for one process (the event loop runs one admission at a time). Spend is kept in
    the store (written about once a second), so budgets outlive a restart."""

    def __init__(self, store: Store, *, monotonic: Callable[[], float] = time.monotonic
                 ) -> None:
        self.store = store
        self.monotonic = monotonic
        self._scopes: dict[str, _ScopeState] = {}
        self._spend: dict[tuple[str, str], float] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._loaded: set[tuple[str, str]] = set()  # totals that include the stored one
        self._loading: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._flush_every())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for key in self._dirty - self._loaded:  # spent before the stored total was read
            await self._spend_of(*key)
        await self._flush()

    async def admit(self, ticket: str, charges: list[Charge], lease_s: float
                    ) -> Admitted | Refusal:
        for charge in charges:
            for period in charge.periods:
                await self._spend_of(charge.scope, period)
        # From here on nothing awaits: the checks and the counting are one step.
        now = self.monotonic()
        states = [self._scopes.setdefault(c.scope, _ScopeState()) for c in charges]
        spent: list[tuple[float, ...]] = []
        for index, (charge, state) in enumerate(zip(charges, states, strict=True)):
            state.trim(now)
            limits = charge.limits
            if limits.rpm and len(state.requests) >= limits.rpm:
                return Refusal("rpm", index, state.requests[0] + WINDOW_S - now)
            if limits.tpm and state.token_sum + charge.tokens > limits.tpm:
                return Refusal("tpm", index, state.token_wait(charge.tokens, limits.tpm, now),
                               used=state.token_sum)
            if limits.max_parallel and len(state.in_flight) >= limits.max_parallel:
                return Refusal("parallel", index, 1.0)
            found = tuple(self._spend.get((charge.scope, p), 0.0) for p in charge.periods)
            for number, (budget, amount) in enumerate(zip(limits.budgets, found, strict=True)):
                if budget.mode == "hard" and amount + state.reserved >= \
                        budget.limit_usd - _EPSILON:
                    return Refusal("budget", index, 0.0, budget=number, spent=amount)
            spent.append(found)
        for charge, state in zip(charges, states, strict=True):
            if charge.limits.rpm:
                state.requests.append(now)
            if charge.limits.tpm and charge.tokens:
                entry = _Tokens(charge.tokens, ticket)
                state.tokens.append((now, entry))
                state.token_sum += charge.tokens
                state.counted[ticket] = entry
            if charge.tracked:
                state.in_flight[ticket] = (now + lease_s, charge.reserved)
                state.reserved += charge.reserved
        return Admitted(tuple(spent))

    def settle(self, settlement: Settlement) -> None:
        now = self.monotonic()
        for part in settlement.scopes:
            state = self._scopes.get(part.scope)
            if state is not None:
                if part.tracked:
                    state.release(settlement.ticket)
                if part.tpm:
                    _correct_tokens(state, settlement.ticket, part, now)
            if settlement.cost > 0:
                for period, _ in part.periods:
                    key = (part.scope, period)
                    self._spend[key] = self._spend.get(key, 0.0) + settlement.cost
                    self._dirty.add(key)

    async def spend(self, scopes: list[str], period: str) -> dict[str, float]:
        return {scope: await self._spend_of(scope, period) for scope in scopes}

    async def _spend_of(self, scope: str, period: str) -> float:
        """This period's spend of a scope, read from the store the first time (once, however
        many requests ask meanwhile)."""
        key = (scope, period)
        if key not in self._loaded:
            loading = self._loading.get(key)
            if loading is None:
                loading = self._loading[key] = asyncio.ensure_future(self._load(key))
            await asyncio.shield(loading)
        return self._spend.get(key, 0.0)

    async def _load(self, key: tuple[str, str]) -> None:
        try:
            raw = await self.store.get_value(f"{SPEND_RECORD}{key[0]}:{key[1]}")
        except StoreUnavailable:
            return  # counted from here on, and read again (and added) on the next request
        finally:
            self._loading.pop(key, None)
        # Settles may have landed meanwhile: the stored total adds to them.
        self._spend[key] = self._spend.get(key, 0.0) + (float(raw) if raw else 0.0)
        self._loaded.add(key)

    async def _flush_every(self) -> None:
        while True:
            await asyncio.sleep(_FLUSH_S)
            await self._flush()

    async def _flush(self) -> None:
        # Only totals that include what was stored: a partial one must not overwrite it.
        for key in [k for k in self._dirty if k in self._loaded]:
            scope, period = key
            ttl = PERIOD_TTL_S[period_kind(period)]
            try:
                await self.store.set_value(f"{SPEND_RECORD}{scope}:{period}",
                                           repr(self._spend[key]).encode(), ttl)
            except StoreUnavailable:
                log.warning("spend not saved: the store is down (retried in %.0f s)", _FLUSH_S)
                return
            self._dirty.discard(key)


def _correct_tokens(state: _ScopeState, ticket: str, part: SettleScope, now: float) -> None:
    """The answer's real token count replaces the estimate: the prompt's correction goes to
    the admission's entry (still in the window, or it no longer matters), the completion
    tokens are counted now, when they were spent."""
    entry = state.counted.pop(ticket, None)
    extra = part.completion
    if entry is not None:
        corrected = max(0, entry.amount + part.prompt_delta)
        state.token_sum += corrected - entry.amount
        entry.amount = corrected
    elif part.prompt_delta > 0:
        extra += part.prompt_delta
    if extra > 0:
        state.tokens.append((now, _Tokens(extra, ticket)))
        state.token_sum += extra


def period_kind(period: str) -> str:
    """day, month or total, from a period id (2025-01-31, 2025-01, total)."""
    if period == "total":
        return "total"
    return "day" if len(period) == 10 else "month"


def retry_after_header(seconds: float) -> dict[str, str]:
    """`retry-after` in whole seconds (at least 1) and `retry-after-ms`, which the openai SDK
    prefers."""
    seconds = max(seconds, 0.001)
    return {"retry-after": str(max(1, math.ceil(seconds))),
            "retry-after-ms": str(max(1, math.ceil(seconds * 1000)))}
