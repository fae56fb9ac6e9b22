"""PostgreSQL store: the durable records of a multi-replica deployment. asyncpg, one pool.

Two tables (routeyard/state/migrations/postgres/): `decisions`, the log, and `kv`, which holds
keys and tenants, spend, feedback markers, stored responses and learned state.

- The decision log is write-behind (`BufferedStore`): each batch is COPYed into a temporary
  table and merged with one upsert, in one transaction; a batch requeued after an
  interruption rewrites the same rows.
- Key-value writes are written through: when `set_value` or `claim` return, the row committed.
  Expiry is wall-clock (`expires_at`, unix seconds) and a claim is one INSERT ... ON CONFLICT
  that also takes over an expired row, so exactly one caller wins across every replica.
- Down: reads raise StoreUnavailable, `ping` is False, decision records stay buffered (bounded)
  and are written when the server answers again. Nothing connects before the first use.
- Schema: the first use (normally `start()`) applies missing migrations under an advisory lock,
  and refuses a schema newer than this build (`SchemaMismatch`). When the server is down at
  start, the check runs on the first connection that succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg
import orjson

from routeyard.state import pg_query
from routeyard.state._buffered import BufferedStore, log
from routeyard.state.base import (
    CLAIM_VALUE,
    DECISION_FIELDS,
    DecisionRecord,
    StoreUnavailable,
    check_ttl,
    check_value,
)
from routeyard.state.pg_schema import (
    PG_ERRORS,
    SchemaMismatch,
    check_url,
    connect,
    refuse_newer,
    server_settings,
    upgrade,
    where,
)
from routeyard.state.query import Aggregate, DecisionPage, DecisionQuery, StatsQuery, page_of
from routeyard.state.record import FEEDBACK_FIELDS, to_json

_UNAVAILABLE = (*PG_ERRORS, SchemaMismatch)
# Each record field's column type; a field added to DecisionRecord needs a migration and a row
# here (the KeyError at import says so).
_PG_TYPES = {"request_id": "text", "time": "float8", "decision": "text", "model": "text",
             "endpoint": "text", "latency_ms": "float8", "prompt_tokens": "int8",
             "completion_tokens": "int8", "cost_usd": "float8", "status": "text",
             "stream": "bool", "detail": "text",  # detail goes as JSON text, kept as jsonb
             "surface": "text", "key_id": "text", "tenant": "text", "ttft_ms": "float8",
             "cache": "text", "dearest_cost_usd": "float8", "session": "text",
             "energy_j": "float8"}
_COLUMNS = ", ".join(DECISION_FIELDS)
_UPSERT_TAIL = " ON CONFLICT (request_id) DO UPDATE SET " + ", ".join(
    f"{f} = EXCLUDED.{f}" for f in DECISION_FIELDS if f != "request_id")
# A batch is COPYed (binary) into a per-connection temporary table, then merged in with one
# upsert: COPY costs the event loop a third of what a multi-row INSERT's parameters do.
_STAGE = "routeyard_decisions_in"
_CREATE_STAGE = (f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ("
                 + ", ".join(f"{f} {_PG_TYPES[f]}" for f in DECISION_FIELDS)
                 + ") ON COMMIT DELETE ROWS")
_MERGE = (f"INSERT INTO decisions ({_COLUMNS}) SELECT "
          + ", ".join(f"{f}::jsonb" if f == "detail" else f for f in DECISION_FIELDS)
          + f" FROM {_STAGE}" + _UPSERT_TAIL)
_INSERT_ONE = (f"INSERT INTO decisions ({_COLUMNS}) VALUES ("
               + ", ".join(f"${i}::jsonb" if f == "detail" else f"${i}"
                           for i, f in enumerate(DECISION_FIELDS, 1)) + ")" + _UPSERT_TAIL)
# What one bad value in a batch raises: the server's data errors (NUL in text, \u0000 in
# jsonb), and the client's, when COPY encodes a value of the wrong type or size.
_BAD_ROW_ERRORS = (asyncpg.DataError, TypeError, ValueError, OverflowError)
_SELECT = ("SELECT " + ", ".join(f"d.{f}" for f in DECISION_FIELDS) + ", f.score, "
           "f.implicit FROM decisions AS d "
           "LEFT JOIN decision_feedback AS f ON f.request_id = d.request_id")
_FEEDBACK_SET = ("INSERT INTO decision_feedback (request_id, score, time, implicit) "
                 "VALUES ($1, $2, $3, false) ON CONFLICT (request_id) DO UPDATE SET "
                 "score = EXCLUDED.score, time = EXCLUDED.time, implicit = false RETURNING 1")
# Implicit feedback never replaces feedback already kept (explicit or not).
_FEEDBACK_ADD_IMPLICIT = ("INSERT INTO decision_feedback (request_id, score, time, implicit) "
                          "VALUES ($1, $2, $3, true) ON CONFLICT (request_id) DO NOTHING "
                          "RETURNING 1")
_RETAIN = ("DELETE FROM decisions WHERE request_id IN (SELECT request_id FROM decisions "
           "WHERE time < $1 LIMIT 10000)")
_RETAIN_FEEDBACK = "DELETE FROM decision_feedback WHERE time < $1"
# Exact bound, as SQLite's: the rows past the newest max_records go.
_PRUNE = ("DELETE FROM decisions WHERE request_id IN "
          "(SELECT request_id FROM decisions ORDER BY time DESC OFFSET $1)")
_LIVE = "(expires_at IS NULL OR expires_at > $2)"
_KV_GET = f"SELECT value FROM kv WHERE key = $1 AND {_LIVE}"
_KV_SET = ("INSERT INTO kv (key, value, expires_at) VALUES ($1, $2, $3) ON CONFLICT (key) "
           "DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at")
# Insert, or take over a row that expired; RETURNING yields a row only for the winner. Two
# claims of one key serialize on the row (the second re-checks the WHERE on the committed row).
_KV_CLAIM = ("INSERT INTO kv AS old (key, value, expires_at) VALUES ($1, $3, $4) "
             "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, "
             "expires_at = EXCLUDED.expires_at "
             "WHERE old.expires_at IS NOT NULL AND old.expires_at <= $2 RETURNING 1")
_KV_DELETE = f"DELETE FROM kv WHERE key = $1 RETURNING {_LIVE}"
# A key range, not LIKE: no escaping, and the primary key's index (collation "C") serves it.
_KV_SCAN = (f"SELECT key, value FROM kv WHERE key >= $1 AND key < $3 AND {_LIVE} "
            "ORDER BY key LIMIT $4")
_KV_SWEEP = ("DELETE FROM kv WHERE key IN (SELECT key FROM kv WHERE expires_at <= $1 "
             "LIMIT 10000)")
# Housekeeping (prune, sweep) runs on one replica at a time: the others skip that round.
_TRY_LOCK = "SELECT pg_try_advisory_xact_lock(hashtext('routeyard-housekeeping'))"


class PostgresStore(BufferedStore):
    name = "postgres"
    # Anything the server or the network says: the batch stays buffered and is retried with
    # backoff (a bad record is not among them: `_write` sets it aside itself).
    _write_errors = _UNAVAILABLE

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        max_records: int | None = None,
        clock: Callable[[], float] = time.time,
        pool_size: int = 10,
        connect_timeout: float = 1.0,
        command_timeout: float = 5.0,
        start_timeout: float = 30.0,
        housekeeping_s: float = 60.0,
        retention_days: float | None = None,
        **buffer_options: Any,
    ) -> None:
        # Batches are encoded on the event loop: keep each short (COPY: ~1 ms per 1,000 rows).
        buffer_options.setdefault("max_batch", 2_000)
        super().__init__(**buffer_options)
        self.url = check_url(url)
        self.schema = schema  # None: the URL's default search_path (normally `public`)
        self.max_records = max_records
        self.clock = clock  # key expiry; injectable for tests
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        # How long start() waits for the schema check; past it the check goes on meanwhile.
        self.start_timeout = start_timeout
        self.housekeeping_s = housekeeping_s
        self.retention_days = retention_days
        self._pool: asyncpg.Pool | None = None
        self._ready = False
        self._preparing: asyncio.Task[None] | None = None
        self._prune_every = max(100, (max_records or 0) // 10)
        self._since_prune = 0
        self._last_housekeeping = time.monotonic()

    def __repr__(self) -> str:
        return f"PostgresStore({where(self.url)!r}, schema={self.schema!r})"

    # -- lifecycle --------------------------------------------------------------------

    async def preflight(self) -> None:
        """Refuse a schema newer than this build before serving (one short connection); a
        server that does not answer is checked again by start()."""
        try:
            conn = await connect(self.url, schema=self.schema, timeout=self.connect_timeout)
        except (*PG_ERRORS, TimeoutError):
            return
        try:
            await refuse_newer(conn)
        except PG_ERRORS:
            return
        finally:
            with contextlib.suppress(*PG_ERRORS):
                await conn.close()

    async def start(self) -> None:
        """Check (and upgrade) the schema, then start the flusher. A schema newer than this
        build raises SchemaMismatch; an unreachable server only defers the check."""
        try:
            await self._pool_ready(self.start_timeout)
        except SchemaMismatch:
            await self._close_backend()  # the caller refuses to start: leave nothing open
            raise
        except PG_ERRORS as exc:
            log.warning("postgres store: %s does not answer (%s: %s); the schema is checked "
                        "when it does", where(self.url), type(exc).__name__, exc)
        await super().start()

    async def flush(self) -> None:
        await super().flush()
        if self.max_records is not None and self._since_prune and self._ready:
            with contextlib.suppress(*PG_ERRORS):  # the records are written; pruning can wait
                await self._housekeeping(prune=True)

    async def _close_backend(self) -> None:
        preparing, self._preparing = self._preparing, None
        if preparing is not None:
            preparing.cancel()
            with contextlib.suppress(asyncio.CancelledError, *_UNAVAILABLE):
                await preparing  # also collects a failure nobody waited for
        pool, self._pool = self._pool, None
        self._ready = False
        if pool is not None:
            try:
                async with asyncio.timeout(self.command_timeout):
                    await pool.close()
            except TimeoutError:
                pool.terminate()

    async def _pool_ready(self, wait_s: float | None = None) -> asyncpg.Pool:
        """The pool, once the schema is known good. Concurrent callers share one check, and
        wait for it at most `wait_s` (default: the command timeout; TimeoutError after)."""
        if self._ready:
            assert self._pool is not None
            return self._pool
        task = self._preparing
        if task is None or task.done():
            if task is not None and not task.cancelled():
                task.exception()  # its waiters saw it; mark it seen before replacing it
            task = self._preparing = asyncio.ensure_future(self._prepare())
        # Shielded: a caller that gives up must not cancel the check the others wait on.
        async with asyncio.timeout(wait_s if wait_s is not None else self.command_timeout):
            await asyncio.shield(task)
        assert self._pool is not None
        return self._pool

    async def _prepare(self) -> None:
        if self._pool is None:
            # min_size=0: creating the pool connects nothing, so it cannot fail on an outage.
            self._pool = await asyncpg.create_pool(
                self.url, min_size=0, max_size=self.pool_size, timeout=self.connect_timeout,
                command_timeout=self.command_timeout,
                server_settings=server_settings(self.schema), init=_create_stage)
        # Its own connection, without the command timeout: a migration may take a while.
        conn = await connect(self.url, schema=self.schema, timeout=self.connect_timeout)
        try:
            applied = await upgrade(conn, schema=self.schema)
        except SchemaMismatch as exc:
            log.error("postgres store: %s", exc)
            raise
        finally:
            await conn.close()
        if applied:
            log.info("postgres store: applied schema migrations %s on %s",
                     ", ".join(m.label for m in applied), where(self.url))
        self._ready = True

    # -- decision log writes (the flusher) ----------------------------------------------

    async def _write(self, batch: list[DecisionRecord]) -> None:
        pool = await self._pool_ready()
        # Last copy wins within a batch, as in the other stores (one upsert cannot touch a
        # row twice).
        latest = {r.request_id: r for r in batch}
        rows, rejected = _rows(latest.values())
        if rows:
            try:
                async with pool.acquire(timeout=self.command_timeout) as conn, \
                        conn.transaction():
                    await conn.copy_records_to_table(_STAGE, records=rows,
                                                     columns=DECISION_FIELDS)
                    await conn.execute(_MERGE)
            except _BAD_ROW_ERRORS:
                # One bad value fails the whole batch: write row by row, skip bad rows.
                rejected += await self._write_rows(pool, rows)
        if rejected:
            self.dropped += rejected
            log.error("postgres store rejected %d malformed decision records", rejected)
        self._since_prune += len(latest) - rejected
        due = time.monotonic() - self._last_housekeeping >= self.housekeeping_s
        prune = self.max_records is not None and self._since_prune >= self._prune_every
        if due or prune:
            try:  # the batch is written: a failed cleanup is retried next time, not requeued
                await self._housekeeping(prune=prune)
            except PG_ERRORS as exc:
                log.warning("postgres store housekeeping failed: %s: %s", type(exc).__name__,
                            exc)

    async def _write_rows(self, pool: asyncpg.Pool, rows: list[tuple[Any, ...]]) -> int:
        rejected = 0
        async with pool.acquire(timeout=self.command_timeout) as conn:
            for row in rows:
                try:
                    await conn.execute(_INSERT_ONE, *row)
                except _BAD_ROW_ERRORS:
                    # PostgreSQL text cannot hold NUL (nor jsonb \u0000): keep the record with
                    # U+FFFD in their place rather than lose it.
                    scrubbed = tuple(_scrub_nul(v) for v in row)
                    if scrubbed == row:
                        rejected += 1
                        continue
                    try:
                        await conn.execute(_INSERT_ONE, *scrubbed)
                    except _BAD_ROW_ERRORS:
                        rejected += 1
        return rejected

    async def _housekeeping(self, *, prune: bool) -> None:
        """Expired keys out (in slices), and the log back to max_records when asked."""
        assert self._pool is not None
        self._last_housekeeping = time.monotonic()
        async with self._pool.acquire(timeout=self.command_timeout) as conn, \
                conn.transaction():
            if not await conn.fetchval(_TRY_LOCK):
                return
            await conn.execute(_KV_SWEEP, self.clock())
            if self.retention_days is not None:
                cutoff = self.clock() - self.retention_days * 86400
                await conn.execute(_RETAIN, cutoff)
                await conn.execute(_RETAIN_FEEDBACK, cutoff)
            if prune and self.max_records is not None:
                await conn.execute(_PRUNE, self.max_records)
                self._since_prune = 0

    # -- decision log reads ------------------------------------------------------------

    async def _query(self, query: str, *args: object) -> list[asyncpg.Record]:
        try:
            pool = await self._pool_ready()
            async with pool.acquire(timeout=self.command_timeout) as conn:
                return await conn.fetch(query, *args)
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"postgres store unavailable: {exc}") from exc

    async def get_decision(self, request_id: str) -> DecisionRecord | None:
        if "\x00" in request_id:
            return None  # no row can have it, and the server would refuse the parameter
        rows = await self._query(f"{_SELECT} WHERE d.request_id = $1", request_id)
        return _record(rows[0]) if rows else None

    async def recent_decisions(self, limit: int = 100) -> list[DecisionRecord]:
        if limit <= 0:
            return []
        return (await self.query_decisions(DecisionQuery(limit=limit))).records

    async def query_decisions(self, query: DecisionQuery) -> DecisionPage:
        sql, args = pg_query.page_sql(_SELECT, query)
        return page_of([_record(row) for row in await self._query(sql, *args)], query.limit)

    async def decision_stats(self, query: StatsQuery) -> dict[Any, Aggregate]:
        groups: dict[Any, Aggregate] = {}
        statements = pg_query.stats_sql(query)
        # Each on a connection of its own, at once; merged in order (the sums first).
        results = await asyncio.gather(*(self._query(sql, *args) for sql, args, _ in statements))
        for (_, _, merge), rows in zip(statements, results, strict=True):
            merge(groups, rows)
        return groups

    async def record_feedback(self, request_id: str, score: float, *,
                              implicit: bool = False) -> bool:
        rows = await self._query(_FEEDBACK_ADD_IMPLICIT if implicit else _FEEDBACK_SET,
                                 _check_key(request_id), float(score), self.clock())
        return bool(rows)

    async def ping(self) -> bool:
        try:
            # Bounds a server that accepts the connection but does not answer.
            async with asyncio.timeout(self.connect_timeout * 2):
                pool = await self._pool_ready()
                return await pool.fetchval("SELECT 1") == 1
        except _UNAVAILABLE:  # TimeoutError is an OSError
            return False

    # -- key-value state (written through) ----------------------------------------------

    async def get_value(self, key: str) -> bytes | None:
        if "\x00" in key:
            return None
        rows = await self._query(_KV_GET, key, self.clock())
        return rows[0][0] if rows else None

    async def set_value(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        value, ttl_s = check_value(value), check_ttl(ttl_s)
        await self._query(_KV_SET, _check_key(key), value, self._expiry(ttl_s))

    async def delete_value(self, key: str) -> bool:
        if "\x00" in key:
            return False
        rows = await self._query(_KV_DELETE, key, self.clock())
        return bool(rows) and rows[0][0]

    async def scan_values(self, prefix: str, limit: int = 1000) -> list[tuple[str, bytes]]:
        if "\x00" in prefix or limit <= 0:
            return []
        rows = await self._query(_KV_SCAN, prefix, self.clock(), prefix + "\U0010ffff", limit)
        return [(key, value) for key, value in rows]

    async def claim(self, key: str, ttl_s: float | None = None) -> bool:
        ttl_s = check_ttl(ttl_s)
        now = self.clock()
        rows = await self._query(_KV_CLAIM, _check_key(key), now, CLAIM_VALUE,
                                 None if ttl_s is None else now + ttl_s)
        return bool(rows)

    def _expiry(self, ttl_s: float | None) -> float | None:
        return None if ttl_s is None else self.clock() + ttl_s


def _check_key(key: str) -> str:
    if "\x00" in key:
        raise ValueError("a PostgreSQL store's keys cannot contain NUL characters")
    return key


async def _create_stage(conn: asyncpg.Connection) -> None:
    """Every pooled connection gets its own (temporary, so private) staging table."""
    await conn.execute(_CREATE_STAGE)


def _rows(records: Iterable[DecisionRecord]) -> tuple[list[tuple[Any, ...]], int]:
    """The records as rows in column order, and how many could not be encoded."""
    rows = []
    rejected = 0
    for r in records:
        try:
            detail = to_json(r.detail).decode() if r.detail is not None else None
        except (TypeError, orjson.JSONEncodeError):
            rejected += 1
            continue
        rows.append((r.request_id, r.time, r.decision, r.model, r.endpoint, r.latency_ms,
                     r.prompt_tokens, r.completion_tokens, r.cost_usd, r.status,
                     bool(r.stream), detail, r.surface, r.key_id, r.tenant, r.ttft_ms,
                     r.cache, r.dearest_cost_usd, r.session, r.energy_j))
    return rows, rejected


def _scrub_nul(value: object) -> object:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd").replace("\\u0000", "\\ufffd")
    return value


def _record(row: asyncpg.Record) -> DecisionRecord:
    values = dict(zip((*DECISION_FIELDS, *FEEDBACK_FIELDS), row, strict=True))
    values["feedback_implicit"] = bool(values["feedback_implicit"])
    detail = values["detail"]
    values["detail"] = orjson.loads(detail) if detail is not None else None
    return DecisionRecord(**values)

