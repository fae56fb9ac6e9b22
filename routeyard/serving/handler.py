"""The contract for running a planned request, and the layer that accounts for it.

A `Handler` takes a plan and the request body and answers, whole (`complete`) or as a stream
(`open_stream`). Handlers wrap handlers, the way ASGI middleware wraps an app, and the Router
builds each decision's stack once:

    Accounted(PluginChain(plugins, DirectHandler | CascadeHandler | ...))

`Accounted` is always outermost: it records every answer and every failure. A stream records
itself when it ends, since only then is its outcome known.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from routeyard.errors import SHUTDOWN_CUT, InvalidRequest, ServerShuttingDown
from routeyard.pool import PoolExhausted, Served
from routeyard.serving.accounting import Accountant
from routeyard.serving.exhausted import client_error
from routeyard.serving.planner import RoutePlan
from routeyard.serving.relay import NO_HOOKS, StreamHooks, StreamRelay
from routeyard.wire import completion_text


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole answer to one planned request."""

    plan: RoutePlan
    served: Served | None  # the call that answered; None: a plugin answered, no backend did
    response: dict[str, Any]  # an OpenAI chat.completion
    usage: Mapping[str, int] = field(default_factory=dict)
    status: str = "ok"  # as the decision log records it (see DECISION_STATUSES)
    cost_usd: float | None = None  # several calls made it (a cascade): what they cost in all
    headers: Mapping[str, str] = field(default_factory=dict)  # response headers to add

    @property
    def model(self) -> str | None:
        return self.served.model.name if self.served is not None else None


class BlockedByPolicy(InvalidRequest):
    """A plugin refused the request (a `block` with `status: error`)."""

    code = "blocked_by_policy"


class Handler(ABC):
    @abstractmethod
    async def complete(self, plan: RoutePlan, body: dict[str, Any]) -> Answer:
        """Answer whole. Raises PoolExhausted when no backend could answer."""

    @abstractmethod
    async def open_stream(self, plan: RoutePlan, body: dict[str, Any],
                          hooks: StreamHooks = NO_HOOKS) -> StreamRelay:
        """Open a stream (failing over before its first byte); its `frames()` must be
        consumed, or its `finish()` awaited. `hooks` come from the layers above."""


class Accounted(Handler):
    """The outermost layer: accounts for each answer and each failure, and turns an exhausted
    pool into the client's error."""

    def __init__(self, inner: Handler, accountant: Accountant) -> None:
        self.inner = inner
        self.accountant = accountant

    async def complete(self, plan: RoutePlan, body: dict[str, Any]) -> Answer:
        with self._failures(plan, stream=False):
            answer = await self.inner.complete(plan, body)
        accountant = self.accountant
        accountant.record(plan, served=answer.served, usage_=answer.usage,
                          status=answer.status, stream=False, cost_usd=answer.cost_usd,
                          answer_text=completion_text(answer.response)
                          if accountant.keeps_text else None)
        return answer

    async def open_stream(self, plan: RoutePlan, body: dict[str, Any],
                          hooks: StreamHooks = NO_HOOKS) -> StreamRelay:
        with self._failures(plan, stream=True):
            return await self.inner.open_stream(plan, body, hooks)

    @contextmanager
    def _failures(self, plan: RoutePlan, *, stream: bool) -> Iterator[None]:
        """Record a request that got no answer, then raise the client's error."""
        try:
            yield
        except PoolExhausted as exhausted:
            self.accountant.record(plan, served=None, usage_=None, status="upstream_failed",
                                   stream=stream, attempts=exhausted.attempts)
            raise client_error(exhausted) from None
        except BlockedByPolicy:
            self.accountant.record(plan, served=None, usage_=None, status="blocked",
                                   stream=stream)
            raise
        except asyncio.CancelledError as cancelled:
            if cancelled.args != (SHUTDOWN_CUT,):
                raise  # the client went away, or the server is stopping without a drain
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # handled here: answered, not cancelled
            self.accountant.record(plan, served=None, usage_=None, status="shutdown",
                                   stream=stream)
            raise ServerShuttingDown(SHUTDOWN_CUT) from None
