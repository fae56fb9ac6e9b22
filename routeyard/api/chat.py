"""POST /v1/chat/completions (the internal form itself), POST /v1/route (the dry run) and
POST /v1/feedback."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from routeyard.api.body import read_json
from routeyard.api.common import JSON, Surface, request_headers, serve_routed
from routeyard.errors import InvalidRequest
from routeyard.router import Router
from routeyard.serving.handler import Answer
from routeyard.serving.request import validate_chat_request


def _render(answer: Answer) -> bytes:
    return orjson.dumps(answer.response)


# The chat surface translates nothing: the body is the internal form, and streams pass the
# backend's own chunk bytes through.
CHAT = Surface(translate=validate_chat_request, render=_render,
               stream=lambda relay: relay.frames())


async def chat_completions(request: Request) -> Response:
    return await serve_routed(request, CHAT)


async def route_dry_run(request: Request) -> Response:
    """The same dry run as `routeyard route`: a chat body, or {"prompt": "text"}."""
    router: Router = request.app.state.router
    data = await read_json(request)
    if not isinstance(data, dict):  # the router also takes a bare prompt string: not here
        raise InvalidRequest("the request body must be a JSON object: a chat body, or "
                             '{"prompt": "text"}')
    if "messages" not in data:
        prompt = data.get("prompt")
        if not isinstance(prompt, str):
            raise InvalidRequest("give either a chat body with `messages` or a string `prompt`",
                                 param="prompt")
        data = prompt
    result = await router.route(data, request_headers(request))
    return Response(orjson.dumps(result), media_type=JSON)


async def feedback(request: Request) -> Response:
    """POST /v1/feedback: {request_id, one of rating | score | correct | preferred_over}."""
    router: Router = request.app.state.router
    result = await router.submit_feedback(await read_json(request))
    return Response(orjson.dumps(result), media_type=JSON)


ROUTES = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/route", route_dry_run, methods=["POST"]),
    Route("/v1/feedback", feedback, methods=["POST"]),
]
