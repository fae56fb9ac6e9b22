"""State stores behind one interface: memory, SQLite (embedded default), Redis (shared).

Build one with `make_store(backend, ...)`; then `await store.start()`, record on the request
path with `store.record_decision(...)`, and `await store.close()` at shutdown.
"""

from __future__ import annotations

from collections.abc import Callable

from routeyard.state.base import (
    CLAIM_VALUE,
    DECISION_STATUSES,
    DecisionRecord,
    Store,
    StoreUnavailable,
)
from routeyard.state.memory import MemoryStore
from routeyard.state.redis_store import RedisStore
from routeyard.state.sqlite import SQLiteStore, default_sqlite_path

__all__ = [
    "CLAIM_VALUE",
    "DECISION_STATUSES",
    "STORE_BACKENDS",
    "DecisionRecord",
    "MemoryStore",
    "RedisStore",
    "SQLiteStore",
    "Store",
    "StoreUnavailable",
    "default_sqlite_path",
    "make_store",
]

# Each builder takes the factory's keyword options and ignores the ones it has no use for.
StoreBuilder = Callable[[str | None, str | None, str, int | None], Store]


def _memory(path: str | None, redis_url: str | None, key_prefix: str,
            max_records: int | None) -> Store:
    return MemoryStore(max_records=max_records)


def _sqlite(path: str | None, redis_url: str | None, key_prefix: str,
            max_records: int | None) -> Store:
    return SQLiteStore(path, max_records=max_records)


def _redis(path: str | None, redis_url: str | None, key_prefix: str,
           max_records: int | None) -> Store:
    return RedisStore(redis_url, key_prefix=key_prefix, max_records=max_records)


_BUILDERS: dict[str, StoreBuilder] = {"memory": _memory, "sqlite": _sqlite, "redis": _redis}
STORE_BACKENDS: frozenset[str] = frozenset(_BUILDERS)


def make_store(
    backend: str,
    *,
    path: str | None = None,
    redis_url: str | None = None,
    key_prefix: str = "routeyard",
    max_records: int | None = None,
) -> Store:
    """Build a store by backend name. Nothing connects until `await store.start()`."""
    try:
        builder = _BUILDERS[backend]
    except KeyError:
        known = ", ".join(sorted(_BUILDERS))
        raise ValueError(f"unknown state backend {backend!r} (known: {known})") from None
    return builder(path, redis_url, key_prefix, max_records)
