"""Implicit feedback: negative signals inferred from what callers do, for deployments where
explicit feedback is rare (docs/learning.md). Each kind is off by default.

- **Regeneration.** The same caller sends a near-identical prompt (the cosine of the last user
  turns' embeddings at or above `regeneration_similarity`) to the same decision within
  `regeneration_window_s` of an earlier answered request: that earlier request gets `reward`.
- **Abandoned stream.** A client leaves a stream (`client_disconnect`) before
  `abandoned_max_tokens` tokens of the answer: that request gets `reward`.

The Accountant tells the detector of every finished request, on the event loop; it only
schedules work (the Router's background tasks), so the request path pays one call. The
feedback is counted through `FeedbackService.submit_implicit` (marked implicit in the log,
never over explicit feedback). A caller's recent prompts live in the store's key-value space,
so replicas sharing a store see each other's requests; with the store down a request is
skipped, never failed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from routeyard.gateway import ANONYMOUS, LIBRARY
from routeyard.state import DecisionRecord, Store, StoreUnavailable

if TYPE_CHECKING:
    from routeyard.config.sessions import ImplicitFeedbackConfig
    from routeyard.metrics import Metrics
    from routeyard.serving.accounting import Spawn
    from routeyard.serving.feedback import FeedbackService
    from routeyard.serving.planner import RoutePlan
    from routeyard.signals.embedder import Embedder

log = logging.getLogger("routeyard.feedback")

REGENERATION = "regeneration"
ABANDONED_STREAM = "abandoned_stream"
# No model answered these (a plugin or the cache did): there is no answer to judge.
NOT_ANSWERED = frozenset({"blocked", "cache_hit"})
# Surfaces whose repeats are routine, not a sign of a bad answer (the same text embedded twice).
NOT_REGENERATED = frozenset({"embeddings"})
# Key ids that name no one: every open-server or library request has them.
SHARED_KEY_IDS = frozenset({ANONYMOUS.key_id, LIBRARY.key_id})
# A caller's recent requests kept per decision (newest last): a regeneration is judged against
# these, so the value read and written per request stays small.
MAX_RECENT = 8
_RECENT_PREFIX = "implicit:recent:"


@dataclass(frozen=True, slots=True)
class Recent:
    """A caller's earlier answered request, as the window keeps it."""

    request_id: str
    time: float
    model: str
    vector: np.ndarray  # the last user turn's embedding (unit length)


def caller_of(record: DecisionRecord, body: Mapping[str, Any]) -> str | None:
    """Who sent the request, as far as the gateway can tell: its key (else its tenant), and
    the end user the body names (`user`, or `metadata.user_id`), since one application key
    often serves many end users. None when neither is known (an open server with no `user`):
    such requests are skipped, as two anonymous requests cannot be told apart."""
    parts = []
    if record.key_id is not None and record.key_id not in SHARED_KEY_IDS:
        parts.append(f"key:{record.key_id}")
    elif record.tenant is not None:
        parts.append(f"tenant:{record.tenant}")
    user = body.get("user")
    metadata = body.get("metadata")
    if not isinstance(user, str) and isinstance(metadata, Mapping):
        user = metadata.get("user_id")
    if isinstance(user, str) and user:
        parts.append(f"user:{user}")
    return "|".join(parts) or None


def encode_recent(entries: list[Recent]) -> bytes:
    """The window's value: a JSON line of (request id, time, model), then the vectors as
    float16 rows (a 256-dimension embedding costs 512 bytes)."""
    head = orjson.dumps([[e.request_id, e.time, e.model] for e in entries])
    rows = np.stack([e.vector for e in entries]).astype(np.float16) if entries else None
    return head + b"\n" + (rows.tobytes() if rows is not None else b"")


def decode_recent(raw: bytes, dimensions: int) -> list[Recent]:
    """The window's entries; none for a value that does not fit this embedding model (the
    model changed) or was not written by `encode_recent`."""
    head, _, body = raw.partition(b"\n")
    try:
        items = orjson.loads(head)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(items, list) or len(body) != len(items) * dimensions * 2:
        return []
    vectors = np.frombuffer(body, dtype=np.float16).reshape(len(items), dimensions)
    return [Recent(str(rid), float(t), str(model), vectors[i].astype(np.float32))
            for i, (rid, t, model) in enumerate(items)]


class ImplicitFeedback:
    """The detector: an Accountant observer (`observe`) that counts implicit feedback."""

    def __init__(self, config: ImplicitFeedbackConfig, feedback: FeedbackService,
                 store: Store, metrics: Metrics, spawn: Spawn,
                 embedder: Embedder | None = None) -> None:
        """`embedder` embeds prompts for `regeneration` (required with it)."""
        if config.regeneration and embedder is None:
            raise ValueError("regeneration needs an embedding model")
        self.config = config
        self.feedback = feedback
        self.store = store
        self.metrics = metrics
        self.spawn = spawn
        self.embedder = embedder

    @staticmethod
    def wanted(config: ImplicitFeedbackConfig) -> bool:
        return config.regeneration or config.abandoned_streams

    @classmethod
    def build(cls, config: ImplicitFeedbackConfig, embedding_model: str,
              feedback: FeedbackService, store: Store, metrics: Metrics,
              spawn: Spawn) -> ImplicitFeedback:
        """The detector of `feedback.implicit`; the embedding model (the signals', shared
        with them in-process) is loaded only for regeneration."""
        embedder = None
        if config.regeneration:
            from routeyard.signals.embedder import load_embedder

            embedder = load_embedder(embedding_model)
        return cls(config, feedback, store, metrics, spawn, embedder)

    # -- on the event loop: schedule only ---------------------------------------------------

    def observe(self, plan: RoutePlan, record: DecisionRecord, answer_text: str | None) -> None:
        config = self.config
        if (config.abandoned_streams and record.status == "client_disconnect"
                and record.model is not None
                and record.completion_tokens < config.abandoned_max_tokens):
            self.spawn(self._signal(ABANDONED_STREAM, record.request_id, plan.decision,
                                    record.model))
        if config.regeneration and record.surface not in NOT_REGENERATED:
            caller = caller_of(record, plan.context.body)
            if caller is not None:
                self.spawn(self._regeneration(plan, record, caller))

    # -- in the background --------------------------------------------------------------------

    async def _regeneration(self, plan: RoutePlan, record: DecisionRecord, caller: str) -> None:
        """Judge the request against the caller's recent ones, then add it to them."""
        vector = await self._embed(plan)
        if vector is None:
            return
        key = recent_key(caller, plan.decision)
        assert self.embedder is not None
        try:
            raw = await self.store.get_value(key)
            entries = decode_recent(raw, self.embedder.dimensions) if raw is not None else []
            since = record.time - self.config.regeneration_window_s
            entries = [e for e in entries
                       if e.time >= since and e.request_id != record.request_id]
            earlier = similar(entries, vector, self.config.regeneration_similarity,
                              before=record.time)
            if record.model is not None and record.status not in NOT_ANSWERED:
                entries.append(Recent(record.request_id, record.time, record.model, vector))
                entries = sorted(entries, key=lambda e: e.time)[-MAX_RECENT:]
                await self.store.set_value(key, encode_recent(entries),
                                           self.config.regeneration_window_s)
        except StoreUnavailable as exc:
            log.warning("regeneration of %s not checked: the store is down (%s)",
                        record.request_id, exc)
            return
        if earlier is not None:
            await self._signal(REGENERATION, earlier.request_id, plan.decision, earlier.model)

    async def _embed(self, plan: RoutePlan) -> np.ndarray | None:
        """The last user turn's embedding, off the event loop (a long prompt costs more than
        a loop can spare); the one the signals computed when they share the model."""
        context = plan.context
        if not context.last_user_text.strip():
            return None
        embedder = self.embedder
        assert embedder is not None
        compute: Callable[[], np.ndarray] = (
            context.embedding if context.embedder is embedder
            else lambda: embedder.embed_one(context.last_user_text))
        return await asyncio.to_thread(compute)

    async def _signal(self, kind: str, request_id: str, decision: str, model: str) -> None:
        try:
            counted = await self.feedback.submit_implicit(request_id, decision, model,
                                                          self.config.reward)
        except StoreUnavailable as exc:
            log.warning("implicit feedback (%s) for %s not counted: the store is down (%s)",
                        kind, request_id, exc)
            return
        if counted:
            self.metrics.child(self.metrics.implicit_feedback, kind, decision).inc()


def recent_key(caller: str, decision: str) -> str:
    """The window's key: the caller hashed (a `user` field is the client's free text)."""
    digest = hashlib.sha256(caller.encode()).hexdigest()[:32]
    return f"{_RECENT_PREFIX}{digest}:{decision}"


def similar(entries: list[Recent], vector: np.ndarray, threshold: float, *,
            before: float) -> Recent | None:
    """The newest entry (sent before `before`) whose prompt is near-identical to `vector`:
    only it gets the signal, since the ones before it were judged when it came."""
    for entry in sorted(entries, key=lambda e: e.time, reverse=True):
        if entry.time <= before and float(np.dot(entry.vector, vector)) >= threshold:
            return entry
    return None
