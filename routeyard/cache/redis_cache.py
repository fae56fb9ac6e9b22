"""The Redis-shared cache: entries live in Redis (with their TTL); each replica mirrors them
into its own MemoryCache and searches that. Plain Redis 7, no search module.

Layout under the key prefix P:
  P:cache:{scope}:ids       sorted set of entry ids scored by creation time (ms)
  P:cache:{scope}:e:{id}    hash: v = vector (float16 bytes), r = response JSON,
                            p = conversation-prefix hash, t = creation time (ms); TTL = ttl_s

A local miss pulls the scope's entries created since the last pull (one ZRANGEBYSCORE, then
HGETALL of the new ids only). Redis being down turns lookups into misses and drops fills; a
failure keeps Redis out of the request path for `retry_after_s`.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from routeyard.cache.memory import Entry, MemoryCache

log = logging.getLogger("routeyard.cache")

_ERRORS = (RedisError, OSError)  # TimeoutError is an OSError

# KEYS[1] = the scope's id set, KEYS[2] = the entry; ARGV = id, now_ms, ttl_ms, max_entries,
# vector, response, prefix hash, entry key prefix (for trimming).
_PUT = """
redis.call('HSET', KEYS[2], 'v', ARGV[5], 'r', ARGV[6], 'p', ARGV[7], 't', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (tonumber(ARGV[2]) - tonumber(ARGV[3])))
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])
if excess > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[1], excess)
  for i = 1, #popped, 2 do redis.call('UNLINK', ARGV[8] .. popped[i]) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 0
"""


class RedisCache:
    def __init__(self, client: aioredis.Redis, key_prefix: str, local: MemoryCache,
                 ttl_s: float, *, retry_after_s: float = 5.0) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self.local = local
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self.retry_after_s = retry_after_s
        self._down_until = 0.0
        self._seen: dict[str, float] = {}  # scope → newest creation time pulled (ms)
        self._put = client.register_script(_PUT)

    def _ids(self, scope: str) -> str:
        return f"{self.key_prefix}:cache:{scope}:ids"

    def _entry_prefix(self, scope: str) -> str:
        return f"{self.key_prefix}:cache:{scope}:e:"

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, what: str, error: Exception) -> None:
        if self.available:
            log.warning("semantic cache: redis %s failed (%s); cache misses for %.0f s",
                        what, error, self.retry_after_s)
        self._down_until = time.monotonic() + self.retry_after_s

    async def refresh(self, scope: str) -> int:
        """Pull the scope's entries newer than the last pull into the local mirror; returns
        how many were added (0 when Redis is down)."""
        if not self.available:
            return 0
        now_ms = time.time() * 1000
        since = max(self._seen.get(scope, 0.0), now_ms - self.ttl_ms)
        try:
            members = await self.client.zrangebyscore(self._ids(scope), since, "+inf",
                                                      withscores=True)
            new = [(m.decode(), s) for m, s in members if (scope, m.decode()) not in self.local]
            if not new:
                if members:
                    self._seen[scope] = max(s for _, s in members)
                return 0
            entry_prefix = self._entry_prefix(scope)
            async with self.client.pipeline(transaction=False) as pipe:
                for entry_id, _ in new:
                    pipe.hgetall(entry_prefix + entry_id)
                rows = await pipe.execute()
        except _ERRORS as error:
            self._failed("read", error)
            return 0
        added = 0
        for (entry_id, _), row in zip(new, rows, strict=True):
            if not row or b"r" not in row:
                continue  # expired between the two reads
            created = float(row[b"t"])
            raw = row.get(b"v") or b""
            vector = None
            if raw:
                vector = np.frombuffer(raw, dtype=np.float16).astype(np.float32)
                vector /= max(float(np.linalg.norm(vector)), 1e-12)
            self.local.put(Entry(entry_id, scope, row[b"p"].decode(), bytes(row[b"r"]),
                                 created / 1000 + self.ttl_ms / 1000, vector))
            added += 1
        self._seen[scope] = max(s for _, s in members)
        return added

    async def put(self, entry: Entry, max_entries: int) -> None:
        if not self.available:
            return
        vector = b"" if entry.vector is None else entry.vector.astype(np.float16).tobytes()
        scope = entry.scope
        try:
            await self._put(keys=[self._ids(scope), self._entry_prefix(scope) + entry.id],
                            args=[entry.id, int(time.time() * 1000), self.ttl_ms, max_entries,
                                  vector, entry.response, entry.prefix,
                                  self._entry_prefix(scope)])
        except _ERRORS as error:
            self._failed("write", error)
