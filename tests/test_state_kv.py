"""Key-value state on every store: get/set/claim, expiry, atomic claims, durability, outages.

Redis tests run against the real server ($ROUTEYARD_TEST_REDIS_URL) under a unique key prefix
and delete their keys afterwards; they skip (with a reason) when Redis does not answer, or fail
under ROUTEYARD_REQUIRE_SERVICES=1. The outage test points a store at a port nothing listens on.
Expiry never waits on the wall clock: memory and SQLite follow a fake clock, and Redis keys
have their TTLs shortened instead (see `advance`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from fakeclock import FakeClock
from stores import (
    DOWN_URL,
    REDIS_URL,
    age_redis_keys,
    needs_redis,
)

from routeyard.state import (
    CLAIM_VALUE,
    MemoryStore,
    RedisStore,
    SQLiteStore,
    Store,
    StoreUnavailable,
)

TTL = 5.0
Advance = Callable[[float], Awaitable[None]]


@pytest.fixture
def advance(store: Store, clock: FakeClock, prefix: str) -> Advance:
    """Let `seconds` pass for the store's keys, without sleeping."""

    async def step(seconds: float) -> None:
        if isinstance(store, RedisStore):
            await age_redis_keys(prefix, seconds)  # Redis keeps its own clock
        else:
            clock.advance(seconds)

    return step


# -- common behaviour -------------------------------------------------------------------


async def test_get_set_round_trip(store: Store) -> None:
    assert await store.get_value("missing") is None
    blob = b'{"alpha": [1.0, 2.5], "n": 3}'
    await store.set_value("bandit:default", blob)
    assert await store.get_value("bandit:default") == blob
    # Arbitrary bytes survive unchanged, including NUL and non-UTF-8.
    raw = bytes(range(256))
    await store.set_value("raw", raw)
    assert await store.get_value("raw") == raw
    await store.set_value("empty", b"")
    assert await store.get_value("empty") == b""


async def test_overwrite(store: Store, advance: Advance) -> None:
    await store.set_value("k", b"one")
    await store.set_value("k", b"two")
    assert await store.get_value("k") == b"two"
    # Overwriting without a ttl drops the old ttl.
    await store.set_value("t", b"short", ttl_s=TTL)
    await store.set_value("t", b"forever")
    await advance(TTL + 1)
    assert await store.get_value("t") == b"forever"


async def test_ttl_expiry(store: Store, advance: Advance) -> None:
    await store.set_value("short", b"v", ttl_s=TTL)
    await store.set_value("long", b"v", ttl_s=30)
    await store.set_value("none", b"v")
    await advance(TTL - 1)
    assert await store.get_value("short") == b"v"
    await advance(2)
    assert await store.get_value("short") is None
    assert await store.get_value("long") == b"v"
    assert await store.get_value("none") == b"v"


async def test_claim_once_then_again_after_ttl(store: Store, advance: Advance) -> None:
    assert await store.claim("feedback:req-1", ttl_s=TTL) is True
    assert await store.claim("feedback:req-1", ttl_s=TTL) is False
    assert await store.get_value("feedback:req-1") == CLAIM_VALUE
    assert await store.claim("feedback:req-2", ttl_s=TTL) is True  # keys are independent
    await advance(TTL - 1)
    assert await store.claim("feedback:req-1", ttl_s=TTL) is False  # still claimed
    await advance(2)
    assert await store.claim("feedback:req-1", ttl_s=TTL) is True
    assert await store.claim("feedback:req-1", ttl_s=TTL) is False


async def test_claim_without_ttl_and_over_a_set_value(store: Store, advance: Advance) -> None:
    assert await store.claim("forever") is True
    assert await store.claim("forever") is False
    await store.set_value("taken", b"x")
    assert await store.claim("taken") is False
    assert await store.get_value("taken") == b"x"
    await store.set_value("gone", b"x", ttl_s=TTL)
    await advance(TTL + 1)
    assert await store.claim("gone") is True


async def test_claim_is_atomic_under_concurrency(store: Store) -> None:
    results = await asyncio.gather(*(store.claim("once", ttl_s=30) for _ in range(50)))
    assert results.count(True) == 1
    assert results.count(False) == 49


async def test_rejects_bad_values_and_ttls(store: Store) -> None:
    with pytest.raises(TypeError):
        await store.set_value("k", "not bytes")  # type: ignore[arg-type]
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError):
            await store.set_value("k", b"v", ttl_s=bad)
        with pytest.raises(ValueError):
            await store.claim("k", ttl_s=bad)
    assert await store.get_value("k") is None
    await store.set_value("k", bytearray(b"ba"))
    assert await store.get_value("k") == b"ba"


async def test_kv_leaves_the_decision_log_alone(store: Store) -> None:
    await store.set_value("k", b"v")
    assert await store.claim("c") is True
    await store.flush()
    assert await store.recent_decisions() == []
    assert await store.get_decision("k") is None


# -- memory -----------------------------------------------------------------------------


async def test_memory_is_bounded_and_evicts_the_oldest_write() -> None:
    s = MemoryStore(max_keys=3)
    for k in ("a", "b", "c"):
        await s.set_value(k, k.encode())
    await s.set_value("a", b"a2")  # a rewrite makes "a" the newest
    await s.set_value("d", b"d")
    assert await s.get_value("b") is None
    assert [await s.get_value(k) for k in ("a", "c", "d")] == [b"a2", b"c", b"d"]
    assert len(s._kv) == 3


# -- sqlite -----------------------------------------------------------------------------


async def test_sqlite_values_survive_close_and_reopen(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "state.db"
    s = SQLiteStore(path, clock=clock)
    await s.start()
    await s.set_value("bandit", b"params-v1")
    await s.set_value("expiring", b"v", ttl_s=30)
    await s.set_value("short", b"v", ttl_s=TTL)
    assert await s.claim("marker", ttl_s=30) is True
    await s.close()

    clock.advance(TTL + 1)
    s2 = SQLiteStore(path, clock=clock)
    await s2.start()
    try:
        assert await s2.get_value("bandit") == b"params-v1"
        assert await s2.get_value("expiring") == b"v"
        assert await s2.get_value("short") is None  # expiry is wall-clock, kept across restarts
        assert await s2.claim("marker", ttl_s=30) is False
    finally:
        await s2.close()


async def test_sqlite_set_is_visible_to_the_next_read_without_flush(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "state.db", flush_interval=60)
    await s.start()
    try:
        for i in range(50):
            await s.set_value("counter", str(i).encode())
            assert await s.get_value("counter") == str(i).encode()
    finally:
        await s.close()


async def test_sqlite_claim_is_atomic_across_two_stores_on_one_file(tmp_path: Path) -> None:
    a, b = SQLiteStore(tmp_path / "state.db"), SQLiteStore(tmp_path / "state.db")
    await a.start()
    await b.start()
    try:
        results = await asyncio.gather(
            *(s.claim("once", ttl_s=30) for _ in range(25) for s in (a, b))
        )
        assert results.count(True) == 1
    finally:
        await a.close()
        await b.close()


async def test_sqlite_kv_does_not_block_the_event_loop(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "state.db")
    await s.start()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        await asyncio.gather(*(s.set_value(f"k{i}", b"v" * 1000) for i in range(200)))
        assert ticks > 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await s.close()


# -- redis ------------------------------------------------------------------------------


@needs_redis
async def test_redis_key_layout_and_ttl(prefix: str) -> None:
    s = RedisStore(REDIS_URL, key_prefix=prefix)
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await s.set_value("bandit", b"p", ttl_s=30)
        await s.set_value("plain", b"p")
        assert await client.get(f"{prefix}:kv:bandit") == b"p"
        assert 0 < await client.pttl(f"{prefix}:kv:bandit") <= 30_000
        assert await client.pttl(f"{prefix}:kv:plain") == -1  # no expiry
        assert await s.claim("fb", ttl_s=0.9) is True
        assert 0 < await client.pttl(f"{prefix}:kv:fb") <= 900  # sub-second TTL kept
    finally:
        await client.aclose()
        await s.close()


@needs_redis
async def test_redis_claim_is_atomic_across_replicas(prefix: str) -> None:
    a = RedisStore(REDIS_URL, key_prefix=prefix)
    b = RedisStore(REDIS_URL, key_prefix=prefix)
    try:
        results = await asyncio.gather(
            *(s.claim("feedback:req-9", ttl_s=30) for _ in range(25) for s in (a, b))
        )
        assert results.count(True) == 1
        assert results.count(False) == 49
        # A write on one replica is visible to the other as soon as set_value returns.
        await a.set_value("bandit", b"v2")
        assert await b.get_value("bandit") == b"v2"
    finally:
        await a.close()
        await b.close()


async def test_redis_down_raises_store_unavailable_quickly() -> None:
    s = RedisStore(DOWN_URL, key_prefix="routeyard-kvtest-down")
    await s.start()
    try:
        for op in (
            lambda: s.get_value("k"),
            lambda: s.set_value("k", b"v"),
            lambda: s.set_value("k", b"v", ttl_s=5),
            lambda: s.claim("k", ttl_s=5),
        ):
            t0 = time.perf_counter()
            with pytest.raises(StoreUnavailable):
                await op()
            assert time.perf_counter() - t0 < 1.0
    finally:
        await s.close()
