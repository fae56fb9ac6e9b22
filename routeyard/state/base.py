"""The store contract: one interface over in-memory, SQLite and Redis state.

A store holds the decision log and a small key-value space for learned online state (bandit
parameters as JSON/bytes blobs) and once-only markers (`claim`). Writes on the request path
must never block the event loop: `record_decision` only enqueues,
and each store flushes in the background (a thread for SQLite, a pipeline for Redis). The
key-value methods are written through instead and never block the loop either.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from routeyard.state.query import Aggregate, DecisionPage, DecisionQuery, StatsQuery
from routeyard.state.record import (
    DECISION_FIELDS,
    DECISION_STATUSES,
    ERROR_STATUSES,
    DecisionRecord,
)

__all__ = ["DECISION_FIELDS", "DECISION_STATUSES", "ERROR_STATUSES", "DecisionRecord",
           "Store", "StoreRefused", "StoreUnavailable"]

# A claim marker's stored value (what `get_value` returns for a claimed key).
CLAIM_VALUE = b"1"


class StoreUnavailable(RuntimeError):
    """The backing service cannot answer a read right now (callers should answer 503)."""


class StoreRefused(RuntimeError):
    """The store cannot be used by this build at all (a database schema newer than it knows):
    `routeyard serve` refuses to start, with this message."""


class Store(ABC):
    """State behind one interface. Lifecycle: `await start()`, use, `await close()`."""

    name: str

    async def preflight(self) -> None:  # noqa: B027 - optional hook
        """Before serving: raise StoreRefused if this store can never be used by this build.
        An unreachable service is not a refusal (it may come back)."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open connections and start background flushing."""

    @abstractmethod
    def record_decision(self, record: DecisionRecord) -> None:
        """Enqueue a record; never blocks and never raises on the request path."""

    @abstractmethod
    async def flush(self) -> None:
        """Write everything enqueued so far (used at shutdown and by tests)."""

    @abstractmethod
    async def get_decision(self, request_id: str) -> DecisionRecord | None: ...

    @abstractmethod
    async def recent_decisions(self, limit: int = 100) -> list[DecisionRecord]:
        """Newest first."""

    # -- the query API (/v1/decisions, /v1/stats; docs/state.md) ------------------------------

    @abstractmethod
    async def query_decisions(self, query: DecisionQuery) -> DecisionPage:
        """A page of records passing the query, newest first (time, then request id), with
        their feedback joined."""

    @abstractmethod
    async def decision_stats(self, query: StatsQuery) -> dict[Any, Aggregate]:
        """The window's records aggregated per group (a group's key: its model, decision,
        key id or tenant, or the hour as int(time // 3600); None without group_by)."""

    @abstractmethod
    async def record_feedback(self, request_id: str, score: float, *,
                              implicit: bool = False) -> bool:
        """Keep a request's feedback (a reward in [0, 1]) beside its record, joined on read
        (with `feedback_implicit`); written through. Explicit feedback replaces whatever the
        id had. Implicit feedback (inferred from behaviour) is kept only when the id has none
        yet, atomically: it never replaces explicit feedback, nor other implicit feedback.
        True when the feedback was kept."""

    @abstractmethod
    async def ping(self) -> bool:
        """True when the backing service answers (used by /readyz)."""

    # -- key-value state ---------------------------------------------------------------
    # Written through, never buffered: when `set_value`/`claim` return, the value is durable
    # (SQLite) or visible to every replica (Redis). Expired keys read as absent.

    @abstractmethod
    async def get_value(self, key: str) -> bytes | None:
        """The value under `key`, or None when absent or expired."""

    @abstractmethod
    async def set_value(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        """Store `value` under `key` (overwriting), expiring after `ttl_s` seconds if given."""

    @abstractmethod
    async def delete_value(self, key: str) -> bool:
        """Delete `key`; True when it was there (and not expired)."""

    @abstractmethod
    async def scan_values(self, prefix: str, limit: int = 1000) -> list[tuple[str, bytes]]:
        """Up to `limit` live (key, value) pairs whose key starts with `prefix`, in key order
        (for listings: keys, tenants, an audit log; not for the request path)."""

    @abstractmethod
    async def claim(self, key: str, ttl_s: float | None = None) -> bool:
        """Set-if-absent, atomically: True for the first caller only, until the key expires.

        A claimed key reads back as `CLAIM_VALUE`.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release resources."""


def check_value(value: object) -> bytes:
    """The bytes to store; a str or other non-bytes value is a caller bug."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"store values are bytes, not {type(value).__name__}")


def check_ttl(ttl_s: float | None) -> float | None:
    """None (no expiry) or a positive number of seconds."""
    if ttl_s is not None and not ttl_s > 0:
        raise ValueError(f"ttl_s must be positive or None, got {ttl_s!r}")
    return None if ttl_s == float("inf") else ttl_s
