"""The limit counters, in-process and in the real Redis: the same semantics, exactly.

Sliding windows, all-or-nothing admission across scopes, concurrency slots with leases,
token correction when an answer ends, and hard budgets that count requests in flight at their
reserved cost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import uvloop
from stores import DOWN_URL, REDIS_URL, needs_redis

from routeyard.config.schema import BudgetConfig, LimitsConfig
from routeyard.gateway.counters import (
    Admitted,
    Charge,
    Counters,
    LocalCounters,
    Refusal,
    Settlement,
    SettleScope,
)
from routeyard.gateway.redis_counters import RedisCounters, RedisDown
from routeyard.state import MemoryStore, SQLiteStore

KINDS = ["local", pytest.param("redis", marks=needs_redis)]
DAY = "2030-01-02"


@pytest.fixture(params=KINDS)
async def counters(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Counters]:
    found: Counters = (LocalCounters(MemoryStore()) if request.param == "local" else
                       RedisCounters(REDIS_URL, key_prefix=prefix, timeout_s=1.0))
    await found.start()
    yield found
    await found.close()


def charge(scope: str = "key:a", *, tokens: int = 0, reserved: float = 0.0,
           **limits: object) -> Charge:
    config = LimitsConfig.model_validate(limits)
    hard = any(b.mode == "hard" for b in config.budgets)
    return Charge(scope, config, tuple(DAY for _ in config.budgets), tokens, reserved,
                  bool(config.max_parallel) or hard)


def settlement(ticket: str, scope: str = "key:a", *, cost: float = 0.0, tracked: bool = False,
               reserved: float = 0.0, tokens: int = 0, tpm: bool = False,
               prompt_delta: int = 0, completion: int = 0, admitted_at: int = 0
               ) -> Settlement:
    part = SettleScope(scope, tracked, reserved, tokens, tpm, prompt_delta, completion,
                       admitted_at, ((DAY, 3 * 86400), ("total", 0)))
    return Settlement(ticket, cost, (part,))


async def settled(counters: Counters) -> None:
    """Wait until settlements reached the counters (Redis sends them in the background)."""
    if isinstance(counters, RedisCounters):
        for _ in range(200):
            trips = counters._trips
            if not trips.tasks and trips.timer is None and not trips.settlements:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("settlements never sent")


async def test_rpm_admits_exactly_the_limit_and_says_when_to_retry(counters: Counters) -> None:
    outcomes = [await counters.admit(f"t{i}", [charge(rpm=3)], 60) for i in range(5)]
    assert [type(o) for o in outcomes] == [Admitted] * 3 + [Refusal] * 2
    refusal = outcomes[3]
    assert isinstance(refusal, Refusal) and refusal.kind == "rpm" and refusal.charge == 0
    assert 58 < refusal.retry_after_s <= 60


async def test_concurrent_admissions_are_exact(counters: Counters) -> None:
    """200 at once (Redis: several batched round trips): exactly the limit gets in."""
    outcomes = await asyncio.gather(*(counters.admit(f"t{i}", [charge(rpm=50)], 60)
                                      for i in range(200)))
    assert sum(isinstance(o, Admitted) for o in outcomes) == 50


async def test_a_refused_request_counts_in_no_scope(counters: Counters) -> None:
    both = [charge("key:a", rpm=10), charge("tenant:t", rpm=1)]
    assert isinstance(await counters.admit("t1", both, 60), Admitted)
    refused = await counters.admit("t2", both, 60)
    assert isinstance(refused, Refusal) and refused.charge == 1  # the tenant's limit
    # The key counted one request, not two: 9 more fit under its own limit of 10.
    alone = [await counters.admit(f"k{i}", [charge("key:a", rpm=10)], 60) for i in range(10)]
    assert sum(isinstance(o, Admitted) for o in alone) == 9


async def test_slots_are_held_until_settled(counters: Counters) -> None:
    limit = charge(max_parallel=2)
    assert isinstance(await counters.admit("t1", [limit], 60), Admitted)
    assert isinstance(await counters.admit("t2", [limit], 60), Admitted)
    refused = await counters.admit("t3", [limit], 60)
    assert isinstance(refused, Refusal) and refused.kind == "parallel"
    counters.settle(settlement("t1", tracked=True))
    await settled(counters)
    assert isinstance(await counters.admit("t3", [limit], 60), Admitted)


async def test_a_lost_slot_is_freed_when_its_lease_ends(counters: Counters) -> None:
    """A replica that dies mid-request never settles: its slot goes with the lease."""
    limit = charge(max_parallel=1)
    assert isinstance(await counters.admit("dead", [limit], 0.3), Admitted)
    assert isinstance(await counters.admit("t2", [limit], 0.3), Refusal)
    await asyncio.sleep(0.4)
    assert isinstance(await counters.admit("t3", [limit], 0.3), Admitted)


async def test_tokens_are_corrected_when_the_answer_ends(counters: Counters) -> None:
    admitted = await counters.admit("t1", [charge(tokens=40, tpm=100)], 60)
    assert isinstance(admitted, Admitted)
    # The backend counted 30 prompt tokens, and 50 came back.
    counters.settle(settlement("t1", tokens=40, tpm=True, prompt_delta=-10, completion=50,
                               admitted_at=admitted.at))
    await settled(counters)
    refused = await counters.admit("t2", [charge(tokens=30, tpm=100)], 60)
    assert isinstance(refused, Refusal) and refused.kind == "tpm" and refused.used == 80
    assert isinstance(await counters.admit("t3", [charge(tokens=20, tpm=100)], 60), Admitted)


async def test_a_prompt_larger_than_the_limit_is_refused(counters: Counters) -> None:
    refused = await counters.admit("t1", [charge(tokens=101, tpm=100)], 60)
    assert isinstance(refused, Refusal) and refused.kind == "tpm" and refused.used == 0


async def test_hard_budgets_count_requests_in_flight(counters: Counters) -> None:
    """$1 a day, each request expected to cost $0.40: three get in (0, 0.4, 0.8 spent or
    held before each), the fourth waits for spend to settle."""
    budget = {"budgets": [BudgetConfig(period="day", limit_usd=1.0)]}
    outcomes = [await counters.admit(f"t{i}", [charge(reserved=0.4, **budget)], 60)
                for i in range(4)]
    assert [type(o) for o in outcomes] == [Admitted] * 3 + [Refusal]
    assert isinstance(outcomes[3], Refusal) and outcomes[3].kind == "budget"
    for i in range(3):  # they cost less than expected
        counters.settle(settlement(f"t{i}", cost=0.1, tracked=True, reserved=0.4))
    await settled(counters)
    admitted = await counters.admit("t9", [charge(reserved=0.4, **budget)], 60)
    assert isinstance(admitted, Admitted) and admitted.spent == ((pytest.approx(0.3),),)
    assert (await counters.spend(["key:a"], DAY))["key:a"] == pytest.approx(0.3)
    assert (await counters.spend(["key:a", "key:b"], "total")) == {
        "key:a": pytest.approx(0.3), "key:b": 0.0}


async def test_soft_budgets_only_report(counters: Counters) -> None:
    soft = {"budgets": [BudgetConfig(period="day", limit_usd=0.1, mode="soft")]}
    counters.settle(settlement("t0", cost=0.5))
    await settled(counters)
    admitted = await counters.admit("t1", [charge(**soft)], 60)
    assert isinstance(admitted, Admitted) and admitted.spent == ((pytest.approx(0.5),),)


async def test_local_spend_outlives_a_restart(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.db")
    await store.start()
    first = LocalCounters(store)
    first.settle(settlement("t1", cost=0.25))
    await first.close()
    second = LocalCounters(store)
    second.settle(settlement("t2", cost=0.5))  # before the stored total was read
    assert await second.spend(["key:a"], DAY) == {"key:a": pytest.approx(0.75)}
    await second.close()
    await store.close()


async def test_redis_down_is_reported_and_settlements_wait(prefix: str) -> None:
    down = RedisCounters(DOWN_URL, key_prefix=prefix, timeout_s=0.5)
    with pytest.raises(RedisDown):
        await down.admit("t1", [charge(rpm=1)], 60)
    with pytest.raises(RedisDown):  # and at once, without trying again for a second
        await asyncio.wait_for(down.admit("t2", [charge(rpm=1)], 60), 0.05)
    down.settle(settlement("t1", cost=1.0))
    await asyncio.sleep(0.05)
    assert len(down._trips.settlements) == 1  # kept for when Redis answers again
    await down.close()


@needs_redis
async def test_a_lone_settlement_goes_at_once_and_admissions_do_not_wait_for_it(
        prefix: str) -> None:
    """With nothing in flight the next admission is a whole request away, so a settlement
    goes at once; an admission meanwhile is written behind it on the pipelined connection,
    and Redis still runs the settlement first (its slot is free for the admission)."""
    counters = RedisCounters(REDIS_URL, key_prefix=prefix, timeout_s=1.0)
    limit = charge(max_parallel=1)
    try:
        assert isinstance(await counters.admit("t1", [limit], 60), Admitted)
        counters.settle(settlement("t1", tracked=True))
        trips = counters._trips
        assert trips.tasks and trips.timer is None  # on its way, not lingering
        admission = asyncio.create_task(counters.admit("t2", [limit], 60))
        await asyncio.sleep(0)
        assert len(trips.tasks) == 2  # both round trips on their way at once
        assert isinstance(await admission, Admitted)
    finally:
        await counters.close()


@needs_redis
async def test_redis_keys_expire_when_idle(prefix: str) -> None:
    """A scope's counters go once it has been idle for a lease and a window."""
    counters = RedisCounters(REDIS_URL, key_prefix=prefix, timeout_s=1.0, lease_s=30)
    await counters.admit("t1", [charge(rpm=5, tpm=50, tokens=5, max_parallel=3)], 30)
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        for suffix in ("log", "sums", "par"):
            ttl = await client.pttl(f"{prefix}:gw:key:a:{suffix}")
            assert 85_000 < ttl <= 90_000, suffix
    finally:
        await client.aclose()
        await counters.close()


async def test_a_frozen_redis_is_given_up_on(prefix: str) -> None:
    """A server that accepts the connection but never answers (Redis stopped, say): the
    admission fails after the timeout, not never."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    frozen = RedisCounters(f"redis://127.0.0.1:{port}/0", key_prefix=prefix, timeout_s=0.3)
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(RedisDown):
            await frozen.admit("t1", [charge(rpm=1)], 60)
        assert 0.25 < asyncio.get_running_loop().time() - started < 1.0
    finally:
        await frozen.close()
        server.close()


@needs_redis
async def test_an_admission_nobody_waits_for_gives_its_slot_back(prefix: str) -> None:
    """The request went away (cancelled) while its admission was on its way to Redis."""
    counters = RedisCounters(REDIS_URL, key_prefix=prefix, timeout_s=1.0)
    limit = charge(max_parallel=1)
    try:
        gone = asyncio.create_task(counters.admit("gone", [limit], 60))
        await asyncio.sleep(0)  # queued and on its way
        gone.cancel()
        await settled(counters)
        await asyncio.sleep(0.05)
        await settled(counters)
        assert isinstance(await counters.admit("next", [limit], 60), Admitted)
    finally:
        await counters.close()


@needs_redis
def test_admissions_under_load_on_uvloop(prefix: str) -> None:
    """`routeyard serve` runs uvloop: many requests in flight (admissions wait to share a
    round trip) while settlements linger, all exact."""
    async def load() -> list[Admitted | Refusal]:
        counters = RedisCounters(REDIS_URL, key_prefix=prefix, timeout_s=1.0)
        try:
            held = [await counters.admit(f"held{i}", [charge(rpm=60)], 60) for i in range(3)]
            counters.settle(settlement("held0"))  # lingers, waiting for an admission
            burst = await asyncio.gather(*(counters.admit(f"t{i}", [charge(rpm=60)], 60)
                                           for i in range(100)))
            return held + burst
        finally:
            await counters.close()

    outcomes = uvloop.run(load())
    assert sum(isinstance(o, Admitted) for o in outcomes) == 60
