"""`semantic_cache`: answer repeated (or paraphrased) requests from a cache.

    plugins:
      - {type: semantic_cache, threshold: 0.92, ttl_s: 3600, max_entries: 10000,
         backend: memory,          # or redis: the Router's Redis store, or `redis_url`
         index: brute}             # or hnsw (usearch): for scopes of 100k+ entries

Entries are scoped to (decision, tenant), tenant = SHA-256 of the API key, else of the body's
`user`, else "anonymous"; a hit never crosses scopes. The exact hash of the normalised request
is tried first, then the most similar last user turn among entries whose earlier messages and
answer-changing parameters hash the same. Responses carry `x-routeyard-cache: hit | miss |
bypass`. The plugin sees the body as edited by the plugins before it: put it last.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from routeyard.cache.keys import RequestKey, request_key, scope_of, tenant_of
from routeyard.cache.memory import Entry, MemoryCache
from routeyard.plugins.base import (
    Plugin,
    PluginAnswer,
    PluginBuild,
    PluginContext,
    header_safe,
    register,
)

if TYPE_CHECKING:
    from routeyard.cache.redis_cache import RedisCache
    from routeyard.signals.embedder import Embedder

log = logging.getLogger("routeyard.cache")

CACHE_HEADER = "x-routeyard-cache"
_STATE = "semantic_cache"  # this plugin's key in ctx.state


def _number(options: dict[str, Any], key: str, default: float, low: float, high: float,
            integer: bool = False) -> Any:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{key} must be a number in [{low}, {high}]")
    if integer and value != int(value):
        raise ValueError(f"{key} must be an integer")
    return int(value) if integer else float(value)


@register
class SemanticCachePlugin(Plugin):
    name = "semantic_cache"
    options = frozenset({"threshold", "ttl_s", "max_entries", "backend", "redis_url",
                         "key_prefix", "bypass_header", "index"})
    has_async_request = True

    def __init__(self, options: dict[str, Any], build: PluginBuild | None = None) -> None:
        super().__init__(options, build)
        self.store = build.store if build is not None else None  # a Redis store is shared
        self.threshold = _number(options, "threshold", 0.92, 0.0, 1.0)
        self.ttl_s = _number(options, "ttl_s", 3600, 0.001, 365 * 86400)
        self.max_entries = _number(options, "max_entries", 10_000, 1, 10_000_000, integer=True)
        self.backend = options.get("backend", "memory")
        if self.backend not in ("memory", "redis"):
            raise ValueError("backend must be 'memory' or 'redis'")
        self.redis_url = options.get("redis_url")
        if self.redis_url is not None and (self.backend != "redis" or not isinstance(
                self.redis_url, str) or not self.redis_url.startswith(("redis://", "rediss://",
                                                                        "unix://"))):
            raise ValueError("redis_url must be a redis:// URL, with backend: redis")
        self.key_prefix = options.get("key_prefix")
        if self.key_prefix is not None and (not isinstance(self.key_prefix, str)
                                            or not self.key_prefix):
            raise ValueError("key_prefix must be a non-empty string")
        self.bypass_header = header_safe(
            options.get("bypass_header", "x-routeyard-cache-bypass"), "bypass_header").lower()
        index = options.get("index", "brute")
        if index == "hnsw":
            try:
                import usearch.index  # noqa: F401
            except ImportError:
                raise ValueError("index: hnsw needs the usearch package "
                                 "(pip install usearch)") from None
        elif index != "brute":
            raise ValueError("index must be 'brute' or 'hnsw'")
        self.memory = MemoryCache(self.max_entries, index=index)
        self._redis: RedisCache | None = None
        self._redis_ready = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._embedder: Embedder | None = None

    # -- request ----------------------------------------------------------------------------

    async def on_request_async(self, ctx: PluginContext) -> PluginAnswer | None:
        request = ctx.request
        if request.headers.get(self.bypass_header) is not None:
            ctx.headers[CACHE_HEADER] = "bypass"
            return None
        key = request_key(ctx.body)
        scope = scope_of(ctx.decision, tenant_of(request.api_key(), request.body))
        vector = self._vector(ctx, key)
        ctx.state[_STATE] = (scope, key, vector)
        entry = self._lookup(scope, key, vector)
        if (entry is None and (redis := self._shared(ctx)) is not None
                and await redis.refresh(scope)):
            entry = self._lookup(scope, key, vector)
        if entry is None:
            ctx.headers[CACHE_HEADER] = "miss"
            return None
        ctx.state.pop(_STATE)  # nothing to fill
        ctx.headers[CACHE_HEADER] = "hit"
        response = orjson.loads(entry.response)
        response["id"] = "chatcmpl-" + ctx.request_id.removeprefix("req_")
        response["created"] = int(time.time())
        return PluginAnswer.cached(response)

    def _lookup(self, scope: str, key: RequestKey, vector: np.ndarray | None) -> Entry | None:
        entry = self.memory.get_exact(scope, key.exact)
        if entry is None and vector is not None:
            found = self.memory.get_similar(scope, key.prefix, vector, self.threshold)
            entry = found[1] if found is not None else None
        return entry

    def _vector(self, ctx: PluginContext, key: RequestKey) -> np.ndarray | None:
        if key.text is None or not key.text:
            return None
        context = ctx.request
        if context.embedder is not None and context.last_user_text == key.text:
            return context.embedding()  # already computed for the signals, most often
        if self._embedder is None:
            embedder = context.embedder
            if embedder is None:
                from routeyard.signals.embedder import load_embedder

                embedder = load_embedder()
            self._embedder = embedder
        return self._embedder.embed_one(key.text)

    def _shared(self, ctx: PluginContext) -> RedisCache | None:
        """The Redis backend, built on first use (it needs the Router's store and a loop)."""
        if self.backend != "redis":
            return None
        if not self._redis_ready:
            self._redis_ready = True
            self._redis = self._connect()
        return self._redis

    def _connect(self) -> RedisCache | None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        from routeyard.cache.redis_cache import RedisCache
        from routeyard.state.redis_store import RedisStore

        store = self.store
        if self.redis_url is None and isinstance(store, RedisStore):
            return RedisCache(store.client, self.key_prefix or store.key_prefix, self.memory,
                              self.ttl_s)
        if self.redis_url is None:
            log.warning("semantic_cache: backend redis needs a Redis store or redis_url; "
                        "caching in memory only")
            return None
        client = aioredis.Redis.from_url(self.redis_url, socket_connect_timeout=0.5,
                                         socket_timeout=1.0, retry=Retry(NoBackoff(), 0))
        return RedisCache(client, self.key_prefix or "routeyard", self.memory, self.ttl_s)

    # -- fill -------------------------------------------------------------------------------

    def on_response(self, ctx: PluginContext, response: dict[str, Any]) -> None:
        choices = response.get("choices")
        if not choices or any(c.get("finish_reason") not in ("stop", "tool_calls", "length")
                              for c in choices):
            return
        # Stored as the plugins after the cache left it (hooks run in reverse chain order):
        # behind pii_redact that is the answer with placeholders, which a hit restores with
        # its own request's values; another caller's values are never replayed.
        self._fill(ctx, response)

    def on_stream_complete(self, ctx: PluginContext, response: dict[str, Any]) -> None:
        body = ctx.body
        # A stream's answer is choice 0's text: no tool calls, one choice.
        if body.get("tools") or body.get("functions") or body.get("n", 1) != 1:
            return
        if response["choices"][0]["message"]["content"]:
            self._fill(ctx, response)

    def _fill(self, ctx: PluginContext, response: dict[str, Any]) -> None:
        pending = ctx.state.pop(_STATE, None)
        if pending is None:  # bypassed, or answered from the cache
            return
        scope, key, vector = pending
        entry = Entry(key.exact, scope, key.prefix, orjson.dumps(response),
                      time.time() + self.ttl_s, vector)
        self.memory.put(entry)
        redis = self._shared(ctx)
        if redis is not None:
            task = asyncio.get_running_loop().create_task(redis.put(entry, self.max_entries))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the Redis writes under way (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
