"""The store contract: one interface over in-memory, SQLite and Redis state.

Later issues add learned state, budgets and caches here; for now a store holds the decision
log. Writes on the request path must never block the event loop: `record_decision` only
enqueues, and each store flushes in the background (a thread for SQLite, a pipeline for Redis).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, fields
from typing import Any


class StoreUnavailable(RuntimeError):
    """The backing service cannot answer a read right now (callers should answer 503)."""


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
    # "ok", "upstream_failed" (no backend answered), "stream_broken" (the backend broke off
    # after the first byte) or "client_disconnect" (the client left mid-stream).
    status: str
    stream: bool = False

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

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release resources."""
