"""State stores behind one interface: memory, SQLite (embedded default), Redis (shared),
PostgreSQL (durable records of several replicas; needs the `postgres` extra, asyncpg).

Build one with `make_store(backend, ...)`; then `await store.start()`, record on the request
path with `store.record_decision(...)`, and `await store.close()` at shutdown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from routeyard.state.base import (
    CLAIM_VALUE,
    DECISION_STATUSES,
    DecisionRecord,
    Store,
    StoreRefused,
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
    "StoreOptions",
    "StoreRefused",
    "StoreUnavailable",
    "default_sqlite_path",
    "make_store",
]

@dataclass(frozen=True, slots=True)
class StoreOptions:
    """What `make_store` was given; each backend's builder takes what it needs."""

    path: str | None = None  # SQLite's file
    redis_url: str | None = None
    postgres_url: str | None = None
    key_prefix: str = "routeyard"
    max_records: int | None = None
    retention_days: float | None = None


StoreBuilder = Callable[[StoreOptions], Store]


def _memory(options: StoreOptions) -> Store:
    return MemoryStore(max_records=options.max_records)


def _sqlite(options: StoreOptions) -> Store:
    return SQLiteStore(options.path, max_records=options.max_records,
                       retention_days=options.retention_days)


def _redis(options: StoreOptions) -> Store:
    ttl = {} if options.retention_days is None else {
        "ttl_seconds": max(1, round(options.retention_days * 86400))}
    return RedisStore(options.redis_url, key_prefix=options.key_prefix,
                      max_records=options.max_records, **ttl)


def _postgres(options: StoreOptions) -> Store:
    if not options.postgres_url:
        raise ValueError("state.backend 'postgres' needs state.postgres_url "
                         "(e.g. postgresql://routeyard@127.0.0.1:5432/routeyard)")
    try:  # asyncpg is an optional extra: only this backend imports it
        from routeyard.state.postgres import PostgresStore
    except ImportError as exc:
        raise RuntimeError("state.backend 'postgres' needs asyncpg: "
                           "pip install 'routeyard[postgres]'") from exc
    return PostgresStore(options.postgres_url, max_records=options.max_records,
                         retention_days=options.retention_days)


_BUILDERS: dict[str, StoreBuilder] = {"memory": _memory, "sqlite": _sqlite, "redis": _redis,
                                      "postgres": _postgres}
STORE_BACKENDS: frozenset[str] = frozenset(_BUILDERS)


def make_store(
    backend: str,
    *,
    path: str | None = None,
    redis_url: str | None = None,
    postgres_url: str | None = None,
    key_prefix: str = "routeyard",
    max_records: int | None = None,
    retention_days: float | None = None,
) -> Store:
    """Build a store by backend name. Nothing connects until `await store.start()`."""
    try:
        builder = _BUILDERS[backend]
    except KeyError:
        known = ", ".join(sorted(_BUILDERS))
        raise ValueError(f"unknown state backend {backend!r} (known: {known})") from None
    return builder(StoreOptions(path, redis_url, postgres_url, key_prefix, max_records,
                                retention_days))
