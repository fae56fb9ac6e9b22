"""The decision record: one per request that got past routing, and its statuses."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import orjson

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
    # Everything else worth explaining the choice with, as JSON-able data: the signals, the
    # rule path, the algorithm, the candidates and their scores, the attempts, the plugins
    # (docs/state.md lists the keys).
    detail: dict[str, Any] | None = None
    # First-class because the query API filters and aggregates on them (schema v2).
    surface: str | None = None  # chat, messages, responses, completions, embeddings
    key_id: str | None = None  # the caller's key id (never the secret)
    tenant: str | None = None  # the caller's tenant
    ttft_ms: float | None = None  # time to the first byte of a stream's answer
    cache: str | None = None  # the semantic cache's status (hit, miss, bypass), if one ran
    # What the answer would have cost on the dearest candidate of its decision (same tokens).
    dearest_cost_usd: float | None = None
    session: str | None = None  # the agent session it belongs to (docs/sessions.md)
    # Estimated joules of the answer (the served model's or endpoint's energy figures times
    # its tokens); None when it has none (docs/routing.md, "Energy").
    energy_j: float | None = None
    # Feedback joined on read (kept beside the record, never written with it): the reward in
    # [0, 1], or None when no feedback came.
    feedback: float | None = None
    # True when that feedback was inferred from behaviour (a regeneration, an abandoned
    # stream: docs/learning.md), not given; explicit feedback replaces implicit feedback.
    feedback_implicit: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecisionRecord:
        """Build from a stored dict, ignoring keys a newer writer may have added."""
        return cls(**{k: data[k] for k in _ALL_FIELDS if k in data})


_ALL_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(DecisionRecord))
# The fields joined on read from the feedback kept beside a record, in order.
FEEDBACK_FIELDS: tuple[str, ...] = ("feedback", "feedback_implicit")
# The stored columns, in order, for row-shaped stores (SQLite, PostgreSQL, exports): every
# field but the joined feedback. The dataclass is the single source of truth.
DECISION_FIELDS: tuple[str, ...] = tuple(f for f in _ALL_FIELDS if f not in FEEDBACK_FIELDS)
# The statuses the stats count as errors (the request got no whole answer by our fault or a
# backend's).
ERROR_STATUSES = frozenset({"upstream_failed", "stream_broken", "shutdown"})


def _jsonable(value: object) -> object:
    """What orjson cannot write by itself, as JSON: a numpy scalar a learned signal or
    algorithm returned (`.item()`), a set, else its text. A record is never lost to its
    detail's types."""
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError):  # an array of more than one element
            pass
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def to_json(value: object) -> bytes:
    """A decision record (or its detail) as JSON, whatever numbers its detail holds."""
    return orjson.dumps(value, default=_jsonable, option=orjson.OPT_SERIALIZE_NUMPY)
