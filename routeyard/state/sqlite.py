"""SQLite store: the embedded default. One file, WAL mode, write-behind batches.

Two connections, each owned by its own single-thread executor: a writer (the flusher's
batches, retention, key-value writes) and a reader (lookups). In WAL mode readers never wait on
the writer, and neither ever runs on the event loop.

Key-value state lives in the `kv` table and is written through: `set_value` and `claim` return
after their statement committed on the writer thread, so a following read (on the reader
connection, which holds no open transaction between statements) sees them.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from routeyard.state import sqlite_query as q
from routeyard.state._buffered import BufferedStore, log
from routeyard.state.base import (
    CLAIM_VALUE,
    DECISION_FIELDS,
    DecisionRecord,
    StoreUnavailable,
    check_ttl,
    check_value,
)
from routeyard.state.query import Aggregate, DecisionPage, DecisionQuery, StatsQuery
from routeyard.state.record import to_json

T = TypeVar("T")

_COLUMNS = ", ".join(DECISION_FIELDS)
# Statements run in order at open; later features (key-value state, budgets) append tables here.
_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS decisions (
        request_id TEXT PRIMARY KEY,
        time REAL NOT NULL,
        decision TEXT,
        model TEXT,
        endpoint TEXT,
        latency_ms REAL NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        status TEXT NOT NULL,
        stream INTEGER NOT NULL,
        detail TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS kv (
        key TEXT PRIMARY KEY,
        value BLOB NOT NULL,
        expires_at REAL
    )""",
    "CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires_at) WHERE expires_at IS NOT NULL",
)
_ROW_MARKS = f"({', '.join('?' for _ in DECISION_FIELDS)})"
# A record written again (a batch retried after an interruption) replaces the first in place:
# it keeps its rowid, so the roll-ups, which count records up to a rowid, count it once.
_UPSERT = (" ON CONFLICT (request_id) DO UPDATE SET "
           + ", ".join(f"{f} = excluded.{f}" for f in DECISION_FIELDS if f != "request_id"))
_INSERT = f"INSERT INTO decisions ({_COLUMNS}) VALUES {_ROW_MARKS}{_UPSERT}"
# Rows per multi-row INSERT: one statement step per chunk instead of one per row, because
# sqlite3 drops and retakes the GIL around every step, and each handoff stalls the event loop
# (the convoy effect): executemany of a busy second's rows cost the loop ~10% of throughput.
_CHUNK_ROWS = 256


@functools.lru_cache(maxsize=8)
def _insert_many(n: int) -> str:
    return (f"INSERT INTO decisions ({_COLUMNS}) VALUES "
            + ", ".join([_ROW_MARKS] * n) + _UPSERT)
# Exact bound: walk the time index newest-first, skip the rows to keep, delete the rest.
_PRUNE = (
    "DELETE FROM decisions WHERE rowid IN "
    "(SELECT rowid FROM decisions ORDER BY time DESC LIMIT -1 OFFSET ?)"
)
_BAD_ROW_ERRORS = (sqlite3.InterfaceError, sqlite3.ProgrammingError)
# Expiry times are wall-clock (unix seconds) so they stay meaningful across restarts.
_KV_GET = "SELECT value FROM kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)"
_KV_SET = "INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, ?, ?)"
_KV_DELETE_EXPIRED_KEY = "DELETE FROM kv WHERE key = ? AND expires_at <= ?"
_KV_CLAIM = "INSERT OR IGNORE INTO kv (key, value, expires_at) VALUES (?, ?, ?)"
_KV_SWEEP = "DELETE FROM kv WHERE expires_at <= ?"
_KV_DELETE = "DELETE FROM kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)"
_KV_SCAN = ("SELECT key, value FROM kv WHERE key >= ? AND key < ? AND (expires_at IS NULL OR "
            "expires_at > ?) ORDER BY key LIMIT ?")
# Expired rows nobody reads again are swept after this many key-value writes.
_KV_SWEEP_EVERY = 1_000
_KV_ERRORS = (sqlite3.OperationalError, OSError)


def default_sqlite_path() -> Path:
    """$XDG_STATE_HOME/routeyard/routeyard.db (XDG default: ~/.local/state)."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "routeyard" / "routeyard.db"


def _row(r: DecisionRecord) -> tuple[object, ...]:
    return (r.request_id, r.time, r.decision, r.model, r.endpoint, r.latency_ms,
            r.prompt_tokens, r.completion_tokens, r.cost_usd, r.status, int(r.stream),
            to_json(r.detail).decode() if r.detail is not None else None,
            r.surface, r.key_id, r.tenant, r.ttft_ms, r.cache, r.dearest_cost_usd,
            r.session, r.energy_j)


# Columns added after a table was first created: (name, SQL type). A file from an earlier
# version gets them added when it is opened (schema v2: the query API's columns).
_ADDED_COLUMNS = (("detail", "TEXT"), ("surface", "TEXT"), ("key_id", "TEXT"),
                  ("tenant", "TEXT"), ("ttft_ms", "REAL"), ("cache", "TEXT"),
                  ("dearest_cost_usd", "REAL"), ("session", "TEXT"), ("energy_j", "REAL"))
# How often the writer adds new records to the roll-ups (stats bring them up to date first).
_ROLL_UP_EVERY_S = 5.0
# How often the writer deletes records past `retention_days` (a slice per flush until done).
_RETENTION_EVERY_S = 60.0


class SQLiteStore(BufferedStore):
    name = "sqlite"
    # Locked beyond busy_timeout, disk full, I/O error, directory not creatable yet:
    # transient, so the batch is kept and retried later.
    _write_errors = (sqlite3.OperationalError, OSError)

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_records: int | None = None,
        clock: Callable[[], float] = time.time,
        retention_days: float | None = None,
        **buffer_options: Any,
    ) -> None:
        super().__init__(**buffer_options)
        self.path = Path(path) if path is not None else default_sqlite_path()
        self.retention_days = retention_days
        self._next_retention = 0.0  # monotonic time of the next retention pass
        self._next_roll_up = 0.0  # monotonic time of the next roll-up of new records
        # Key expiry is wall-clock (it must hold across restarts); injectable for tests.
        self.clock = clock
        self.max_records = max_records
        # Background flushes prune once this many rows arrived since the last prune, so the
        # table overshoots max_records by at most ~10%; an explicit flush() prunes exactly.
        self._prune_every = max(100, (max_records or 0) // 10)
        self._since_prune = 0
        self._writer_pool: ThreadPoolExecutor | None = None
        self._reader_pool: ThreadPoolExecutor | None = None
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._open_lock: asyncio.Lock | None = None
        self._kv_writes = 0

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        await self._ensure_open()
        await super().start()

    async def flush(self) -> None:
        await super().flush()
        if self.max_records is not None and self._since_prune:
            await self._in_writer(self._prune)

    async def _close_backend(self) -> None:
        if self._writer is not None:
            await self._in_writer(self._writer.close)
        if self._reader is not None:
            await self._in_reader(self._reader.close)
        for pool in (self._writer_pool, self._reader_pool):
            if pool is not None:
                pool.shutdown(wait=False)  # idle: every job above has completed
        self._writer = self._reader = None
        self._writer_pool = self._reader_pool = None

    async def _ensure_open(self) -> None:
        if self._writer is not None:
            return
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self._writer is not None:
                return
            writer_pool = ThreadPoolExecutor(1, thread_name_prefix="routeyard-sqlite-w")
            reader_pool = ThreadPoolExecutor(1, thread_name_prefix="routeyard-sqlite-r")
            loop = asyncio.get_running_loop()
            try:
                # The writer goes first: it creates the file, sets WAL mode and the schema.
                writer = await loop.run_in_executor(writer_pool, self._connect, False)
                reader = await loop.run_in_executor(reader_pool, self._connect, True)
            except BaseException:
                writer_pool.shutdown(wait=False)
                reader_pool.shutdown(wait=False)
                raise
            self._writer_pool, self._reader_pool = writer_pool, reader_pool
            self._writer, self._reader = writer, reader

    def _connect(self, read_only: bool) -> sqlite3.Connection:
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # Each connection only ever runs on its own executor's single thread.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 5000")
        if read_only:
            conn.execute("PRAGMA query_only = ON")
            return conn
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints; safe in WAL
        conn.execute("BEGIN")
        for statement in _SCHEMA:
            conn.execute(statement)
        present = {row[1] for row in conn.execute("PRAGMA table_info(decisions)")}
        for column, kind in _ADDED_COLUMNS:
            if column not in present:
                conn.execute(f"ALTER TABLE decisions ADD COLUMN {column} {kind}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for statement in q.V2_SCHEMA:
            conn.execute(statement)
        q.add_feedback_columns(conn)
        if version < q.SCHEMA_VERSION:  # roll-ups made again from the records, when first read
            # (time, request_id) serves every query the time index did: one index less to
            # keep up on each insert.
            conn.execute("DROP INDEX IF EXISTS decisions_time")
            conn.execute("DELETE FROM decision_rollups")
            conn.execute("DELETE FROM decision_rollup_mark")
            conn.execute(f"PRAGMA user_version = {q.SCHEMA_VERSION}")
        conn.execute("COMMIT")
        return conn

    async def _in_writer(self, fn: Callable[..., T], *args: object) -> T:
        await self._ensure_open()
        return await asyncio.get_running_loop().run_in_executor(self._writer_pool, fn, *args)

    async def _in_reader(self, fn: Callable[..., T], *args: object) -> T:
        await self._ensure_open()
        return await asyncio.get_running_loop().run_in_executor(self._reader_pool, fn, *args)

    # -- writes (writer thread) -------------------------------------------------------

    async def _write(self, batch: list[DecisionRecord]) -> None:
        rejected = await self._in_writer(self._write_rows, batch)
        if rejected:
            self.dropped += rejected
            log.error("sqlite store rejected %d malformed decision records", rejected)

    def _write_rows(self, batch: list[DecisionRecord]) -> int:
        assert self._writer is not None
        conn = self._writer
        rows, rejected = [], 0
        for r in batch:
            try:
                rows.append(_row(r))
            except (TypeError, ValueError, orjson.JSONEncodeError):  # one record, not the flusher
                rejected += 1
        conn.execute("BEGIN")
        try:
            try:
                for start in range(0, len(rows), _CHUNK_ROWS):
                    chunk = rows[start:start + _CHUNK_ROWS]
                    conn.execute(_insert_many(len(chunk)),
                                 [value for row in chunk for value in row])
            except _BAD_ROW_ERRORS:
                # One record with a bad field type poisons executemany: fall back to one
                # insert per row and skip the bad ones, instead of retrying the batch forever.
                for row in rows:
                    try:
                        conn.execute(_INSERT, row)
                    except _BAD_ROW_ERRORS:
                        rejected += 1
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._since_prune += len(rows) - rejected
        if self.max_records is not None and self._since_prune >= self._prune_every:
            self._prune()
        self._roll_up()
        self._retain()
        return rejected

    def _roll_up(self, *, now: bool = False) -> None:
        """Bring the roll-ups up to date: every few seconds, and before stats (`now`)."""
        if not now and time.monotonic() < self._next_roll_up:
            return
        self._next_roll_up = time.monotonic() + _ROLL_UP_EVERY_S
        try:
            q.roll_up_pending(self._writer_conn())
        except sqlite3.OperationalError as exc:  # retried next time; stats say so if asked
            if now:
                raise
            log.warning("sqlite store could not roll up decision records: %s", exc)

    def _retain(self, *, now: float | None = None) -> None:
        """Delete records older than `retention_days`, a slice at a time, once a minute."""
        if self.retention_days is None or time.monotonic() < self._next_retention:
            return
        assert self._writer is not None
        cutoff = (self.clock() if now is None else now) - self.retention_days * 86400
        try:
            gone = q.prune_older(self._writer, cutoff)
        except sqlite3.OperationalError as exc:  # housekeeping: retried next time
            log.warning("sqlite store could not delete old records: %s", exc)
            return
        if gone < 10_000:  # done for now; else go on with the next flush
            self._next_retention = time.monotonic() + _RETENTION_EVERY_S

    def _prune(self) -> None:
        assert self._writer is not None and self.max_records is not None
        self._writer.execute(_PRUNE, (self.max_records,))
        self._since_prune = 0

    # -- key-value state (writes on the writer thread, reads on the reader) -------------

    async def get_value(self, key: str) -> bytes | None:
        try:
            return await self._in_reader(self._kv_get, key)
        except _KV_ERRORS as exc:
            raise StoreUnavailable(f"sqlite store unavailable: {exc}") from exc

    async def set_value(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        value, ttl_s = check_value(value), check_ttl(ttl_s)
        try:
            await self._in_writer(self._kv_set, key, value, ttl_s)
        except _KV_ERRORS as exc:
            raise StoreUnavailable(f"sqlite store unavailable: {exc}") from exc

    async def delete_value(self, key: str) -> bool:
        try:
            return await self._in_writer(self._kv_delete, key)
        except _KV_ERRORS as exc:
            raise StoreUnavailable(f"sqlite store unavailable: {exc}") from exc

    async def scan_values(self, prefix: str, limit: int = 1000) -> list[tuple[str, bytes]]:
        try:
            return await self._in_reader(self._kv_scan, prefix, limit)
        except _KV_ERRORS as exc:
            raise StoreUnavailable(f"sqlite store unavailable: {exc}") from exc

    async def claim(self, key: str, ttl_s: float | None = None) -> bool:
        ttl_s = check_ttl(ttl_s)
        try:
            return await self._in_writer(self._kv_claim, key, ttl_s)
        except _KV_ERRORS as exc:
            raise StoreUnavailable(f"sqlite store unavailable: {exc}") from exc

    def _kv_get(self, key: str) -> bytes | None:
        assert self._reader is not None
        # fetchall, not fetchone: an unfinished statement would hold its read snapshot open.
        rows = self._reader.execute(_KV_GET, (key, self.clock())).fetchall()
        return bytes(rows[0][0]) if rows else None

    def _kv_set(self, key: str, value: bytes, ttl_s: float | None) -> None:
        assert self._writer is not None
        now = self.clock()
        self._writer.execute(_KV_SET, (key, value, None if ttl_s is None else now + ttl_s))
        self._kv_wrote(now)

    def _kv_scan(self, prefix: str, limit: int) -> list[tuple[str, bytes]]:
        assert self._reader is not None
        # A key range, not LIKE: no escaping, and the primary-key index serves it.
        rows = self._reader.execute(_KV_SCAN, (prefix, prefix + "\U0010ffff", self.clock(),
                                              max(0, limit))).fetchall()
        return [(key, bytes(value)) for key, value in rows]

    def _kv_delete(self, key: str) -> bool:
        assert self._writer is not None
        cur = self._writer.execute(_KV_DELETE, (key, self.clock()))
        return cur.rowcount == 1

    def _kv_claim(self, key: str, ttl_s: float | None) -> bool:
        assert self._writer is not None
        conn = self._writer
        now = self.clock()
        # IMMEDIATE takes the write lock up front, so two processes sharing the file cannot
        # both see the key absent; within this process the single writer thread serializes.
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_KV_DELETE_EXPIRED_KEY, (key, now))
            cur = conn.execute(
                _KV_CLAIM, (key, CLAIM_VALUE, None if ttl_s is None else now + ttl_s)
            )
            claimed = cur.rowcount == 1
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._kv_wrote(now)
        return claimed

    def _kv_wrote(self, now: float) -> None:
        self._kv_writes += 1
        if self._kv_writes >= _KV_SWEEP_EVERY:
            self._kv_writes = 0
            assert self._writer is not None
            try:  # housekeeping: the write itself already committed
                self._writer.execute(_KV_SWEEP, (now,))
            except sqlite3.OperationalError as exc:
                log.warning("sqlite store could not sweep expired keys: %s", exc)

    # -- reads (reader thread) --------------------------------------------------------

    async def get_decision(self, request_id: str) -> DecisionRecord | None:
        return await self._in_reader(self._get, request_id)

    async def recent_decisions(self, limit: int = 100) -> list[DecisionRecord]:
        return await self._in_reader(self._recent, limit)

    async def ping(self) -> bool:
        try:
            return await self._in_reader(self._ping)
        except (sqlite3.Error, OSError):
            return False

    def _get(self, request_id: str) -> DecisionRecord | None:
        assert self._reader is not None
        return q.get_one(self._reader, request_id)

    def _recent(self, limit: int) -> list[DecisionRecord]:
        assert self._reader is not None
        if limit <= 0:
            return []
        return q.query_page(self._reader, DecisionQuery(limit=limit)).records

    # -- the query API ---------------------------------------------------------------------

    async def query_decisions(self, query: DecisionQuery) -> DecisionPage:
        assert query.limit > 0
        try:
            return await self._in_reader(lambda: q.query_page(self._reader_conn(), query))
        except _KV_ERRORS as exc:
            raise StoreUnavailable(f"sqlite store unavailable: {exc}") from exc

    async def decision_stats(self, query: StatsQuery) -> dict[Any, Aggregate]:
        try:
            await self._in_writer(lambda: self._roll_up(now=True))
            return await self._in_reader(lambda: q.stats(self._reader_conn(), query))
        except _KV_ERRORS as exc:
            raise StoreUnavailable(f"sqlite store unavailable: {exc}") from exc

    async def record_feedback(self, request_id: str, score: float, *,
                              implicit: bool = False) -> bool:
        await super().flush()  # its record first, if it still waits in the buffer
        try:
            return await self._in_writer(lambda: q.set_feedback(
                self._writer_conn(), request_id, float(score), self.clock(), implicit))
        except _KV_ERRORS as exc:
            raise StoreUnavailable(f"sqlite store unavailable: {exc}") from exc

    async def retain(self, now: float | None = None) -> None:
        """Run the retention pass now (tests; the writer runs it once a minute)."""
        self._next_retention = 0.0
        await self._in_writer(lambda: self._retain(now=now))

    def _reader_conn(self) -> sqlite3.Connection:
        assert self._reader is not None
        return self._reader

    def _writer_conn(self) -> sqlite3.Connection:
        assert self._writer is not None
        return self._writer

    def _ping(self) -> bool:
        assert self._reader is not None
        return self._reader.execute("SELECT 1").fetchone() == (1,)
