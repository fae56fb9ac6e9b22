"""Prefix-cache affinity: keep an agent session on the endpoint that served it last
(docs/sessions.md, `sessions.endpoint_affinity`).

A session's requests share a growing prefix (system prompt, tools, the turns so far); the
backend that served the last one still holds it in its KV cache, so the next one skips most of
its prefill there. `AffinityHandler` wraps a decision's stack: for a request that carries a
session id it reads the session's last endpoint (one store read) and names it around the
backend calls as the preferred endpoint (`pool/preference.py`), which the executor tries first
while it is available and not overloaded. `EndpointAffinity.observe`, an accounting observer,
writes the endpoint that answered, with the session TTL.

Never a failed request because of it: a store that is down or slow means no preference for
that request (and no write), and a stored endpoint that is gone is ignored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from routeyard.config.schema import SessionsConfig
from routeyard.errors import InvalidRequest
from routeyard.pool.preference import EndpointPreference, preferred_endpoint
from routeyard.serving.handler import Answer, Handler
from routeyard.serving.planner import RoutePlan
from routeyard.serving.relay import NO_HOOKS, StreamHooks, StreamRelay
from routeyard.signals.session import session_id, session_key
from routeyard.state import DecisionRecord, Store, StoreUnavailable

log = logging.getLogger("routeyard")

Spawn = Callable[[Coroutine[Any, Any, None]], None]
PART = "endpoint"  # the session state part: session:<id>:endpoint
# The store read sits on the request path: past this, the request goes on without affinity.
LOOKUP_TIMEOUT_S = 0.25
# After a store error or a timeout, no reads or writes for this long: a store that is down
# costs one wait per interval, not one per request.
STORE_BACKOFF_S = 2.0
STORE_WARNING_EVERY_S = 60.0  # a store that is down is logged once a minute, not per request
# Outcomes after which the answering endpoint holds the session's prefix.
_WARMED = frozenset({"ok", "client_disconnect"})
_SEPARATOR = "\n"  # between model and endpoint names in the stored value


class EndpointAffinity:
    """Reads and writes each session's endpoint in the store."""

    def __init__(self, sessions: SessionsConfig, store: Store, spawn: Spawn) -> None:
        self.store = store
        self.spawn = spawn
        self.ttl_s = sessions.idle_ttl_s
        self.max_extra_load = float(sessions.affinity_max_extra_in_flight)
        self._warned_at = -STORE_WARNING_EVERY_S
        self._store_back_at = 0.0  # monotonic time before which the store is left alone

    @classmethod
    def build(cls, sessions: SessionsConfig, store: Store, spawn: Spawn
              ) -> EndpointAffinity | None:
        """None when `endpoint_affinity` is off: nothing is wrapped, nothing observed."""
        return cls(sessions, store, spawn) if sessions.endpoint_affinity else None

    def wrap(self, inner: Handler) -> Handler:
        return AffinityHandler(inner, self)

    async def preference(self, plan: RoutePlan) -> EndpointPreference | None:
        """The endpoint the plan's session was last served by, or None (no session, none
        stored, or the store did not answer in time). A bad session id is the client's 400."""
        session = _session_of(plan)
        if session is None or time.monotonic() < self._store_back_at:
            return None
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                raw = await self.store.get_value(session_key(session, PART))
        except (StoreUnavailable, TimeoutError) as error:
            self._store_trouble("read", error)
            return None
        if raw is None:
            return None
        model, _, endpoint = raw.decode(errors="replace").partition(_SEPARATOR)
        if not endpoint:
            return None  # not a value this module wrote
        return EndpointPreference(model, endpoint, self.max_extra_load)

    def observe(self, plan: RoutePlan, record: DecisionRecord, _text: str | None) -> None:
        """Accounting observer: remember the endpoint that served a session's request."""
        if record.endpoint is None or record.model is None or record.status not in _WARMED:
            return
        try:
            session = _session_of(plan)
        except InvalidRequest:
            return  # refused before it reached a backend; nothing to remember
        if session is not None and time.monotonic() >= self._store_back_at:
            value = f"{record.model}{_SEPARATOR}{record.endpoint}".encode()
            self.spawn(self._remember(session_key(session, PART), value))

    async def _remember(self, key: str, value: bytes) -> None:
        try:
            await self.store.set_value(key, value, ttl_s=self.ttl_s)
        except StoreUnavailable as error:
            self._store_trouble("write", error)

    def _store_trouble(self, what: str, error: Exception) -> None:
        now = time.monotonic()
        self._store_back_at = now + STORE_BACKOFF_S
        if now - self._warned_at >= STORE_WARNING_EVERY_S:
            self._warned_at = now
            log.warning("session affinity: the store did not answer a %s (%s); requests "
                        "are balanced as usual meanwhile", what,
                        type(error).__name__ if not str(error) else error)


def _session_of(plan: RoutePlan) -> str | None:
    """The plan's session: as the session tracker found it when one runs, else read here."""
    if plan.session is not None:
        return plan.session
    return session_id(plan.context.body, plan.context.headers)


class AffinityHandler(Handler):
    """Wraps a decision's stack: its backend calls prefer the session's endpoint."""

    def __init__(self, inner: Handler, affinity: EndpointAffinity) -> None:
        self.inner = inner
        self.affinity = affinity

    async def complete(self, plan: RoutePlan, body: dict[str, Any]) -> Answer:
        with preferred_endpoint(await self.affinity.preference(plan)):
            return await self.inner.complete(plan, body)

    async def open_stream(self, plan: RoutePlan, body: dict[str, Any],
                          hooks: StreamHooks = NO_HOOKS) -> StreamRelay:
        # A continuation opened later runs in a copy of this context: it still prefers the
        # endpoint, but never one that broke during the stream.
        with preferred_endpoint(await self.affinity.preference(plan)):
            return await self.inner.open_stream(plan, body, hooks)
