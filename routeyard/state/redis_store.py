"""Redis store: shared by every replica. Write-behind, one server-side script call per batch.

Layout under the key prefix P (default "routeyard"):
  P:decision:{request_id}  the record as JSON, with a TTL (default 7 days)
  P:decisions              sorted set of request ids scored by time, trimmed to max_records
  P:kv:{key}               key-value state (learned parameters, claim markers), own TTL if any

Redis being down never breaks a request: writes stay buffered (bounded) and are retried by the
flusher; reads raise StoreUnavailable; ping() answers False within about half a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from routeyard.state._buffered import BufferedStore, log
from routeyard.state.base import (
    CLAIM_VALUE,
    DecisionRecord,
    StoreUnavailable,
    check_ttl,
    check_value,
)
from routeyard.state.query import (
    Aggregate,
    DecisionPage,
    DecisionQuery,
    StatsQuery,
    aggregate_records,
    matches,
    page_of,
)
from routeyard.state.record import to_json

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_MAX_RECORDS = 100_000
DEFAULT_TTL_SECONDS = 7 * 24 * 3600
# The query API reads the time index in slices and filters in the process: a query looks at
# no more than this many records (the newest of its window), and says so when it stopped.
MAX_SCAN = 100_000
_SLICE = 1_000

_CONNECTION_ERRORS = (RedisError, OSError)

# One round trip and one reply per batch: redis-py spends ~15 us of event-loop time packing and
# parsing each pipelined command, while EVALSHA with flat arguments costs ~5 us per record.
# The script also trims the index (ids past the TTL, then the oldest beyond max_records) and
# deletes the trimmed records' keys, so the bound holds for memory, not only for the index.
# KEYS[1] = index; ARGV = record key prefix, ttl, max_records, expiry cutoff score,
# then (request_id, time, json) per record.
_WRITE = """
local index, prefix, ttl = KEYS[1], ARGV[1], ARGV[2]
for i = 5, #ARGV, 3 do
  redis.call('SET', prefix .. ARGV[i], ARGV[i + 2], 'EX', ttl)
  redis.call('ZADD', index, ARGV[i + 1], ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. ARGV[4])
local excess = redis.call('ZCARD', index) - tonumber(ARGV[3])
if excess <= 0 then return 0 end
local popped = redis.call('ZPOPMIN', index, excess)
for i = 1, #popped, 2 do redis.call('UNLINK', prefix .. popped[i]) end
return excess
"""


class RedisStore(BufferedStore):
    name = "redis"
    _write_errors = _CONNECTION_ERRORS

    def __init__(
        self,
        url: str | None = None,
        *,
        key_prefix: str = "routeyard",
        max_records: int | None = None,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
        max_scan: int = MAX_SCAN,
        connect_timeout: float = 0.5,
        socket_timeout: float = 2.0,
        **buffer_options: Any,
    ) -> None:
        # Smaller batches than SQLite: one script runs atomically and holds Redis meanwhile.
        buffer_options.setdefault("max_batch", 1_000)
        super().__init__(**buffer_options)
        self.url = url or DEFAULT_REDIS_URL
        self.key_prefix = key_prefix
        self.max_records = max_records if max_records is not None else DEFAULT_MAX_RECORDS
        self.ttl_seconds = ttl_seconds
        self.max_scan = max_scan
        self.scan_truncated = False  # the last query stopped at max_scan
        self.connect_timeout = connect_timeout
        # No client-side retries: the flusher retries with its own backoff, and a read that
        # cannot reach Redis should fail fast to a 503 rather than stall a request.
        self._redis = aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=connect_timeout,
            socket_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._index_key = self.key(("decisions",))
        self._record_prefix = self.key(("decision", ""))
        self._feedback_prefix = self.key(("feedback", ""))
        self._write_script = self._redis.register_script(_WRITE)  # no I/O until called

    def key(self, parts: tuple[str, ...]) -> str:
        """`{prefix}:part:part...`, the one place key names are built."""
        return ":".join((self.key_prefix, *parts))

    @property
    def client(self) -> aioredis.Redis:
        """The underlying client, for features that share this connection pool."""
        return self._redis

    # -- writes -----------------------------------------------------------------------

    async def _write(self, batch: list[DecisionRecord]) -> None:
        args: list[str | float | bytes] = [
            self._record_prefix, self.ttl_seconds, self.max_records, time.time() - self.ttl_seconds,
        ]
        rejected = 0
        for record in batch:
            try:
                encoded = to_json(record)
            except (TypeError, orjson.JSONEncodeError):  # one record, not the batch
                rejected += 1
                continue
            args += (record.request_id, record.time, encoded)
        if rejected:
            self.dropped += rejected
            log.error("redis store rejected %d malformed decision records", rejected)
        await self._write_script(keys=[self._index_key], args=args)

    async def _close_backend(self) -> None:
        await self._redis.aclose()

    # -- reads ------------------------------------------------------------------------

    async def get_decision(self, request_id: str) -> DecisionRecord | None:
        try:
            raw, score = await self._redis.mget([self._record_prefix + request_id,
                                                 self._feedback_prefix + request_id])
        except _CONNECTION_ERRORS as exc:
            raise StoreUnavailable(f"redis store unavailable: {exc}") from exc
        if raw is None:
            return None
        return _joined(DecisionRecord.from_dict(orjson.loads(raw)), score)

    # -- the query API: a bounded scan of the time index (docs/state.md) -----------------

    async def _scan(self, since: float | None, until: float | None,
                    after: tuple[float, str] | None = None) -> AsyncIterator[DecisionRecord]:
        """Records of the window, newest first, feedback joined, at most `max_scan`."""
        high: float | str = "+inf" if until is None else f"({until}"
        if after is not None:
            high = after[0] if until is None else min(after[0], until)
        low: float | str = "-inf" if since is None else since
        offset = 0
        seen = 0
        self.scan_truncated = False
        while seen < self.max_scan:
            try:
                ids = await self._redis.zrevrangebyscore(self._index_key, high, low,
                                                         start=offset, num=_SLICE)
                if not ids:
                    return
                raws = await self._redis.mget([self._record_prefix.encode() + i for i in ids])
                scores = await self._redis.mget(
                    [self._feedback_prefix.encode() + i for i in ids])
            except _CONNECTION_ERRORS as exc:
                raise StoreUnavailable(f"redis store unavailable: {exc}") from exc
            offset += len(ids)
            for raw, score in zip(raws, scores, strict=True):
                if raw is None:
                    continue
                seen += 1
                yield _joined(DecisionRecord.from_dict(orjson.loads(raw)), score)
            if len(ids) < _SLICE:
                return
        self.scan_truncated = True

    async def query_decisions(self, query: DecisionQuery) -> DecisionPage:
        found: list[DecisionRecord] = []
        # Ties in time come back by id descending (ZREVRANGEBYSCORE), as the order wants.
        async for record in self._scan(query.since, query.until, query.after):
            if matches(record, query):
                found.append(record)
                if len(found) > query.limit:
                    break
        return page_of(found, query.limit)

    async def decision_stats(self, query: StatsQuery) -> dict[Any, Aggregate]:
        found = [r async for r in self._scan(query.since, query.until) if matches(r, query)]
        return aggregate_records(found, query.group_by)

    async def record_feedback(self, request_id: str, score: float, *,
                              implicit: bool = False) -> bool:
        # Implicit feedback is marked by a prefix, and set only where none is (NX).
        value = (_IMPLICIT_MARK.decode() if implicit else "") + repr(float(score))
        try:
            kept = await self._redis.set(self._feedback_prefix + request_id, value,
                                         ex=self.ttl_seconds, nx=implicit)
        except _CONNECTION_ERRORS as exc:
            raise StoreUnavailable(f"redis store unavailable: {exc}") from exc
        return bool(kept)

    async def recent_decisions(self, limit: int = 100) -> list[DecisionRecord]:
        if limit <= 0:
            return []
        try:
            ids = await self._redis.zrevrange(self._index_key, 0, limit - 1)
            if not ids:
                return []
            prefix = self._record_prefix.encode()
            raws = await self._redis.mget([prefix + i for i in ids])
        except _CONNECTION_ERRORS as exc:
            raise StoreUnavailable(f"redis store unavailable: {exc}") from exc
        # An id can outlive its record by a moment (TTL expiry before the next trim): skip it.
        return [DecisionRecord.from_dict(orjson.loads(raw)) for raw in raws if raw is not None]

    # -- key-value state (written through, one command each) ---------------------------

    def _kv_key(self, key: str) -> str:
        return self.key(("kv", key))

    @staticmethod
    def _px(ttl_s: float | None) -> int | None:
        # Milliseconds, not EX seconds: sub-second TTLs must not round down to "no expiry".
        return None if ttl_s is None else max(1, round(ttl_s * 1000))

    async def get_value(self, key: str) -> bytes | None:
        try:
            return await self._redis.get(self._kv_key(key))
        except _CONNECTION_ERRORS as exc:
            raise StoreUnavailable(f"redis store unavailable: {exc}") from exc

    async def set_value(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        value, px = check_value(value), self._px(check_ttl(ttl_s))
        try:
            await self._redis.set(self._kv_key(key), value, px=px)
        except _CONNECTION_ERRORS as exc:
            raise StoreUnavailable(f"redis store unavailable: {exc}") from exc

    async def delete_value(self, key: str) -> bool:
        try:
            return bool(await self._redis.delete(self._kv_key(key)))
        except _CONNECTION_ERRORS as exc:
            raise StoreUnavailable(f"redis store unavailable: {exc}") from exc

    async def scan_values(self, prefix: str, limit: int = 1000) -> list[tuple[str, bytes]]:
        base = self._kv_key("")
        pattern = self._kv_key(_glob_escape(prefix)) + "*"
        try:
            keys = sorted({k async for k in self._redis.scan_iter(match=pattern, count=1000)})
            keys = keys[:max(0, limit)]
            values = await self._redis.mget(keys) if keys else []
        except _CONNECTION_ERRORS as exc:
            raise StoreUnavailable(f"redis store unavailable: {exc}") from exc
        return [(key.decode()[len(base):], value) for key, value in zip(keys, values,
                                                                          strict=True)
                if value is not None]

    async def claim(self, key: str, ttl_s: float | None = None) -> bool:
        px = self._px(check_ttl(ttl_s))
        try:
            # SET NX is atomic on the server, so exactly one replica wins.
            return bool(await self._redis.set(self._kv_key(key), CLAIM_VALUE, nx=True, px=px))
        except _CONNECTION_ERRORS as exc:
            raise StoreUnavailable(f"redis store unavailable: {exc}") from exc

    async def ping(self) -> bool:
        try:
            # Bounds a server that accepts the connection but does not answer.
            async with asyncio.timeout(self.connect_timeout * 2):
                return bool(await self._redis.ping())
        except _CONNECTION_ERRORS:  # TimeoutError is an OSError
            return False

    async def delete_all(self) -> int:
        """Delete every key under this store's prefix (tests, resets). Not for the hot path."""
        deleted = 0
        keys: list[bytes] = []
        async for key in self._redis.scan_iter(match=f"{self.key_prefix}:*", count=1000):
            keys.append(key)
            if len(keys) >= 1000:
                deleted += await self._redis.unlink(*keys)
                keys.clear()
        if keys:
            deleted += await self._redis.unlink(*keys)
        if deleted:
            log.info("redis store deleted %d keys under %s:*", deleted, self.key_prefix)
        return deleted


def _glob_escape(text: str) -> str:
    """`text` as a literal inside a Redis MATCH pattern."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


# A feedback value that starts with it was inferred (implicit); the rest is the score. A sign,
# so that a replica of an earlier version (a rolling upgrade) still reads the score: repr()
# never writes a leading "+", and scores are never negative.
_IMPLICIT_MARK = b"+"


def _joined(record: DecisionRecord, feedback: bytes | None) -> DecisionRecord:
    """The record with its stored feedback joined (a value of an earlier version, a bare
    score, was explicit)."""
    if feedback is None:
        return record
    implicit = feedback.startswith(_IMPLICIT_MARK)
    return replace(record, feedback=float(feedback[1:] if implicit else feedback),
                   feedback_implicit=implicit)
