"""POST /v1/chat/completions and POST /v1/route: the request path's HTTP edge."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from routeyard.api.errors import routeyard_error_response
from routeyard.chat_request import validate_chat_request, wants_stream
from routeyard.errors import InvalidRequest, PayloadTooLarge, RouteyardError
from routeyard.router import Router

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
            router.record_rejection(error)
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
                headers["x-routeyard-model"] = relay.served.model.name
                headers["cache-control"] = "no-cache"
                streaming = True
                return StreamingResponse(_counted(router, relay.frames()),
                                         media_type="text/event-stream", headers=headers)
            result = await router.complete(body, plan)
        except RouteyardError as error:
            return routeyard_error_response(error, headers)
        headers["x-routeyard-model"] = result.served.model.name
        return Response(orjson.dumps(result.response), headers=headers, media_type=_JSON)
    finally:
        if not streaming:
            router.in_flight -= 1


async def _counted(router: Router, frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A stream stays in flight until its last frame (or the client leaving)."""
    try:
        async for frame in frames:
            yield frame
    finally:
        router.in_flight -= 1


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


async def read_json(request: Request) -> Any:
    limit: int = request.app.state.max_body_bytes
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidRequest(f"The request body is not valid JSON: {error}") from None
