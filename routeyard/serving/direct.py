"""The direct handler: the plan's models in order, with retries and failover (the executor);
a stream that breaks off mid-way goes on from another backend (`continuation.py`)."""

from __future__ import annotations

import contextvars
from typing import Any

from routeyard.pool.executor import Executor
from routeyard.serving.accounting import Accountant
from routeyard.serving.continuation import Continuation
from routeyard.serving.handler import Answer, Handler
from routeyard.serving.planner import RoutePlan
from routeyard.serving.relay import NO_HOOKS, StreamHooks, StreamRelay
from routeyard.serving.request import wants_usage


class DirectHandler(Handler):
    def __init__(self, executor: Executor, accountant: Accountant) -> None:
        self.executor = executor
        self.accountant = accountant

    async def complete(self, plan: RoutePlan, body: dict[str, Any]) -> Answer:
        served = await self.executor.complete(plan.models, plan.request_body(body))
        response: dict[str, Any] = served.result
        usage = self.accountant.usage(plan, response)
        if response.get("usage") is not usage:  # the backend sent none: the client gets ours
            response = {**response, "usage": usage}
        return Answer(plan, served, response, usage)

    async def open_stream(self, plan: RoutePlan, body: dict[str, Any],
                          hooks: StreamHooks = NO_HOOKS) -> StreamRelay:
        sent = plan.request_body(body)
        served = await self.executor.open_stream(plan.models, sent)
        # The context as the request was sent: a continuation, opened while the response
        # streams, is sent with the same upstream header edits and forwarded headers.
        continuation = Continuation(self.executor, sent, contextvars.copy_context())
        return StreamRelay(plan, served.result, self.accountant, served=served,
                           client_wants_usage=wants_usage(body), hooks=hooks,
                           continuation=continuation)
