"""The PostgreSQL store's own guarantees, on the real server (tests/stores.py): outages, and
recovery through a TCP proxy that goes down and comes back; claims across replicas; durable,
wall-clock expiry; malformed records; retention; schema migrations (ordered, once, concurrent,
a newer schema refused). The behaviour every store shares is in test_state*.py, which run on
PostgreSQL too."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import asyncpg
import pytest
from fakeclock import FakeClock
from stores import (
    POSTGRES_DOWN_URL,
    TcpProxy,
    needs_postgres,
    postgres_store,
    session_database,
)

from routeyard.state import DecisionRecord, StoreUnavailable
from routeyard.state.pg_schema import (
    SchemaMismatch,
    connect,
    latest_version,
    migrations,
    quote_ident,
    upgrade,
)
from routeyard.state.postgres import PostgresStore


def rec(i: int, **overrides: object) -> DecisionRecord:
    fields: dict[str, object] = {
        "request_id": f"req-{i}", "time": 1_700_000_000.0 + i, "decision": "default",
        "model": "m", "endpoint": "m#0", "latency_ms": 1.5, "prompt_tokens": 3,
        "completion_tokens": 4, "cost_usd": 0.0, "status": "ok", "stream": False}
    fields.update(overrides)
    return DecisionRecord(**fields)  # type: ignore[arg-type]


def schema_name() -> str:
    return f"pgtest_{uuid.uuid4().hex[:12]}"


@asynccontextmanager
async def started(schema: str, **options: object) -> AsyncIterator[PostgresStore]:
    """A started store in `schema` of the session database, closed afterwards."""
    store = postgres_store(schema, **options)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def db() -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the session database (to look at what the store wrote)."""
    conn = await asyncpg.connect(session_database())
    yield conn
    await conn.close()


# -- outage -----------------------------------------------------------------------------


async def test_down_never_breaks_a_request(caplog: pytest.LogCaptureFixture) -> None:
    s = PostgresStore(POSTGRES_DOWN_URL, max_buffer=100)
    with caplog.at_level(logging.WARNING, logger="routeyard.state"):
        await s.start()  # does not raise: the schema is checked once the server answers
        try:
            for i in range(250):
                s.record_decision(rec(i))  # never raises
            await s.flush()  # never raises either
            await s.flush()
            assert s.pending == 100 and s.dropped == 150  # bounded, oldest dropped, counted
            assert not s.healthy
            outages = [r for r in caplog.records if "unavailable" in r.getMessage()]
            assert len(outages) == 1  # one warning per outage, not per record or flush

            t = time.perf_counter()
            assert await s.ping() is False
            for read in (lambda: s.get_decision("req-1"), lambda: s.recent_decisions(),
                         lambda: s.get_value("k"), lambda: s.set_value("k", b"v", ttl_s=5),
                         lambda: s.claim("k", ttl_s=5), lambda: s.delete_value("k"),
                         lambda: s.scan_values("k")):
                with pytest.raises(StoreUnavailable):
                    await read()
            assert time.perf_counter() - t < 1.0
        finally:
            t = time.perf_counter()
            await s.close()
            assert time.perf_counter() - t < 1.0
    assert any("does not answer" in r.getMessage() for r in caplog.records)


@needs_postgres
async def test_recovers_and_writes_the_buffer(db: asyncpg.Connection) -> None:
    host = urlsplit(session_database())
    proxy = TcpProxy(host.hostname or "127.0.0.1", host.port or 5432)
    schema = schema_name()
    url = host._replace(netloc=f"{host.username}@127.0.0.1:{proxy.port}").geturl()
    s = PostgresStore(url, schema=schema, flush_interval=0.02, max_backoff=0.1)
    try:
        await s.start()  # down from the start: the schema does not exist yet
        s.record_decision(rec(0))
        await s.flush()
        assert s.pending == 1 and not s.healthy

        await proxy.up()  # recovery: the flusher retries on its own, creating the schema first
        for _ in range(200):
            if s.pending == 0 and s.healthy:
                break
            await asyncio.sleep(0.02)
        assert s.pending == 0 and s.healthy
        assert await s.ping() is True
        await s.set_value("bandit", b"v1")
        table = f"{quote_ident(schema)}.decisions"
        assert await db.fetchval(f"SELECT count(*) FROM {table}") == 1

        await proxy.down()  # an outage with pooled connections already open
        for i in range(1, 40):
            s.record_decision(rec(i))
        await s.flush()
        assert s.pending == 39 and not s.healthy
        assert await s.ping() is False
        with pytest.raises(StoreUnavailable):
            await s.get_value("bandit")

        await proxy.up()
        await s.flush()
        assert s.pending == 0 and s.dropped == 0
        assert await db.fetchval(f"SELECT count(*) FROM {table}") == 40
        assert await s.get_value("bandit") == b"v1"  # the pool reconnected by itself
    finally:
        await s.close()
        await proxy.down()


# -- key-value state across replicas and restarts ----------------------------------------


@needs_postgres
async def test_claim_is_atomic_across_replicas() -> None:
    schema = schema_name()
    async with started(schema) as a, started(schema) as b:
        results = await asyncio.gather(
            *(s.claim("feedback:req-9", ttl_s=30) for _ in range(25) for s in (a, b)))
        assert results.count(True) == 1 and results.count(False) == 49
        await a.set_value("bandit", b"v2")  # durable and visible once set_value returned
        assert await b.get_value("bandit") == b"v2"


@needs_postgres
async def test_values_and_expiry_survive_a_restart(clock: FakeClock) -> None:
    schema = schema_name()
    async with started(schema, clock=clock) as s:
        await s.set_value("bandit", b"params")
        await s.set_value("short", b"v", ttl_s=5)
        assert await s.claim("marker", ttl_s=30) is True

    clock.advance(6)
    async with started(schema, clock=clock) as again:
        assert await again.get_value("bandit") == b"params"
        assert await again.get_value("short") is None  # expiry is wall-clock
        assert await again.claim("marker", ttl_s=30) is False
        assert await again.claim("short", ttl_s=30) is True  # takes over the expired row


@needs_postgres
async def test_keys_with_nul() -> None:
    # PostgreSQL text cannot hold NUL: such a key cannot exist, so reads find nothing (a
    # client-chosen id with NUL is a 404, not a 500), and a write says why it cannot.
    async with started(schema_name()) as s:
        assert await s.get_value("response:a\x00b") is None
        assert await s.delete_value("a\x00") is False
        assert await s.scan_values("a\x00") == []
        assert await s.get_decision("req\x00") is None
        with pytest.raises(ValueError, match="NUL"):
            await s.set_value("a\x00", b"v")


# -- the decision log -----------------------------------------------------------------------


@needs_postgres
async def test_malformed_records_are_skipped_and_nul_is_kept(db: asyncpg.Connection) -> None:
    async with started(schema_name()) as s:
        s.record_decision(rec(1))
        s.record_decision(rec(2, model={"not": "a string"}))  # cannot be written at all
        s.record_decision(rec(3, model="a\x00b", detail={"why": "x\x00y"}))
        s.record_decision(rec(4, detail={"bad": 2**70}))  # no JSON number holds it
        s.record_decision(rec(5))
        s.record_decision(rec(6, detail={"set": {2, 1}}))  # written as a list
        await s.flush()
        assert s.dropped == 2 and s.pending == 0 and s.healthy
        assert await s.get_decision("req-2") is None
        kept = await s.get_decision("req-3")
        assert kept is not None and kept.model == "a\ufffdb"
        assert kept.detail == {"why": "x\ufffdy"}
        assert [r.request_id for r in await s.recent_decisions()] == ["req-6", "req-5", "req-3",
                                                                      "req-1"]
        listed = await s.get_decision("req-6")
        assert listed is not None and listed.detail == {"set": [1, 2]}


@needs_postgres
async def test_a_repeated_id_keeps_its_last_copy() -> None:
    async with started(schema_name()) as s:
        for status in ("first", "second"):
            s.record_decision(rec(1, status=status))  # one batch: one upsert per id
        await s.flush()
        s.record_decision(rec(1, status="third"))  # a later batch overwrites (idempotent)
        await s.flush()
        found = await s.get_decision("req-1")
        assert found is not None and found.status == "third"
        assert len(await s.recent_decisions()) == 1


@needs_postgres
async def test_record_only_enqueues(db: asyncpg.Connection) -> None:
    schema = schema_name()
    async with started(schema) as s:
        for i in range(10_000):
            s.record_decision(rec(i))
        table = f"{quote_ident(schema)}.decisions"
        # Nothing was written inline: the flusher has not run (no await let it).
        assert s.pending == 10_000
        assert await db.fetchval(f"SELECT count(*) FROM {table}") == 0
        await s.flush()
        assert s.pending == 0
        assert await db.fetchval(f"SELECT count(*) FROM {table}") == 10_000


@needs_postgres
async def test_retention_keeps_the_newest(db: asyncpg.Connection) -> None:
    schema = schema_name()
    async with started(schema, max_records=100) as s:
        for batch in range(10):
            for i in range(batch * 100, batch * 100 + 100):
                s.record_decision(rec(i))
            await s.flush()
        table = f"{quote_ident(schema)}.decisions"
        assert await db.fetchval(f"SELECT count(*) FROM {table}") == 100
        assert await s.get_decision("req-899") is None
        assert (await s.recent_decisions(1))[0].request_id == "req-999"


@needs_postgres
async def test_expired_keys_are_swept(db: asyncpg.Connection, clock: FakeClock) -> None:
    schema = schema_name()
    async with started(schema, clock=clock, housekeeping_s=0) as s:
        await s.set_value("old", b"v", ttl_s=5)
        await s.set_value("kept", b"v")
        clock.advance(6)
        s.record_decision(rec(1))  # housekeeping rides on the flusher
        await s.flush()
        keys = await db.fetch(f"SELECT key FROM {quote_ident(schema)}.kv")
        assert [k["key"] for k in keys] == ["kept"]


# -- schema migrations --------------------------------------------------------------------


@needs_postgres
async def test_migrations_are_recorded_in_order(db: asyncpg.Connection) -> None:
    schema = schema_name()
    async with started(schema):
        pass
    rows = await db.fetch(f"SELECT version, name FROM {quote_ident(schema)}.schema_migrations "
                          "ORDER BY version")
    assert [(r["version"], r["name"]) for r in rows] == [(m.version, m.name)
                                                          for m in migrations()]
    assert migrations()[0].label == "0001_initial" and latest_version() == len(migrations())


@needs_postgres
async def test_concurrent_upgrades_apply_each_migration_once(db: asyncpg.Connection) -> None:
    schema = schema_name()
    conns = [await connect(session_database(), schema=schema) for _ in range(8)]
    try:
        applied = await asyncio.gather(*(upgrade(c, schema=schema) for c in conns))
        assert sorted(len(a) for a in applied) == [0] * 7 + [len(migrations())]
        assert await upgrade(conns[0], schema=schema) == []  # and again: nothing to do
    finally:
        for c in conns:
            await c.close()
    count = await db.fetchval(f"SELECT count(*) FROM {quote_ident(schema)}.schema_migrations")
    assert count == len(migrations())


@needs_postgres
async def test_a_newer_schema_is_refused(db: asyncpg.Connection) -> None:
    schema = schema_name()
    async with started(schema):
        pass
    await db.execute(f"INSERT INTO {quote_ident(schema)}.schema_migrations (version, name) "
                     "VALUES (9999, 'from_the_future')")
    s = postgres_store(schema)
    with pytest.raises(SchemaMismatch, match="version 9999, newer than this Routeyard"):
        await s.start()
    assert s._pool is None  # refused and closed: no pool left open
