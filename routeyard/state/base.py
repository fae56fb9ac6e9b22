"""The store contract: one interface over in-memory, SQLite and Redis state.

A store holds the decision log and a small key-value space for learned online state (bandit
parameters as JSON/bytes blobs) and once-only markers (`claim`). Writes on the request path
must never block the event loop: `record_decision` only enqueues,
and each store flushes in the background (a thread for SQLite, a pipeline for Redis). The
key-value methods are written through instead and never block the loop either.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, fields
from typing import Any

# A claim marker's stored value (what `get_value` returns for a claimed key).
CLAIM_VALUE = b"1"

# How a request ended, as its decision record says (docs/state.md explains each).
DECISION_STATUSES = (
    "ok",  # a backend answered in full
    "upstream_failed",  # no backend answered
    "stream_broken",  # the backend broke off after the first byte
    "client_disconnect",  # the client left mid-stream
    "shutdown",  # the server's drain window ended with the stream still open
    "blocked",  # a plugin answered instead of a backend (policy)
    "cache_hit",  # a plugin answered from the semantic cache
)


class StoreUnavailable(RuntimeError):
    """The backing service cannot answer a read right now (callers should answer 503)."""


class StoreRefused(RuntimeError):
    """The store cannot be used by this build at all (a database schema newer than it knows):
    `routeyard serve` refuses to start, with this message."""


@dataclass(slots=True)
class DecisionRecord:
    """One record per request that got past validation and routing (routed or direct)."""

    request_id: str
    time: float  # unix seconds when the request arrived
    decision: str | None  # decision name, or "direct" when the request named a model
    model: str | None  # the model that answered (after failover), or None when none did
    endpoint: str | None  # the endpoint name that answered
    latency_ms: float
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    status: str  # one of DECISION_STATUSES
    stream: bool = False
    # Everything else worth explaining the choice with, as JSON-able data (e.g. `skipped`:
    # the candidates that could not serve the request, and why).
    detail: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecisionRecord:
        """Build from a stored dict, ignoring keys a newer writer may have added."""
        return cls(**{k: data[k] for k in DECISION_FIELDS if k in data})


# Column order for row-shaped stores (SQLite); the dataclass is the single source of truth.
DECISION_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(DecisionRecord))


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
