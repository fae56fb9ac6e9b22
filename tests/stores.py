"""Store test helpers shared by the state tests: the real Redis, a store per backend."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from routeyard.state import MemoryStore, RedisStore, SQLiteStore, Store

REDIS_URL = "redis://127.0.0.1:6379/0"
DOWN_URL = "redis://127.0.0.1:6399/0"  # nothing listens here


def redis_up() -> bool:
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


needs_redis = pytest.mark.skipif(not redis_up(), reason="no Redis at 127.0.0.1:6379")
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


def build_store(backend: str, tmp_path: Path, prefix: str, **kw: object) -> Store:
    if backend == "memory":
        return MemoryStore(**kw)  # type: ignore[arg-type]
    if backend == "sqlite":
        return SQLiteStore(tmp_path / "state.db", **kw)  # type: ignore[arg-type]
    return RedisStore(REDIS_URL, key_prefix=prefix, **kw)  # type: ignore[arg-type]
