"""Limits and spend counted in Redis, exact across replicas: each admission is checked and
counted by one Lua script (`redis_scripts.py`) in one round trip, for every counter of the
request (its key's and its tenant's) at once, all or nothing. Nothing is read in Python and
written back, so two replicas can never both take the last request of a limit.

Admissions that arrive while a round trip is on its way go together in the next one (one
atomic script run, each admission still all or nothing on its own). Settlements (a slot
freed, tokens corrected, spend added) are the other script, sent in the same write as the next
admissions (or alone after a millisecond), with the spend of a batch summed per key: one round
trip per request at concurrency 1, far fewer under load.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from routeyard.gateway.counters import Admitted, Charge, Counters, Refusal, Settlement
from routeyard.gateway.redis_scripts import ADMIT, SETTLE
from routeyard.gateway.scripts import ScriptClient, ScriptError

log = logging.getLogger("routeyard.gateway")

DOWN_FOR_S = 1.0  # after a failure, requests skip Redis this long (the on_redis_down policy)
# A settlement waits this long for an admission to go with, then goes alone. Meanwhile its slot
# still counts: at most this much longer than the request.
SETTLE_LINGER_S = 0.001
# Under load (at least _BUSY_AT requests admitted and not settled), an admission waits this long
# for others to share its round trip.
ADMIT_LINGER_S = 0.0005
_BUSY_AT = 2
_MAX_BATCH = 256
_MAX_PENDING_SETTLES = 100_000

Encoded = list[object]  # one admission, as the script reads it
# One settlement: the request's slots and tokens, and its spend as (key, ttl s, dollars).
Settled = tuple[list[object], list[tuple[str, int, float]]]


class RedisDown(RuntimeError):
    """Redis could not be reached for an admission."""


def slot(ticket: str, reserved: float) -> str:
    """A request's member of :par, carrying what it reserved (freed with it on lease end)."""
    return f"{ticket}|{reserved!r}"


class _RoundTrips:
    """The queues of admissions and settlements, and the round trips that carry them.

    A round trip writes the settlements waiting (run first: they free slots) and the
    admissions waiting, two scripts in one write, and reads both replies in one read. One
    round trip with admissions is on its way at a time: admissions that arrive meanwhile go
    together in the next, and under load (requests admitted and not yet settled) an admission
    that finds none on its way waits up to `ADMIT_LINGER_S` for others to share it: a write
    and a read cost more than the scripts. Settlements ride with the next admissions; when no
    request is in flight (a lone client: the next admission is a whole request away) they go
    at once, else after `SETTLE_LINGER_S` alone. An admission never waits for a round trip
    that carries only settlements: it is written behind it on the same pipelined connection,
    and Redis runs the two in order. Round trips run in tasks of their own, so a request that
    goes away while its admission is on its way cancels nothing else."""

    def __init__(self, client: ScriptClient, lease_ms: int,
                 down: Callable[[BaseException], None]) -> None:
        self.client = client
        self.lease_ms = lease_ms
        self.down = down
        self.admissions: list[tuple[Encoded, asyncio.Future[bytes]]] = []
        self.settlements: list[Settled] = []
        self.admitting = False  # a round trip with admissions is on its way
        self.tasks: set[asyncio.Task[None]] = set()  # round trips on their way
        self.timer: asyncio.TimerHandle | None = None  # lingering, or a retry's
        self.timer_at = 0.0  # when it fires (loop time; uvloop's handles do not say)
        self.retrying = False  # Redis did not answer: settlements wait for the timer
        self.open = 0  # requests admitted whose settlement has not come yet

    async def admit(self, encoded: Encoded) -> bytes:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        self.admissions.append((encoded, future))
        if self.open < _BUSY_AT or self.admitting or self.retrying:
            self.drain()
        elif self.timer is None or self.timer_at > loop.time() + ADMIT_LINGER_S:
            self._wake_in(ADMIT_LINGER_S)  # sooner than a settlement's linger
        return await future

    def settle(self, settled: Settled, admitted: bool) -> None:
        """`admitted`: the settlement of an admitted request (not only spend)."""
        if admitted:
            self.open = max(0, self.open - 1)
        if len(self.settlements) >= _MAX_PENDING_SETTLES:
            del self.settlements[0]
            log.warning("a settlement was dropped: Redis has been unreachable too long")
        self.settlements.append(settled)
        if self.retrying or self.tasks:
            return  # sent when Redis answers again, or after the round trip on its way
        if self.open == 0 and not self.admissions:
            self.drain()
        elif self.timer is None:
            self._wake_in(SETTLE_LINGER_S)

    def _wake_in(self, delay_s: float) -> None:
        """Send what is queued in `delay_s` (instead of when the timer said so far)."""
        if self.timer is not None:
            self.timer.cancel()
        loop = asyncio.get_running_loop()
        self.timer_at = loop.time() + delay_s
        self.timer = loop.call_later(delay_s, self._timed)

    def _timed(self) -> None:
        self.timer, self.retrying = None, False
        self.drain()

    def drain(self) -> None:
        """Start a round trip with what is queued, if one may go now."""
        if self.admitting or (self.tasks and not self.admissions):
            return
        if self.admissions or (self.settlements and not self.retrying):
            task = asyncio.get_running_loop().create_task(self._round_trip())
            self.tasks.add(task)
            task.add_done_callback(self._trip_done)

    def _trip_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a round trip to Redis failed unexpectedly", exc_info=task.exception())
            return  # not again at once: the next admission or settlement tries
        self.drain()  # what arrived while it was on its way

    async def _round_trip(self) -> None:
        """One round trip with the heads of both queues, taken off them as it is written."""
        if self.timer is not None and not self.retrying:  # the settlements go now
            self.timer.cancel()
            self.timer = None
        admissions = self.admissions[:_MAX_BATCH]
        settlements = [] if self.retrying else self.settlements[:_MAX_BATCH]
        del self.admissions[:len(admissions)]
        del self.settlements[:len(settlements)]
        calls = []
        if settlements:
            calls.append((SETTLE, _settle_payload(self.lease_ms, settlements)))
        if admissions:
            calls.append((ADMIT, orjson.dumps([self.lease_ms, [e for e, _ in admissions]])))
        self.admitting = bool(admissions)
        try:
            replies = await self.client.run_all(calls)
        except ScriptError as error:
            self.settlements[:0] = settlements  # sent again once Redis answers
            self._failed(error, admissions)
            return
        except BaseException as error:  # cancelled at shutdown, or a bug: nothing may hang
            self.settlements[:0] = settlements
            for _, future in admissions:
                if not future.done():
                    future.set_exception(RedisDown(f"the admission was not sent: {error!r}"))
            raise
        finally:
            if admissions:
                self.admitting = False
        if admissions:
            lines = replies[-1]
            assert isinstance(lines, bytes)
            for (encoded, future), line in zip(admissions, lines.split(b"\n"), strict=True):
                if not future.done():
                    future.set_result(line)
                    self.open += line.startswith(b"ok|")
                elif line.startswith(b"ok|"):  # admitted, but its request went away
                    self.settle(_abandoned(encoded, int(line.split(b"|")[1])), admitted=False)

    def _failed(self, error: ScriptError,
                admissions: list[tuple[Encoded, asyncio.Future[bytes]]]) -> None:
        """Admissions fail (the on_redis_down policy answers them); settlements are kept and
        sent again once Redis answers."""
        self.down(error)
        waiting, self.admissions = admissions + self.admissions, []
        for _, future in waiting:
            if not future.done():
                future.set_exception(RedisDown(str(error)))
        if self.settlements and not self.retrying:
            self._wake_in(DOWN_FOR_S)
            self.retrying = True

    async def close(self) -> None:
        """Send what is left (one last try if Redis was down)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.retrying = False
        while self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.settlements:
            self.admitting = False
            await self._round_trip()


def _abandoned(encoded: Encoded, at: int) -> Settled:
    """The settlement of an admission nobody waits for: its slots and tokens given back."""
    ticket, _, scopes = encoded
    parts = [(base, slot_, reserved, tpm > 0, tokens, -tokens, 0, at)
             for base, _, tpm, _, tokens, reserved, slot_, _ in scopes]  # type: ignore[misc]
    return [ticket, parts], []


def _settle_payload(lease_ms: int, batch: list[Settled]) -> bytes:
    """Each settlement's slots and tokens, and the spend of all, summed per key."""
    settled: list[object] = []
    spent: dict[str, tuple[int, float]] = {}
    for request, costs in batch:
        if request[1]:
            settled.append(request)
        for key, ttl, cost in costs:
            spent[key] = (ttl, spent.get(key, (ttl, 0.0))[1] + cost)
    return orjson.dumps([lease_ms, settled,
                         [[key, ttl, cost] for key, (ttl, cost) in spent.items()]])


class RedisCounters(Counters):
    def __init__(self, url: str, *, key_prefix: str, timeout_s: float, lease_s: float = 900.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        """`lease_s`: the longest lease an admission takes (counters idle longer than that
        and a window go)."""
        self.base = f"{key_prefix}:gw:"
        self.monotonic = monotonic
        # The scripts run on a lean pipelined connection (scripts.py); reports use redis-py.
        # No retries: a failure switches to the on_redis_down policy at once.
        self._scripts = ScriptClient(url, timeout_s=timeout_s)
        self._redis = aioredis.Redis.from_url(url, socket_connect_timeout=timeout_s,
                                              socket_timeout=timeout_s,
                                              retry=Retry(NoBackoff(), 0))
        self._trips = _RoundTrips(self._scripts, round(lease_s * 1000), self._went_down)
        self._down_until = 0.0

    async def close(self) -> None:
        await self._trips.close()
        if self._trips.settlements:
            log.warning("%d settlements not written: Redis is down",
                        len(self._trips.settlements))
        await self._scripts.close()
        await self._redis.aclose()

    def _is_down(self) -> bool:
        return self.monotonic() < self._down_until

    def _went_down(self, error: BaseException) -> None:
        if not self._is_down():
            log.warning("Redis for limits is unreachable (%s): applying on_redis_down for "
                        "%.0f s", error, DOWN_FOR_S)
        self._down_until = self.monotonic() + DOWN_FOR_S

    async def admit(self, ticket: str, charges: list[Charge], lease_s: float
                    ) -> Admitted | Refusal:
        if self._is_down():
            raise RedisDown("Redis was unreachable less than a second ago")
        scopes = [(self.base + c.scope, c.limits.rpm or 0, c.limits.tpm or 0,
                   c.limits.max_parallel or 0, c.tokens, c.reserved,
                   slot(ticket, c.reserved) if c.tracked else False,
                   [(period, budget.limit_usd, budget.mode == "hard")
                    for budget, period in zip(c.limits.budgets, c.periods, strict=True)])
                  for c in charges]
        return _parse(await self._trips.admit([ticket, round(lease_s * 1000), scopes]), charges)

    def settle(self, settlement: Settlement) -> None:
        ticket, cost = settlement.ticket, settlement.cost
        request = [ticket, [
            (self.base + part.scope, slot(ticket, part.reserved) if part.tracked else False,
             part.reserved, part.tpm, part.tokens, part.prompt_delta, part.completion,
             part.admitted_at)
            for part in settlement.scopes if part.tracked or part.tpm]]
        costs = [(f"{self.base}{part.scope}:spend:{period}", ttl, cost)
                 for part in settlement.scopes for period, ttl in part.periods] if cost > 0 else []
        self._trips.settle((request, costs), settlement.admitted)

    async def spend(self, scopes: list[str], period: str) -> dict[str, float]:
        if not scopes:
            return {}
        keys = [f"{self.base}{scope}:spend:{period}" for scope in scopes]
        try:
            values = await self._redis.mget(keys)
        except (RedisError, OSError) as error:
            raise RedisDown(str(error)) from error
        return {scope: float(value) if value else 0.0
                for scope, value in zip(scopes, values, strict=True)}


def _parse(reply: bytes, charges: list[Charge]) -> Admitted | Refusal:
    parts = reply.split(b"|")
    if parts[0] == b"ok":
        spent, at = [], 2
        for charge in charges:
            count = len(charge.limits.budgets)
            spent.append(tuple(map(float, parts[at:at + count])))
            at += count
        return Admitted(tuple(spent), int(parts[1]))
    kind = parts[0].decode()
    index, wait_s = int(parts[1]) - 1, float(parts[2]) / 1000
    if kind == "budget":
        return Refusal("budget", index, wait_s, budget=int(parts[3]) - 1,
                       spent=float(parts[4]))
    if kind == "tpm":
        return Refusal("tpm", index, wait_s, used=int(float(parts[3])))
    return Refusal("rpm" if kind == "rpm" else "parallel", index, wait_s)
