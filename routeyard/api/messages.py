"""POST /v1/messages (Anthropic's Messages API) and POST /v1/messages/count_tokens.

A request is routed exactly like a chat completion: the body is translated to the internal form
(`anthropic_request`), planned and answered by the router, and the answer rendered back
(`anthropic_answer`). The client's own body rides along (`WithNative`): an Anthropic-protocol
backend gets it as written, and its raw answer comes back as written, so thinking signatures,
cache_control and fields Routeyard does not know survive. The client's `anthropic-version` and
`anthropic-beta` headers go to Anthropic-protocol backends. Errors use Anthropic's envelope
(`ERROR_STYLES` in `errors.py`); a stream that breaks ends with an `error` event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from routeyard.api.anthropic_answer import (
    AnthropicEventStream,
    error_event,
    message_id,
    to_anthropic_message,
)
from routeyard.api.anthropic_request import count_input_tokens, to_internal_request
from routeyard.api.body import read_json
from routeyard.api.common import JSON, Surface, serve_routed
from routeyard.api.errors import ANTHROPIC
from routeyard.errors import ModelNotFound
from routeyard.pool.providers.base import forwarded_headers
from routeyard.router import Router
from routeyard.serving.handler import Answer
from routeyard.serving.relay import StreamFailure, StreamRelay
from routeyard.wire import WithNative, native_of

PROTOCOL = "anthropic"
# Client headers that Anthropic-protocol backends get as the client sent them.
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")
# A stream cut at shutdown tells the client to retry elsewhere; any other break is an error.
_FAILURE_TYPES = {"server_shutting_down": "overloaded_error"}


def _translate(data: Any) -> dict[str, Any]:
    return WithNative(to_internal_request(data), native=data, protocol=PROTOCOL)


def _render(answer: Answer) -> bytes:
    model = answer.plan.context.body["model"]  # the name the client asked for
    native = native_of(answer.response, PROTOCOL)
    if native is not None:  # an Anthropic backend's own answer, as it sent it
        return orjson.dumps({**native, "model": model})
    return orjson.dumps(to_anthropic_message(
        answer.response, model=model,
        id_=message_id(answer.response.get("id"), answer.plan.request_id)))


async def _events(relay: StreamRelay) -> AsyncIterator[bytes]:
    plan = relay.plan
    events = AnthropicEventStream(plan.context.body["model"], plan.request_id,
                                  plan.context.tokens_counted or 0)
    async for item in relay.chunks():
        if isinstance(item, StreamFailure):
            yield error_event(item.message, kind=_FAILURE_TYPES.get(item.code, "api_error"))
            return
        frames = events.feed(item)
        if frames:
            yield b"".join(frames)
    yield b"".join(events.finish())


MESSAGES = Surface(translate=_translate, render=_render, stream=_events, style=ANTHROPIC,
                   name="messages")


def _forwarded(request: Request) -> dict[str, dict[str, str]] | None:
    headers = request.headers
    found = {name: headers[name] for name in FORWARDED_HEADERS if name in headers}
    return {PROTOCOL: found} if found else None


async def messages(request: Request) -> Response:
    # The forwarded headers are read by the provider when it sends: the stream is opened (and
    # any failover done) inside serve_routed, so nothing is sent after this block.
    with forwarded_headers(_forwarded(request)):
        return await serve_routed(request, MESSAGES)


async def count_tokens(request: Request) -> Response:
    """`{"input_tokens": N}`, counted offline: no backend is called."""
    router: Router = request.app.state.router
    body = to_internal_request(await read_json(request), count_only=True)
    name = body["model"]
    if not (name in router.aliases or name in router.pool.models
            or router.planner.route_of(name)[0]):
        raise ModelNotFound(f"The model '{name}' does not exist. Use an alias "
                            f"({', '.join(sorted(router.aliases))}) or one of GET /v1/models.",
                            param="model")
    return Response(orjson.dumps({"input_tokens": count_input_tokens(body)}), media_type=JSON)


ROUTES: list[BaseRoute] = [
    Route("/v1/messages", messages, methods=["POST"]),
    Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
]
