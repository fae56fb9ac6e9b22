"""Session stickiness: keep a session on the model that served it, else ask an inner algorithm.

The session id is, in order: the `session_header` request header, the body's
`metadata.session_id`, the body's `user`. Memory is an in-process LRU with a TTL (refreshed on
each hit), per decision; replicas do not share it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from routeyard.selection.base import (
    AlgorithmBuild,
    CandidateView,
    Selection,
    SelectionAlgorithm,
    make_algorithm,
    register,
)
from routeyard.selection.common import number

if TYPE_CHECKING:
    from routeyard.signals.base import RequestContext


@register
class StickySelection(SelectionAlgorithm):
    name = "sticky"

    def __init__(self, options: dict[str, Any] | None = None, build: AlgorithmBuild | None = None,
                 *, clock: Callable[[], float] = time.monotonic):
        super().__init__(options, build)
        inner = self.options.get("inner", "first_healthy")
        if not isinstance(inner, str) or inner == self.name:
            raise ValueError("algorithm_options.inner must name another selection algorithm")
        inner_options = self.options.get("inner_options") or {}
        if not isinstance(inner_options, dict):
            raise ValueError("algorithm_options.inner_options must be a mapping")
        try:
            self.inner = make_algorithm(inner, inner_options, build)
        except KeyError:
            raise ValueError(f"algorithm_options.inner: unknown algorithm '{inner}'") from None
        self.needs_embedding = self.inner.needs_embedding  # type: ignore[misc]
        header = self.options.get("session_header", "x-session-id")
        if not isinstance(header, str) or not header:
            raise ValueError("algorithm_options.session_header must be a header name")
        self.header = header.lower()
        self.ttl_s = number(self.options, "ttl_s", 1800.0)
        self.max_sessions = int(number(self.options, "max_sessions", 100_000, minimum=1))
        self.clock = clock
        self._sessions: OrderedDict[str, tuple[str, float]] = OrderedDict()  # id → (model, expiry)

    def __len__(self) -> int:
        return len(self._sessions)

    def session_id(self, ctx: RequestContext | None) -> str | None:
        if ctx is None:
            return None
        value = ctx.headers.get(self.header)
        if value is None:
            value = next((v for k, v in ctx.headers.items() if k.lower() == self.header), None)
        if isinstance(value, str) and value:
            return "h:" + value
        metadata = ctx.body.get("metadata")
        if isinstance(metadata, dict):
            value = metadata.get("session_id")
            if isinstance(value, str) and value:
                return "m:" + value
        value = ctx.body.get("user")
        if isinstance(value, str) and value:
            return "u:" + value
        return None

    def select(self, candidates: list[CandidateView], prompt_tokens: int,
               ctx: RequestContext | None = None) -> Selection | None:
        session = self.session_id(ctx)
        if session is None:
            return self.inner.select(candidates, prompt_tokens, ctx)
        now = self.clock()
        self._expire(now)
        remembered = self._sessions.get(session)
        if remembered is not None:
            model = remembered[0]
            match = next((c for c in candidates if c.name == model), None)
            if match is not None and match.is_available() and match.fits(prompt_tokens):
                self._remember(session, model, now)
                return Selection(model, f"sticky: this session was served by '{model}' before")
        selection = self.inner.select(candidates, prompt_tokens, ctx)
        if selection is None:
            return None
        self._remember(session, selection.model, now)
        return Selection(selection.model, f"{selection.reason} (session now sticks to it)")

    def _remember(self, session: str, model: str, now: float) -> None:
        self._sessions[session] = (model, now + self.ttl_s)
        self._sessions.move_to_end(session)
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)

    def _expire(self, now: float) -> None:
        # Entries are in order of last use and share one TTL, so the expired ones lead.
        while self._sessions:
            _, (_, expiry) = next(iter(self._sessions.items()))
            if expiry > now:
                break
            self._sessions.popitem(last=False)
