"""State stores: common behaviour over all backends, then each backend's own guarantees.

Redis tests run against the real server ($ROUTEYARD_TEST_REDIS_URL, default 127.0.0.1:6379),
each under its own key prefix, and delete their keys afterwards. Outages are real too: a store
pointed at an unused port, or a TCP proxy to the real Redis that the test stops and restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis
from stores import (
    DOWN_URL,
    POSTGRES_DOWN_URL,
    REDIS_HOST,
    REDIS_PORT,
    REDIS_URL,
    TcpProxy,
    build_store,
    needs_postgres,
    needs_redis,
)

from routeyard.state import (
    STORE_BACKENDS,
    DecisionRecord,
    MemoryStore,
    RedisStore,
    SQLiteStore,
    Store,
    StoreUnavailable,
    make_store,
)
from routeyard.state.postgres import PostgresStore
from routeyard.state.record import to_json


def rec(i: int, *, t0: float | None = None, **overrides: object) -> DecisionRecord:
    fields: dict[str, object] = {
        "request_id": f"req-{i}", "time": (t0 or time.time()) + i * 0.001,
        "decision": "default", "model": "m-small", "endpoint": "ep-1", "latency_ms": 12.5,
        "prompt_tokens": 10 + i, "completion_tokens": 20, "cost_usd": 0.0001, "status": "ok",
        "stream": i % 2 == 0,
    }
    fields.update(overrides)
    return DecisionRecord(**fields)  # type: ignore[arg-type]



# -- common behaviour -------------------------------------------------------------------


async def test_record_flush_get(store: Store) -> None:
    r = rec(1, decision=None, model=None, endpoint=None, status="upstream_unavailable")
    r2 = rec(2)
    assert await store.ping() is True
    await store.start()  # a second start is a no-op, not a second flusher
    store.record_decision(r)
    store.record_decision(r2)
    await store.flush()
    assert await store.get_decision("req-1") == r
    assert await store.get_decision("req-2") == r2
    assert await store.get_decision("missing") is None


async def test_a_detail_with_numpy_numbers_and_sets_is_written(store: Store) -> None:
    """A learned signal's confidence is often a numpy float: the record is written with it
    as a plain number (and a set as a list), never dropped with the rest of its batch."""
    import numpy as np

    odd = rec(1, detail={"signals": {"domain:code": np.float64(0.75)},
                         "selection": {"scores": {"m": np.float32(0.5)}, "tags": {"b", "a"}},
                         "count": np.int64(3)})
    plain = rec(2)
    store.record_decision(odd)
    store.record_decision(plain)
    await store.flush()
    found = await store.get_decision("req-1")
    # As JSON (the memory store keeps the objects themselves).
    assert found is not None and orjson.loads(to_json(found.detail)) == {
        "signals": {"domain:code": 0.75}, "selection": {"scores": {"m": 0.5}, "tags": ["a", "b"]},
        "count": 3}
    assert await store.get_decision("req-2") == plain


async def test_a_record_no_json_can_hold_is_dropped_alone(store: Store) -> None:
    """An integer past 64 bits has no JSON number: that record is counted as dropped, the
    rest of its batch is written (the memory store keeps objects, so it keeps it)."""
    store.record_decision(rec(1, detail={"big": 2**70}))
    store.record_decision(rec(2))
    await store.flush()
    kept = await store.get_decision("req-2")
    assert kept is not None and kept.status == "ok"
    if not isinstance(store, MemoryStore):
        assert await store.get_decision("req-1") is None and store.dropped == 1


async def test_recent_newest_first_with_limit(store: Store) -> None:
    t0 = time.time()
    for i in range(20):
        store.record_decision(rec(i, t0=t0))
    await store.flush()
    recent = await store.recent_decisions(limit=5)
    assert [r.request_id for r in recent] == [f"req-{i}" for i in range(19, 14, -1)]
    assert len(await store.recent_decisions()) == 20
    assert await store.recent_decisions(limit=0) == []


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=needs_redis),
                                     pytest.param("postgres", marks=needs_postgres)])
async def test_background_flusher_writes_without_flush(
    backend: str, tmp_path: Path, prefix: str
) -> None:
    s = build_store(backend, tmp_path, prefix, flush_interval=0.02)
    await s.start()
    try:
        s.record_decision(rec(7))
        for _ in range(100):
            await asyncio.sleep(0.02)
            if await s.get_decision("req-7") is not None:
                break
        assert await s.get_decision("req-7") is not None
        assert s.pending == 0  # type: ignore[attr-defined]
    finally:
        await s.close()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=needs_redis),
                                     pytest.param("postgres", marks=needs_postgres)])
async def test_close_flushes_and_a_new_store_reads_it(
    backend: str, tmp_path: Path, prefix: str
) -> None:
    s = build_store(backend, tmp_path, prefix)
    await s.start()
    for i in range(30):
        s.record_decision(rec(i))
    await s.close()  # no explicit flush: close must write everything
    again = build_store(backend, tmp_path, prefix)
    await again.start()
    try:
        assert (await again.get_decision("req-29")) is not None
        assert len(await again.recent_decisions(100)) == 30
    finally:
        await again.close()


# -- factory ----------------------------------------------------------------------------


def test_make_store_registry_needs_no_loop(tmp_path: Path) -> None:
    # Plain sync test: constructing any store must not need a running loop or touch disk.
    assert {"memory", "sqlite", "redis", "postgres"} == set(STORE_BACKENDS)
    assert isinstance(make_store("memory", max_records=3), MemoryStore)
    db = tmp_path / "nested" / "x.db"
    sq = make_store("sqlite", path=str(db), max_records=10)
    assert isinstance(sq, SQLiteStore) and sq.max_records == 10
    assert not db.parent.exists()  # nothing opens before start()
    rs = make_store("redis", redis_url=DOWN_URL, key_prefix="p", max_records=5)
    assert isinstance(rs, RedisStore) and rs.key_prefix == "p" and rs.max_records == 5
    pg = make_store("postgres", postgres_url=POSTGRES_DOWN_URL, max_records=7)
    assert isinstance(pg, PostgresStore) and pg.max_records == 7  # nothing connected yet
    with pytest.raises(ValueError, match=r"needs state.postgres_url"):
        make_store("postgres")
    with pytest.raises(ValueError, match=r"starts with postgresql://"):
        make_store("postgres", postgres_url="mysql://127.0.0.1/x")
    with pytest.raises(ValueError, match=r"known: memory, postgres, redis, sqlite"):
        make_store("mysql")


# -- memory -----------------------------------------------------------------------------


async def test_memory_bounded_eviction() -> None:
    s = MemoryStore(max_records=5)
    for i in range(12):
        s.record_decision(rec(i))
    assert len(s) == 5
    assert await s.get_decision("req-6") is None  # evicted, and gone from the index too
    assert len(s._by_id) == 5
    assert [r.request_id for r in await s.recent_decisions(10)] == [
        f"req-{i}" for i in range(11, 6, -1)
    ]
    # A repeated id maps to its newest copy; evicting the older copy keeps the index entry.
    s = MemoryStore(max_records=3)
    for r in (rec(1, status="first"), rec(1, status="second"), rec(2), rec(3)):
        s.record_decision(r)
    got = await s.get_decision("req-1")
    assert got is not None and got.status == "second"


async def test_memory_default_bound_holds_over_100k_records() -> None:
    s = MemoryStore()
    for i in range(100_000):
        s.record_decision(rec(i, t0=0.0))
    assert len(s) == 10_000 and len(s._by_id) == 10_000
    assert await s.get_decision("req-99999") is not None
    assert await s.get_decision("req-89999") is None


# -- sqlite -----------------------------------------------------------------------------


async def test_sqlite_persists_across_reopen_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "state.db"  # parent dirs are created
    s = SQLiteStore(path)
    await s.start()
    r = rec(1, stream=True)
    s.record_decision(r)
    await s.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*) FROM decisions").fetchone()[0] == 1
        indexes = [row[1] for row in conn.execute("PRAGMA index_list(decisions)")]
        assert "decisions_time_id" in indexes and "decisions_time" not in indexes
    reopened = SQLiteStore(path)
    await reopened.start()
    try:
        assert await reopened.get_decision("req-1") == r
    finally:
        await reopened.close()


async def test_sqlite_record_is_non_blocking(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "state.db")
    await s.start()
    try:
        for i in range(10_000):
            s.record_decision(rec(i))
        # Nothing was written inline: every record waits for the background writer, and the
        # file holds no row yet (no await has let the flusher run). Speed is bench material.
        assert s.pending == 10_000
        with contextlib.closing(sqlite3.connect(s.path)) as conn:
            assert conn.execute("SELECT count(*) FROM decisions").fetchone()[0] == 0
        await s.flush()
        assert s.pending == 0
        with contextlib.closing(sqlite3.connect(s.path)) as conn:
            assert conn.execute("SELECT count(*) FROM decisions").fetchone()[0] == 10_000
    finally:
        await s.close()


async def test_sqlite_flush_does_not_stall_the_loop(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "state.db")
    await s.start()
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            await asyncio.sleep(0)
            ticks += 1

    tick = asyncio.create_task(ticker())
    try:
        for i in range(50_000):
            s.record_decision(rec(i, t0=0.0))
        await asyncio.sleep(0)  # let the ticker start
        before = ticks
        await s.flush()
        during = ticks - before
    finally:
        done = True
        await tick
        await s.close()
    # The writes ran in the writer thread: the loop kept ticking while the flush was awaited.
    assert during >= 1, "the event loop did not run at all during a 50k-row flush"


async def test_sqlite_retention_keeps_newest(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "state.db", max_records=100)
    await s.start()
    try:
        t0 = time.time()
        for batch in range(10):
            for i in range(batch * 100, batch * 100 + 100):
                s.record_decision(rec(i, t0=t0))
            await s.flush()
        with contextlib.closing(sqlite3.connect(s.path)) as conn:
            assert conn.execute("SELECT count(*) FROM decisions").fetchone()[0] == 100
        assert await s.get_decision("req-899") is None
        assert (await s.recent_decisions(1))[0].request_id == "req-999"
    finally:
        await s.close()


async def test_sqlite_unwritable_path_never_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    s = SQLiteStore(blocker / "state.db", max_backoff=0.05)
    s.record_decision(rec(1))
    await s.flush()  # fails to open, keeps the record, does not raise
    assert s.pending == 1 and not s.healthy
    assert await s.ping() is False
    await s.close()


async def test_sqlite_skips_a_malformed_record(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "state.db")
    await s.start()
    try:
        s.record_decision(rec(1))
        s.record_decision(rec(2, model={"not": "a string"}))
        s.record_decision(rec(3))
        await s.flush()
        assert s.dropped == 1 and s.pending == 0
        assert await s.get_decision("req-1") is not None
        assert await s.get_decision("req-3") is not None
    finally:
        await s.close()


# -- redis ------------------------------------------------------------------------------


@needs_redis
async def test_redis_layout_ttl_and_trim(prefix: str) -> None:
    s = RedisStore(REDIS_URL, key_prefix=prefix, max_records=10, ttl_seconds=3600)
    await s.start()
    try:
        t0 = time.time()
        for i in range(25):
            s.record_decision(rec(i, t0=t0))
        await s.flush()
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            assert await client.zcard(f"{prefix}:decisions") == 10
            assert 0 < await client.ttl(f"{prefix}:decision:req-24") <= 3600
            # Trimmed records' keys go with their index entries.
            assert await client.exists(f"{prefix}:decision:req-14") == 0
            assert len(await client.keys(f"{prefix}:*")) == 11  # 10 records + the index
        finally:
            await client.aclose()
        recent = await s.recent_decisions(100)
        assert [r.request_id for r in recent] == [f"req-{i}" for i in range(24, 14, -1)]
    finally:
        await s.close()


async def test_redis_down_never_breaks_a_request(caplog: pytest.LogCaptureFixture) -> None:
    s = RedisStore(DOWN_URL, key_prefix="unused", max_buffer=100)
    await s.start()
    try:
        with caplog.at_level(logging.WARNING, logger="routeyard.state"):
            for i in range(250):
                s.record_decision(rec(i))  # does not raise
            await s.flush()  # does not raise
            await s.flush()
        assert s.pending == 100 and s.dropped == 150  # bounded: oldest dropped, counted
        assert not s.healthy
        outage_logs = [r for r in caplog.records if "unavailable" in r.getMessage()]
        assert len(outage_logs) == 1  # one warning per outage, not per record or flush

        t = time.perf_counter()
        assert await s.ping() is False
        assert time.perf_counter() - t < 1.0
        with pytest.raises(StoreUnavailable):
            await s.get_decision("req-1")
        with pytest.raises(StoreUnavailable):
            await s.recent_decisions()
    finally:
        t = time.perf_counter()
        await s.close()
        assert time.perf_counter() - t < 1.0


@needs_redis
async def test_redis_recovers_and_writes_the_buffer(prefix: str) -> None:
    proxy = TcpProxy(REDIS_HOST, REDIS_PORT)
    s = RedisStore(f"redis://127.0.0.1:{proxy.port}/0", key_prefix=prefix,
                   flush_interval=0.02, max_backoff=0.1)
    direct = RedisStore(REDIS_URL, key_prefix=prefix)
    try:
        await s.start()
        s.record_decision(rec(0))  # Redis "down" from the start
        await s.flush()
        assert s.pending == 1 and not s.healthy

        await proxy.up()  # recovery: the background flusher retries on its own
        for _ in range(150):
            if s.pending == 0 and s.healthy:
                break
            await asyncio.sleep(0.02)
        assert s.pending == 0 and s.healthy
        assert await direct.get_decision("req-0") is not None

        await proxy.down()  # an outage with pooled connections already open
        for i in range(1, 40):
            s.record_decision(rec(i))
        await s.flush()
        assert s.pending == 39 and not s.healthy
        assert await direct.get_decision("req-1") is None

        await proxy.up()
        await s.flush()
        assert s.pending == 0 and s.dropped == 0
        assert len(await direct.recent_decisions(100)) == 40
    finally:
        await s.close()
        await direct.close()
        await proxy.down()
