"""What every routed surface shares: reading and translating the body, planning, calling,
the decision headers, errors in the surface's schema, and a stream response that always
releases its upstream stream.

A surface (chat completions, Anthropic Messages, Responses, legacy completions) only says how
to turn its request into the internal form (an OpenAI chat body) and how to render an answer
and a stream in its own wire format: a `Surface`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from routeyard import tracing
from routeyard.api.body import read_json
from routeyard.api.errors import OPENAI, ErrorStyle
from routeyard.errors import RouteyardError
from routeyard.router import Router
from routeyard.serving.handler import Answer
from routeyard.serving.planner import RoutePlan
from routeyard.serving.relay import StreamRelay
from routeyard.serving.request import wants_stream
from routeyard.signals.session import CHAIN_HEADER

JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Surface:
    """One API surface's translation at the edge."""

    # The parsed JSON body → the internal chat body (raises InvalidRequest when it is bad).
    translate: Callable[[Any], dict[str, Any]]
    # A whole answer → the response body, in the surface's format.
    render: Callable[[Answer], bytes]
    # A stream → the SSE frames of the surface's format.
    stream: Callable[[StreamRelay], AsyncIterator[bytes]]
    style: ErrorStyle = OPENAI
    name: str = "chat"  # as the decision log names the surface


def request_headers(request: Request) -> dict[str, str]:
    """The request's headers (lower-case names). An `x-api-key` (the Anthropic SDK's) counts
    as the bearer key when no Authorization header is given."""
    headers = {key.decode("latin-1"): value.decode("latin-1")
               for key, value in request.scope["headers"]}
    if "authorization" not in headers and "x-api-key" in headers:
        headers["authorization"] = f"Bearer {headers['x-api-key']}"
    headers.pop(CHAIN_HEADER, None)  # the Responses surface sets it; never a client
    return headers


def caller_id(headers: Mapping[str, str]) -> str:
    """Who is asking, never the secret: a SHA-256 prefix of the API key, or "anonymous"."""
    auth = headers.get("authorization", "")
    key = auth[7:] if auth[:7].lower() == "bearer " else ""
    return hashlib.sha256(key.encode()).hexdigest()[:24] if key else "anonymous"


def decision_headers(plan: RoutePlan) -> dict[str, str]:
    headers = {"x-routeyard-request-id": plan.request_id, "x-routeyard-decision": plan.decision}
    signals = plan.matched_signals()
    if signals:
        # Header values are latin-1: escape anything else in user-chosen signal names.
        headers["x-routeyard-signals"] = ",".join(signals).encode(
            "latin-1", "backslashreplace").decode("latin-1")
    return headers


def answer_headers(headers: dict[str, str], model: str | None,
                   extra: Mapping[str, str]) -> None:
    """The answering model (none when a plugin answered) and the handlers' own headers (a
    cascade's path, a plugin's cache status)."""
    if model is not None:
        headers["x-routeyard-model"] = model
    headers.update(extra)


def begin_trace(request: Request, headers: Mapping[str, str], surface: str
                ) -> tracing.RequestTrace | None:
    """The request's root span (None when tracing is off), continuing a `traceparent`."""
    if not tracing.enabled():
        return None
    method, path = request.scope["method"], request.scope["path"]  # request.url parses
    return tracing.begin_request(f"{method} {path}", headers, {
        "http.request.method": method, "url.path": path,
        "gen_ai.operation.name": "embeddings" if surface == "embeddings" else "chat",
        "routeyard.surface": surface})


def trace_plan(trace: tracing.RequestTrace | None, plan: RoutePlan,
               body: Mapping[str, Any]) -> None:
    """Hang the plan on the request's span, when it records (is sampled): the accounting
    annotates it when the request ends."""
    if trace is None or not trace.span.is_recording():
        return
    plan.trace = trace.span
    tracing.set_attributes(trace.span, {
        "gen_ai.request.model": str(body.get("model")),
        "gen_ai.request.max_tokens": _number(body.get("max_completion_tokens")
                                             or body.get("max_tokens")),
        "gen_ai.request.temperature": _number(body.get("temperature")),
        "gen_ai.request.top_p": _number(body.get("top_p")),
        "routeyard.request_id": plan.request_id,
        "routeyard.stream": wants_stream(body),
    })


def _number(value: Any) -> float | int | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


async def serve_routed(request: Request, surface: Surface) -> Response:
    """Read, translate, plan and answer one request of a surface."""
    # The Router is read once: a config reload swaps app.state.router, and this request
    # finishes on the one it started with (in_flight keeps the old one open until then).
    router: Router = request.app.state.router
    router.in_flight += 1
    streaming = False
    client_headers = request_headers(request)
    trace = begin_trace(request, client_headers, surface.name)
    status = 500
    try:
        try:
            with tracing.span("routeyard.validate"):
                body = surface.translate(await read_json(request))
            plan = await router.plan(body, client_headers)
        except RouteyardError as error:
            router.accountant.rejected(error)
            status = error.status
            raise
        plan.surface = surface.name
        trace_plan(trace, plan, body)
        headers = decision_headers(plan)
        try:
            if wants_stream(body):
                relay = await router.open_stream(body, plan)
                answer_headers(headers, relay.model, relay.headers)
                headers["cache-control"] = "no-cache"
                streaming = True
                return RoutedStream(router, relay, surface.stream(relay), headers, trace)
            answer = await _whole(request, router.complete(body, plan))
        except RouteyardError as error:
            status = error.status
            return surface.style.for_error(error, headers)
        answer_headers(headers, answer.model, answer.headers)
        status = 200
        return Response(surface.render(answer), headers=headers, media_type=JSON)
    finally:
        if not streaming:
            router.in_flight -= 1
        if trace is not None:
            trace.detach()
            if not streaming:
                trace.end(status)


async def _whole(request: Request, answering: Awaitable[Answer]) -> Answer:
    """A whole answer, cut by the server's drain (a 503) if it is still coming at its end."""
    waiting = request.app.state.drain.requests
    task = asyncio.current_task()
    if task is None:
        return await answering
    waiting.add(task)
    try:
        return await answering
    finally:
        waiting.discard(task)


class RoutedStream(StreamingResponse):
    """An SSE response that always releases its upstream stream and its in-flight count,
    even when the client leaves before the first frame is sent, and that the server's drain
    can cut at shutdown."""

    def __init__(self, router: Router, relay: StreamRelay, frames: AsyncIterator[bytes],
                 headers: dict[str, str], trace: tracing.RequestTrace | None = None) -> None:
        super().__init__(frames, media_type="text/event-stream", headers=headers)
        self.router = router
        self.relay = relay
        self.trace = trace  # the request's span, ended with the stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        open_streams = scope["app"].state.drain.streams  # cut if still open at shutdown
        open_streams.add(self.relay)
        try:
            await super().__call__(scope, receive, send)
        finally:
            open_streams.discard(self.relay)
            await self.relay.finish()
            self.router.in_flight -= 1
            if self.trace is not None:
                self.trace.end(200)
