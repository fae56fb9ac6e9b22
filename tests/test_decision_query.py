"""The decision log's query contract, on every store (memory, SQLite, Redis, PostgreSQL):
cursor pages in a stable order, filters, joined feedback, and stats that agree with the same
aggregation done in Python over the same records. Then what is SQLite's own: the hourly
roll-ups (edges of a window, double writes, an upgrade from a file without them) and
retention."""

from __future__ import annotations

import math
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from routeyard.state import DecisionRecord, SQLiteStore, Store
from routeyard.state.query import (
    Aggregate,
    DecisionQuery,
    QueryError,
    StatsQuery,
    aggregate_records,
    decode_cursor,
    matches,
    percentile,
    sort_key,
)

# Recent enough for Redis's 7-day trim, and starting 30 minutes into an hour, so that windows
# have partial hours at both edges.
BASE = (math.floor(time.time() / 3600) - 30) * 3600 + 1800.0
MODELS = ("large", "small", "tiny")
STATUSES = ("ok", "ok", "ok", "upstream_failed", "cache_hit", "stream_broken")


def synthetic(n: int, seed: int = 7) -> list[DecisionRecord]:
    rng = random.Random(seed)
    records = []
    for i in range(n):
        status = rng.choice(STATUSES)
        answered = status in ("ok", "stream_broken")
        stream = rng.random() < 0.5
        cost = rng.random() / 1000 if answered else 0.0
        records.append(DecisionRecord(
            request_id=f"req_{i:06d}",
            # Repeated times: the order must break ties by request id.
            time=BASE + (i // 3) * 97.0,
            decision=rng.choice(("coding", "chat")),
            model=rng.choice(MODELS) if answered else None,
            endpoint="e#0" if answered else None,
            latency_ms=rng.lognormvariate(4, 1),
            prompt_tokens=rng.randrange(1, 500) if answered else 0,
            completion_tokens=rng.randrange(1, 300) if answered else 0,
            cost_usd=cost, status=status, stream=stream,
            detail={"signals": {"keyword:code": 0.9}, "selection": {"probability": 1.0}},
            surface=rng.choice(("chat", "messages", "responses")),
            key_id=rng.choice(("ry-a", "ry-b", "static:x")),
            tenant=rng.choice(("acme", None)),
            ttft_ms=rng.lognormvariate(3, 1) if stream else None,
            cache=rng.choice((None, "hit", "miss")),
            dearest_cost_usd=cost * 3 if answered else None,
        ))
    return records


async def fill(store: Store, records: list[DecisionRecord]) -> dict[str, float]:
    for record in records:
        store.record_decision(record)
    await store.flush()
    feedback = {r.request_id: round(0.1 * (i % 11), 1)
                for i, r in enumerate(records) if i % 7 == 0}
    for request_id, score in feedback.items():
        await store.record_feedback(request_id, score)
    return feedback


def joined(records: list[DecisionRecord], feedback: dict[str, float]) -> list[DecisionRecord]:
    return [DecisionRecord.from_dict({**r.to_dict(), "feedback": feedback.get(r.request_id)})
            for r in records]


async def every_page(store: Store, query: DecisionQuery) -> list[DecisionRecord]:
    found: list[DecisionRecord] = []
    while True:
        page = await store.query_decisions(query)
        found += page.records
        assert len(page.records) <= query.limit
        if page.cursor is None:
            return found
        query = DecisionQuery(query.since, query.until, query.filters, query.has_feedback,
                              query.limit, decode_cursor(page.cursor))


def expected(records: list[DecisionRecord], query: DecisionQuery) -> list[str]:
    return [r.request_id for r in sorted(records, key=sort_key, reverse=True)
            if matches(r, query)]


def assert_same(found: Aggregate, want: Aggregate) -> None:
    for name in ("requests", "errors", "cache_ran", "cache_hits", "prompt_tokens",
                 "completion_tokens", "latency", "ttft", "feedback_count"):
        assert getattr(found, name) == getattr(want, name), name
    for name in ("cost_usd", "dearest_cost_usd", "latency_sum", "feedback_sum"):
        assert getattr(found, name) == pytest.approx(getattr(want, name), rel=1e-9, abs=1e-12)


# -- pages and filters ---------------------------------------------------------------------------


async def test_pages_cover_every_record_once_in_a_stable_order(store: Store) -> None:
    records = synthetic(95)
    feedback = await fill(store, records)
    all_records = joined(records, feedback)
    found = await every_page(store, DecisionQuery(limit=10))
    assert [r.request_id for r in found] == expected(all_records, DecisionQuery())
    # Everything comes back as written, feedback joined.
    by_id = {r.request_id: r for r in all_records}
    for record in found:
        assert record == by_id[record.request_id]
    first = await store.query_decisions(DecisionQuery(limit=95))
    assert first.cursor is None and len(first.records) == 95


@pytest.mark.parametrize("filters", [
    {"filters": (("model", "small"),)},
    {"filters": (("status", "upstream_failed"),)},
    {"filters": (("key_id", "ry-a"), ("tenant", "acme"))},
    {"filters": (("surface", "messages"), ("decision", "coding"))},
    {"has_feedback": True},
    {"has_feedback": False, "filters": (("key_id", "static:x"),)},
    {"since": BASE + 3600.0, "until": BASE + 2 * 3600.0},
    {"since": BASE + 300.0, "filters": (("model", "tiny"),)},
])
async def test_filters(store: Store, filters: dict[str, Any]) -> None:
    records = synthetic(120, seed=3)
    all_records = joined(records, await fill(store, records))
    query = DecisionQuery(limit=7, **filters)
    want = expected(all_records, query)
    assert want, "the filter should select something"
    assert [r.request_id for r in await every_page(store, query)] == want


async def test_get_joins_feedback_and_later_feedback_replaces_it(store: Store) -> None:
    records = synthetic(3)
    await fill(store, records)
    found = await store.get_decision("req_000001")
    assert found is not None and found.feedback is None
    assert found.detail == records[1].detail and found.surface == records[1].surface
    await store.record_feedback("req_000001", 0.25)
    await store.record_feedback("req_000001", 0.75)
    found = await store.get_decision("req_000001")
    assert found is not None and found.feedback == 0.75
    assert (await store.get_decision("req_000000")).feedback == 0.0  # type: ignore[union-attr]
    assert await store.get_decision("req_missing") is None


async def test_feedback_that_comes_before_its_record_is_joined(store: Store) -> None:
    records = synthetic(40)
    early = records[1]  # fill() gives feedback to every 7th record: not to this one
    await store.record_feedback(early.request_id, 0.9)
    await fill(store, records)
    found = await store.get_decision(early.request_id)
    assert found is not None and found.feedback == 0.9
    stats = await store.decision_stats(StatsQuery(BASE - 7200, BASE + 86400, None))
    assert stats[None].feedback_count == len(range(0, 40, 7)) + 1
    # The same from the records themselves (a window within one hour: no roll-ups).
    stats = await store.decision_stats(StatsQuery(BASE - 1, BASE + 1, "model"))
    assert sum(a.feedback_count for a in stats.values()) == 2  # records 0 and 1


def test_bad_cursors_are_refused() -> None:
    for bad in ("", "not-base64!", "WzEsMl0", "eyJhIjoxfQ", "WyJ4IiwieSJd"):
        with pytest.raises(QueryError):
            decode_cursor(bad)


# -- stats ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("group_by", [None, "model", "decision", "key", "tenant", "hour"])
@pytest.mark.parametrize("filters", [(), (("tenant", "acme"),), (("status", "ok"),),
                                     (("model", "large"), ("surface", "chat")),
                                     (("status", "ok"), ("tenant", "acme"))])
async def test_stats_agree_with_the_records(store: Store, group_by: str | None,
                                            filters: tuple[tuple[str, str], ...]) -> None:
    records = synthetic(300, seed=11)
    all_records = joined(records, await fill(store, records))
    # Partial hours at both edges, and whole hours between them.
    query = StatsQuery(BASE + 600.0, BASE + 4 * 3600.0 + 1234.0, group_by, filters)
    want = aggregate_records((r for r in all_records if matches(r, query)), group_by)
    found = await store.decision_stats(query)
    assert set(found) == set(want)
    for key, agg in want.items():
        assert_same(found[key], agg)


async def test_percentiles_are_within_a_bucket(store: Store) -> None:
    records = synthetic(200, seed=5)
    await fill(store, records)
    found = await store.decision_stats(StatsQuery(BASE - 1, BASE + 86400, None))
    latencies = sorted(r.latency_ms for r in records)
    p95 = percentile(found[None].latency, 0.95)
    exact = latencies[math.ceil(0.95 * len(latencies)) - 1]
    assert p95 is not None and abs(p95 - exact) <= 0.06 * exact + 0.05


async def test_empty_window(store: Store) -> None:
    await fill(store, synthetic(10))
    assert await store.decision_stats(StatsQuery(BASE - 7200, BASE - 3600, "model")) == {}


# -- SQLite: roll-ups and retention --------------------------------------------------------------


async def test_sqlite_counts_a_record_written_twice_once(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    await store.start()
    try:
        records = synthetic(50)
        await fill(store, records)
        await fill(store, records[:20])  # a batch retried after an interruption
        found = await store.decision_stats(StatsQuery(BASE - 3600, BASE + 86400, "hour"))
        assert sum(a.requests for a in found.values()) == 50
    finally:
        await store.close()


V1_TABLE = """CREATE TABLE decisions (request_id TEXT PRIMARY KEY, time REAL NOT NULL,
    decision TEXT, model TEXT, endpoint TEXT, latency_ms REAL NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL, status TEXT NOT NULL, stream INTEGER NOT NULL, detail TEXT)"""


async def test_sqlite_upgrades_a_v1_file_and_rolls_up_its_records(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(V1_TABLE)
        conn.executemany("INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         [(f"req_{i}", BASE + i * 600.0, "d", "m", "m#0", 10.0 * i, 5, 6,
                           0.001, "ok", 0, None) for i in range(30)])
    store = SQLiteStore(path)
    await store.start()
    try:
        found = await store.decision_stats(StatsQuery(BASE + 3000, BASE + 86400, "model"))
        assert found["m"].requests == 25 and found["m"].prompt_tokens == 125
        old = await store.get_decision("req_3")
        assert old is not None and old.surface is None and old.key_id is None
        store.record_decision(synthetic(1)[0])
        await store.flush()
        assert len((await store.query_decisions(DecisionQuery(limit=100))).records) == 31
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
        assert conn.execute("SELECT rolled FROM decision_rollup_mark").fetchone()[0] >= 30


async def test_sqlite_rolls_up_new_records_before_stats_and_counts_feedback_once(
        tmp_path: Path) -> None:
    """The writer rolls records up every few seconds, not per batch: stats bring the roll-ups
    up to date first, and feedback given between a record's write and its roll-up is counted
    once (by the roll-up), as is feedback given after it (by set_feedback)."""
    store = SQLiteStore(tmp_path / "s.db")
    await store.start()
    try:
        records = synthetic(40)
        given = await fill(store, records[:20])
        window = StatsQuery(BASE - 3600, BASE + 86400, None)
        first = await store.decision_stats(window)  # rolls the first 20 up
        assert sum(a.requests for a in first.values()) == 20
        given |= await fill(store, records[20:])
        extra = {records[25].request_id: 1.0,  # not rolled up yet
                 records[5].request_id: 0.5}  # rolled up already
        assert not extra.keys() & given.keys()
        for request_id, score in extra.items():
            await store.record_feedback(request_id, score)
        given |= extra
        found = await store.decision_stats(window)
        assert sum(a.requests for a in found.values()) == 40
        assert sum(a.feedback_count for a in found.values()) == len(given)
        assert sum(a.feedback_sum for a in found.values()) == pytest.approx(sum(given.values()))
    finally:
        await store.close()


async def test_sqlite_retention_deletes_old_records_and_their_rollups(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "r.db", retention_days=30)
    await store.start()
    try:
        records = synthetic(90)  # 48 minutes of them, from BASE
        await fill(store, records)
        cutoff = BASE + 1500.0
        await store.retain(now=cutoff + 30 * 86400)
        left = await every_page(store, DecisionQuery(limit=1000))
        assert left and all(r.time >= cutoff for r in left)
        assert len(left) == sum(r.time >= cutoff for r in records)
        stats = await store.decision_stats(StatsQuery(BASE - 3600, BASE + 86400, "hour"))
        assert min(stats) >= math.floor(cutoff / 3600)
    finally:
        await store.close()


async def test_sqlite_a_malformed_record_is_left_out_of_the_rollups(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    await store.start()
    try:
        good = synthetic(3)
        bad = DecisionRecord.from_dict({**good[1].to_dict(), "request_id": "req_bad",
                                        "model": {"not": "a string"}})
        for record in (good[0], bad, good[2]):
            store.record_decision(record)
        await store.flush()
        assert store.dropped == 1 and store.pending == 0
        found = await store.decision_stats(StatsQuery(BASE - 3600, BASE + 86400, "model"))
        assert sum(a.requests for a in found.values()) == 2
    finally:
        await store.close()
