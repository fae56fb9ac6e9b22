"""Store test helpers shared by the state tests: the real Redis, a store per backend.

Redis is the server at $ROUTEYARD_TEST_REDIS_URL (default redis://127.0.0.1:6379/0). A test
that needs it is marked `@needs_redis` (or calls `require_redis()`): it skips when Redis does
not answer, or fails when ROUTEYARD_REQUIRE_SERVICES=1 (CI), so a missing Redis cannot turn
the Redis tests into silent skips there.
"""

from __future__ import annotations

import contextlib
import functools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
import redis.asyncio as aioredis
from fakeclock import FakeClock

from routeyard.state import MemoryStore, RedisStore, SQLiteStore, Store

REDIS_URL = os.environ.get("ROUTEYARD_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
REDIS_HOST = urlsplit(REDIS_URL).hostname or "127.0.0.1"
REDIS_PORT = urlsplit(REDIS_URL).port or 6379
DOWN_URL = "redis://127.0.0.1:6399/0"  # nothing listens here
REQUIRE_SERVICES_ENV = "ROUTEYARD_REQUIRE_SERVICES"


@functools.cache  # one ping per session: every Redis test asks
def redis_up() -> bool:
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


def require_redis() -> None:
    """Skip the running test when Redis is down; fail it instead under CI."""
    if redis_up():
        return
    if os.environ.get(REQUIRE_SERVICES_ENV) == "1":
        pytest.fail(f"Redis is required ({REQUIRE_SERVICES_ENV}=1) but {REDIS_URL} does not "
                    "answer: start it (.ci/run does) or set ROUTEYARD_TEST_REDIS_URL",
                    pytrace=False)
    pytest.skip(f"no Redis at {REDIS_URL} (.ci/run starts it)")


# A marker, not skipif: skipif is decided at import and could never fail. conftest's
# pytest_runtest_setup calls require_redis() for every test that carries it.
needs_redis = pytest.mark.needs_redis
BACKENDS = ["memory", "sqlite", pytest.param("redis", marks=needs_redis)]


@contextlib.contextmanager
def unique_prefix(label: str) -> Iterator[str]:
    """A unique Redis key prefix; every key under it is deleted afterwards."""
    prefix = f"routeyard-{label}-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5)
    with contextlib.suppress(redis.RedisError, OSError):
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.unlink(*keys)
    client.close()


def build_store(backend: str, tmp_path: Path, prefix: str, clock: FakeClock | None = None,
                **kw: object) -> Store:
    """A store of `backend`; `clock` drives key expiry of memory and SQLite (Redis keeps its
    own time: see `age_redis_keys`)."""
    if clock is not None and backend != "redis":
        kw["clock"] = clock
    if backend == "memory":
        return MemoryStore(**kw)  # type: ignore[arg-type]
    if backend == "sqlite":
        return SQLiteStore(tmp_path / "state.db", **kw)  # type: ignore[arg-type]
    return RedisStore(REDIS_URL, key_prefix=prefix, **kw)  # type: ignore[arg-type]


async def age_redis_keys(prefix: str, seconds: float) -> None:
    """What advancing a clock does for Redis: every expiring key under `prefix` loses
    `seconds` of its remaining TTL (a non-positive PEXPIRE deletes the key at once)."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            left = await client.pttl(key)
            if left > 0:
                await client.pexpire(key, max(0, left - round(seconds * 1000)))
    finally:
        await client.aclose()
