"""Store additions for the API surfaces and the gateway: `delete_value` and `scan_values` on
every store, and the decision record's `detail`, which an earlier version's SQLite file gains
when it is opened."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from routeyard.state import DecisionRecord, SQLiteStore, Store


async def test_delete_value(store: Store) -> None:
    await store.set_value("gone", b"x")
    await store.set_value("kept", b"y")
    assert await store.delete_value("gone") is True
    assert await store.delete_value("gone") is False  # already gone
    assert await store.delete_value("never") is False
    assert await store.get_value("gone") is None
    assert await store.get_value("kept") == b"y"


async def test_detail_round_trips(store: Store) -> None:
    detail = {"skipped": [{"model": "m", "reason": "no vision"}]}
    store.record_decision(DecisionRecord("req_d", 1.0, "d", "m", "e", 1.0, 1, 1, 0.0, "ok",
                                         detail=detail))
    store.record_decision(DecisionRecord("req_n", 2.0, "d", "m", "e", 1.0, 1, 1, 0.0, "ok"))
    await store.flush()
    found = await store.get_decision("req_d")
    assert found is not None and found.detail == detail
    plain = await store.get_decision("req_n")
    assert plain is not None and plain.detail is None


async def test_an_earlier_sqlite_file_gains_the_detail_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the table as an earlier version created it
        conn.execute("""CREATE TABLE decisions (request_id TEXT PRIMARY KEY, time REAL NOT NULL,
            decision TEXT, model TEXT, endpoint TEXT, latency_ms REAL NOT NULL,
            prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
            cost_usd REAL NOT NULL, status TEXT NOT NULL, stream INTEGER NOT NULL)""")
        conn.execute("INSERT INTO decisions VALUES ('req_old', 1, 'd', 'm', 'e', 1, 1, 1, 0, "
                     "'ok', 0)")
    store = SQLiteStore(path)
    await store.start()
    try:
        old = await store.get_decision("req_old")
        assert old is not None and old.detail is None and old.model == "m"
        store.record_decision(DecisionRecord("req_new", 2.0, "d", "m", "e", 1.0, 1, 1, 0.0,
                                             "ok", detail={"a": 1}))
        await store.flush()
        new = await store.get_decision("req_new")
        assert new is not None and new.detail == {"a": 1}
    finally:
        await store.close()


async def test_scan_values_lists_a_prefix_in_key_order(store: Store) -> None:
    for key in ("tenant:b", "tenant:a", "tenant:c*", "tenants", "vkey:x"):
        await store.set_value(key, key.encode())
    await store.set_value("tenant:gone", b"x")
    await store.delete_value("tenant:gone")
    found = await store.scan_values("tenant:")
    assert found == [("tenant:a", b"tenant:a"), ("tenant:b", b"tenant:b"),
                     ("tenant:c*", b"tenant:c*")]
    assert await store.scan_values("tenant:", limit=2) == found[:2]
    assert await store.scan_values("tenant:c*") == [("tenant:c*", b"tenant:c*")]  # literal *
    assert await store.scan_values("nothing:") == []
