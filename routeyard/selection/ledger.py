"""Spend tracking for budget-aware selection: running totals per scope and period.

The hot path (`record`, `spent`) touches only in-memory dicts. About once a second a background
task writes this replica's totals to the store and reads the other replicas' back, so replicas
sharing a store (Redis) see each other's spend approximately (at most ~1 s stale).

The Store API has no atomic increment, so each replica writes its own cumulative total under
its own slot key and readers sum the slots:

    budget:{scope_key}:{period_id}:claim:{i}   set-once marker: slot i is taken
    budget:{scope_key}:{period_id}:{i}         that slot's total, in USD (ASCII float)

A replica claims the lowest free slot the first time it flushes a (scope, period); a
restarted replica takes a new slot, so the spend it wrote before the restart still counts.
Scope keys never hold a value in clear: API keys (and header/metadata values) become SHA-256
prefixes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from routeyard.state import Store

if TYPE_CHECKING:
    from routeyard.signals.base import RequestContext

log = logging.getLogger("routeyard.ledger")

PERIODS = ("day", "month", "total")
FLUSH_INTERVAL_S = 1.0
# Keep a finished period's keys a while after it ends (a day, a month), then let them expire.
_PERIOD_TTL_S = {"day": 3 * 86400.0, "month": 62 * 86400.0, "total": None}
_HASH_CHARS = 16

Spawn = Callable[[Coroutine[Any, Any, None]], Any]


def hashed(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:_HASH_CHARS]


def check_scope(scope: object) -> str:
    """A budget scope as configured: api_key, global, header:<name> or metadata:<key>."""
    if scope in ("api_key", "global"):
        return str(scope)
    if isinstance(scope, str) and scope.partition(":")[0] in ("header", "metadata") \
            and scope.partition(":")[2]:
        kind, _, name = scope.partition(":")
        return f"{kind}:{name.lower()}" if kind == "header" else scope
    raise ValueError(f"budget scope must be api_key, global, header:<name> or metadata:<key>, "
                     f"not {scope!r}")


def scope_key(scope: str, ctx: RequestContext | None) -> str | None:
    """The ledger key of a request under a scope, or None when the scope does not apply
    (no API key, header or metadata value on this request)."""
    if scope == "global":
        return "global"
    if ctx is None:
        return None
    value: object
    if scope == "api_key":
        value = ctx.api_key()
    elif scope.startswith("header:"):
        headers: Mapping[str, str] = ctx.headers
        name = scope[7:]
        value = headers.get(name)
        if value is None:  # plain dicts from library callers may keep their own case
            value = next((v for k, v in headers.items() if k.lower() == name), None)
    else:
        metadata = ctx.body.get("metadata")
        value = metadata.get(scope[9:]) if isinstance(metadata, dict) else None
    if value is None or value == "" or isinstance(value, dict | list):
        return None
    return f"{scope}:{hashed(str(value))}"  # hashed: keys never carry a secret in clear


def period_id(period: str, now: float) -> str:
    """The UTC period a unix time falls in: 2025-01-31, 2025-01 or total."""
    if period == "total":
        return "total"
    moment = datetime.fromtimestamp(now, UTC)
    if period == "day":
        return moment.strftime("%Y-%m-%d")
    if period == "month":
        return moment.strftime("%Y-%m")
    raise ValueError(f"budget period must be day, month or total, not {period!r}")


class BudgetLedger:
    """Spend per (scope key, period), local totals plus the other replicas' last-read sums."""

    def __init__(self, store: Store | None = None, *, clock: Callable[[], float] = time.time,
                 flush_interval_s: float = FLUSH_INTERVAL_S, spawn: Spawn | None = None,
                 scopes: Iterable[str] = ()) -> None:
        """`clock` gives unix time (periods); `spawn` runs the background sync (the Router's,
        so that closing it waits for the last flush)."""
        self.store = store
        self.clock = clock
        self.flush_interval_s = flush_interval_s
        self.spawn = spawn
        self.scopes: set[str] = set(scopes)  # what budgets exist: what the accounting records
        self._local: dict[tuple[str, str], float] = {}  # this replica, since it started
        self._others: dict[tuple[str, str], float] = {}  # every other slot, at last refresh
        self._dirty: set[tuple[str, str]] = set()
        self._watched: set[tuple[str, str]] = set()  # (scope key, period) that spent() read
        self._slots: dict[tuple[str, str], int] = {}
        self._last_sync = time.monotonic()
        self._pending = False  # a delayed sync is scheduled
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def watch_scopes(self, scopes: Iterable[str]) -> None:
        """Record spend under these scopes from now on (a budget-aware algorithm's)."""
        self.scopes.update(scopes)

    # -- hot path ------------------------------------------------------------------------

    def record(self, key: str, cost_usd: float) -> None:
        """Add spend to every period of a scope key (the budgets decide which one counts)."""
        if cost_usd <= 0:
            return
        now = self.clock()
        for period in PERIODS:
            slot = (key, period_id(period, now))
            self._local[slot] = self._local.get(slot, 0.0) + cost_usd
            self._dirty.add(slot)
        self._schedule()

    def spent(self, key: str, period: str = "total") -> float:
        """Spend so far in the current period: ours exactly, other replicas' as last read."""
        slot = (key, period_id(period, self.clock()))
        if self.store is not None:
            self._watched.add((key, period))
            self._schedule()
        return self._local.get(slot, 0.0) + self._others.get(slot, 0.0)

    def record_request(self, ctx: RequestContext | None, cost_usd: float) -> None:
        """Record one request's cost under every configured scope that applies to it."""
        if cost_usd <= 0:
            return
        for scope in self.scopes:
            key = scope_key(scope, ctx)
            if key is not None:
                self.record(key, cost_usd)

    # -- sync with the store -------------------------------------------------------------

    def _schedule(self) -> None:
        """Start one delayed sync if none is pending (only inside a running loop)."""
        if self.store is None or self._pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._pending = True
        delay = max(0.0, self._last_sync + self.flush_interval_s - time.monotonic())
        coroutine = self._sync_later(delay)
        if self.spawn is not None:
            self.spawn(coroutine)
        else:
            self._task = loop.create_task(coroutine)  # kept: a bare task may be collected

    async def _sync_later(self, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            await self.sync()
        except Exception as exc:  # a store outage must not break serving
            log.warning("budget ledger sync failed: %s", exc)
        finally:
            self._pending = False

    async def sync(self) -> None:
        """Flush our totals, then read the other replicas' (what the background task runs)."""
        await self.flush()
        await self.refresh()

    async def flush(self) -> None:
        """Write this replica's dirty totals under its own slot keys."""
        if self.store is None:
            return
        async with self._lock:
            self._last_sync = time.monotonic()
            for slot in list(self._dirty):
                key, pid = slot
                ttl = _PERIOD_TTL_S[_period_of(pid)]
                index = self._slots.get(slot)
                if index is None:
                    index = await self._claim_slot(key, pid, ttl)
                    self._slots[slot] = index
                await self.store.set_value(f"budget:{key}:{pid}:{index}",
                                           repr(self._local[slot]).encode(), ttl)
                self._dirty.discard(slot)
            self._forget_past_periods()

    async def refresh(self) -> None:
        """Sum the other replicas' slots for every (scope, period) that selection reads."""
        if self.store is None:
            return
        now = self.clock()
        # Only what selection read since the last refresh: idle scope keys cost nothing.
        watched, self._watched = self._watched, set()
        for key, period in watched:
            pid = period_id(period, now)
            mine = self._slots.get((key, pid))
            total, index = 0.0, 0
            while await self.store.get_value(f"budget:{key}:{pid}:claim:{index}") is not None:
                if index != mine:
                    raw = await self.store.get_value(f"budget:{key}:{pid}:{index}")
                    total += _parse(raw)
                index += 1
            self._others[(key, pid)] = total

    async def _claim_slot(self, key: str, pid: str, ttl: float | None) -> int:
        assert self.store is not None
        index = 0
        while not await self.store.claim(f"budget:{key}:{pid}:claim:{index}", ttl):
            index += 1
        return index

    def _forget_past_periods(self) -> None:
        """Drop flushed totals of periods that have ended, so memory stays bounded."""
        now = self.clock()
        current = {period_id(p, now) for p in PERIODS}
        for store in (self._local, self._others):
            for slot in [s for s in store if s[1] not in current and s not in self._dirty]:
                del store[slot]
        for slot in [s for s in self._slots if s[1] not in current]:
            del self._slots[slot]


def _period_of(pid: str) -> str:
    if pid == "total":
        return "total"
    return "day" if len(pid) == 10 else "month"


def _parse(raw: bytes | None) -> float:
    try:
        return float(raw) if raw is not None else 0.0
    except ValueError:
        return 0.0
