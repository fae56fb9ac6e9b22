"""POST /v1/embeddings: OpenAI's embeddings API over the pool's embedding models.

The body is checked and passed through as it is (see routeyard/serving/embeddings.py for where
a name goes); the answer is the backend's OpenAI `list`, with usage, and the same decision
headers as chat (`x-routeyard-model`, `-decision`, `-request-id`).
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from routeyard import tracing
from routeyard.api.body import read_json
from routeyard.api.common import (
    JSON,
    answer_headers,
    begin_trace,
    decision_headers,
    request_headers,
    trace_plan,
)
from routeyard.api.errors import OPENAI
from routeyard.errors import RouteyardError
from routeyard.router import Router
from routeyard.serving.embeddings import validate_embeddings_request


async def create_embeddings(request: Request) -> Response:
    # Read once: a reload swaps app.state.router, and this request finishes on this one.
    router: Router = request.app.state.router
    router.in_flight += 1
    client_headers = request_headers(request)
    trace = begin_trace(request, client_headers, "embeddings")
    status = 500
    try:
        try:
            with tracing.span("routeyard.validate"):
                body = validate_embeddings_request(await read_json(request))
            plan = router.embeddings.plan(body, client_headers)
        except RouteyardError as error:
            router.accountant.rejected(error)
            status = error.status
            raise
        trace_plan(trace, plan, body)
        headers = decision_headers(plan)
        try:
            answer = await router.embeddings.run(plan, body)
        except RouteyardError as error:  # upstream failures carry the decision headers
            status = error.status
            return OPENAI.for_error(error, headers)
        answer_headers(headers, answer.model, answer.headers)
        status = 200
        return Response(orjson.dumps(answer.response), headers=headers, media_type=JSON)
    finally:
        router.in_flight -= 1
        if trace is not None:
            trace.end(status)


ROUTES: list[BaseRoute] = [Route("/v1/embeddings", create_embeddings, methods=["POST"])]
