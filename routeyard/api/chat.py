"""POST /v1/chat/completions and POST /v1/route: the request path's HTTP edge."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from routeyard.api.body import read_json
from routeyard.api.errors import routeyard_error_response
from routeyard.errors import InvalidRequest, RouteyardError
from routeyard.router import Router
from routeyard.serving.relay import StreamRelay
from routeyard.serving.request import validate_chat_request, wants_stream

_JSON = "application/json"


async def chat_completions(request: Request) -> Response:
    # The Router is read once: a config reload swaps app.state.router, and this request
    # finishes on the one it started with (in_flight keeps the old one open until then).
    router: Router = request.app.state.router
    router.in_flight += 1
    streaming = False
    try:
        try:
            body = validate_chat_request(await read_json(request))
            plan = await router.plan(body, _headers(request))
        except RouteyardError as error:
            router.accountant.rejected(error)
            raise
        headers = {"x-routeyard-request-id": plan.request_id,
                   "x-routeyard-decision": plan.decision}
        signals = plan.matched_signals()
        if signals:
            # Header values are latin-1: escape anything else in user-chosen signal names.
            headers["x-routeyard-signals"] = ",".join(signals).encode(
                "latin-1", "backslashreplace").decode("latin-1")
        try:
            if wants_stream(body):
                relay = await router.open_stream(body, plan)
                _answer_headers(headers, relay.model, relay.headers)
                headers["cache-control"] = "no-cache"
                streaming = True
                return RelayResponse(router, relay, headers)
            answer = await router.complete(body, plan)
        except RouteyardError as error:
            return routeyard_error_response(error, headers)
        _answer_headers(headers, answer.model, answer.headers)
        return Response(orjson.dumps(answer.response), headers=headers, media_type=_JSON)
    finally:
        if not streaming:
            router.in_flight -= 1


def _answer_headers(headers: dict[str, str], model: str | None,
                    extra: Mapping[str, str]) -> None:
    """The answering model (none when a plugin answered) and the handlers' own headers (a
    cascade's path, a plugin's cache status)."""
    if model is not None:
        headers["x-routeyard-model"] = model
    headers.update(extra)


class RelayResponse(StreamingResponse):
    """An SSE response that always releases its upstream stream and its in-flight count,
    even when the client leaves before the first frame is sent."""

    def __init__(self, router: Router, relay: StreamRelay, headers: dict[str, str]) -> None:
        super().__init__(relay.frames(), media_type="text/event-stream", headers=headers)
        self.router = router
        self.relay = relay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        open_streams = scope["app"].state.drain.streams  # cut if still open at shutdown
        open_streams.add(self.relay)
        try:
            await super().__call__(scope, receive, send)
        finally:
            open_streams.discard(self.relay)
            await self.relay.finish()
            self.router.in_flight -= 1


def _headers(request: Request) -> dict[str, str]:
    return {key.decode("latin-1"): value.decode("latin-1")
            for key, value in request.scope["headers"]}


async def route_dry_run(request: Request) -> Response:
    """The same dry run as `routeyard route`: a chat body, or {"prompt": "text"}."""
    router: Router = request.app.state.router
    data = await read_json(request)
    if isinstance(data, dict) and "messages" not in data:
        prompt = data.get("prompt")
        if not isinstance(prompt, str):
            raise InvalidRequest("give either a chat body with `messages` or a string `prompt`",
                                 param="prompt")
        data = prompt
    result = await router.route(data, _headers(request))
    return Response(orjson.dumps(result), media_type=_JSON)


async def feedback(request: Request) -> Response:
    """POST /v1/feedback: {request_id, one of rating | score | correct | preferred_over}."""
    router: Router = request.app.state.router
    result = await router.submit_feedback(await read_json(request))
    return Response(orjson.dumps(result), media_type=_JSON)
