"""The OpenAI Responses API: `POST /v1/responses` (routed like chat completions, streaming and
not), `GET` and `DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`.

A turn is translated to the internal chat body (`responses_wire`), with the conversation of its
`previous_response_id` in front, planned, answered by the router, and rendered back
(`responses_render`); with `store` (the default) it is kept (`responses_store`) before the
client sees it complete, so the next turn can chain on it at once.

Stickiness: a chained turn is planned with `prefer=` the model of the previous response, which
the planner keeps while the decision lists it. It holds only while the decision is unchanged:
when the turn lands in another decision that happens to list the same model, the turn is
planned again without the preference, so the new decision's own selection picks the model
(and the next turns stick to that one).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from routeyard import tracing
from routeyard.api.body import read_json
from routeyard.api.common import (
    JSON,
    RoutedStream,
    answer_headers,
    begin_trace,
    caller_id,
    decision_headers,
    request_headers,
    trace_plan,
)
from routeyard.api.errors import OPENAI
from routeyard.api.responses_render import (
    ResponseEvents,
    answer_message,
    response_from_completion,
)
from routeyard.api.responses_store import ResponseStore, StoredResponse
from routeyard.api.responses_wire import JSONDict, Turn, previous_response_id, translate_request
from routeyard.errors import InvalidRequest, RouteyardError
from routeyard.router import Router
from routeyard.serving.planner import RoutePlan
from routeyard.serving.relay import StreamFailure, StreamRelay
from routeyard.signals.session import CHAIN_HEADER
from routeyard.state import StoreUnavailable

log = logging.getLogger("routeyard.api.responses")

MAX_INPUT_ITEMS_PAGE = 100


def _store(router: Router) -> ResponseStore:
    return ResponseStore(router.store, router.config.responses.ttl_s)


async def plan_turn(router: Router, body: JSONDict, headers: dict[str, str],
                    previous: StoredResponse | None) -> RoutePlan:
    """Plan a turn, kept on the previous response's model while its decision is unchanged."""
    if previous is None or previous.model is None:
        plan = await router.plan(body, headers)
    else:
        plan = await router.plan(body, headers, prefer=previous.model)
        if plan.model == previous.model and plan.decision != previous.decision:
            # Another decision that also lists the model: its own selection chooses.
            plan = await router.plan(body, headers)
    plan.surface = "responses"
    return plan


class _Saver:
    """Keeps a finished turn, when it is to be stored."""

    def __init__(self, router: Router, turn: Turn, owner: str, plan: RoutePlan,
                 history: list[JSONDict], chain_root: str | None = None) -> None:
        self.store = _store(router)
        self.turn = turn
        self.owner = owner
        self.plan = plan
        self.history = history
        self.chain_root = chain_root  # the first response of the chain this turn continues

    async def save(self, response: JSONDict, message: JSONDict, model: str | None) -> None:
        """Store the response; a store that is down loses it (logged, and the response says
        `store: false`) rather than the answer the client already paid for."""
        record = StoredResponse(
            owner=self.owner, decision=self.plan.decision, model=model,
            request_id=self.plan.request_id, response=response,
            input_items=self.turn.input_items,
            conversation=[*self.history, *self.turn.messages, message])
        try:
            await self.store.save(record)
            if self.chain_root is not None:
                await self.store.store.set_value(_chain_key(response["id"]),
                                                 self.chain_root.encode(),
                                                 ttl_s=self.store.ttl_s)
        except StoreUnavailable as error:
            log.warning("response %s not stored: %s", response["id"], error)
            response["store"] = False


async def create_response(request: Request) -> Response:
    """`POST /v1/responses`: the variant of `serve_routed` that loads the previous response
    first, plans with stickiness and stores the result."""
    router: Router = request.app.state.router
    router.in_flight += 1
    streaming = False
    headers = request_headers(request)
    headers.pop(CHAIN_HEADER, None)  # ours to set, never a client's
    trace = begin_trace(request, headers, "responses")
    status = 500
    try:
        owner = caller_id(headers)
        try:
            with tracing.span("routeyard.validate"):
                data = await read_json(request)
            previous_id = previous_response_id(data)
            previous = await _store(router).previous(previous_id, owner) \
                if previous_id is not None else None
            history = previous.conversation if previous is not None else []
            turn = translate_request(data, history)
            root = None
            if previous_id is not None and previous is not None and router.sessions is not None:
                root = await _chain_root(router, previous_id, previous)
                headers[CHAIN_HEADER] = root  # the session: docs/sessions.md
            plan = await plan_turn(router, turn.body, headers, previous)
        except RouteyardError as error:
            router.accountant.rejected(error)
            status = error.status
            raise
        trace_plan(trace, plan, turn.body)
        saver = _Saver(router, turn, owner, plan, history, root) if turn.store else None
        out_headers = decision_headers(plan)
        try:
            if turn.stream:
                relay = await router.open_stream(turn.body, plan)
                answer_headers(out_headers, relay.model, relay.headers)
                out_headers["cache-control"] = "no-cache"
                streaming = True
                return RoutedStream(router, relay, _events(relay, turn, plan, saver),
                                    out_headers, trace)
            answer = await router.complete(turn.body, plan)
        except RouteyardError as error:
            status = error.status
            return OPENAI.for_error(error, out_headers)
        answer_headers(out_headers, answer.model, answer.headers)
        model = answer.model or str(answer.response.get("model") or plan.model)
        response = response_from_completion(turn, answer.response, model)
        if saver is not None:
            await saver.save(response, answer_message(answer.response), answer.model)
        status = 200
        return Response(orjson.dumps(response), headers=out_headers, media_type=JSON)
    finally:
        if not streaming:
            router.in_flight -= 1
        if trace is not None:
            trace.detach()
            if not streaming:
                trace.end(status)


def _chain_key(response_id: str) -> str:
    return f"response-chain:{response_id}"


async def _chain_root(router: Router, previous_id: str, previous: StoredResponse) -> str:
    """The id of the first response of the chain `previous` ends: itself when it chained on
    nothing, else what was kept beside it (itself again for a chain stored while sessions
    were off: the session then begins there)."""
    if previous.response.get("previous_response_id") is None:
        return previous_id
    raw = await router.store.get_value(_chain_key(previous_id))
    return raw.decode() if raw is not None else previous_id


async def _events(relay: StreamRelay, turn: Turn, plan: RoutePlan, saver: _Saver | None
                  ) -> AsyncIterator[bytes]:
    """The stream as Responses events; stored before its `response.completed` is sent."""
    events = ResponseEvents(turn, relay.model or plan.model)
    yield events.opening()
    async for item in relay.chunks():
        if isinstance(item, StreamFailure):
            yield events.failed(item.message, item.type, item.code)
            return
        frames = events.feed(item)
        if frames:
            yield frames
    closing, response = events.finish(relay.usage)
    if closing:
        yield closing
    if saver is not None:
        await saver.save(response, events.message(), relay.model)
    yield events.terminal(response)


# -- stored responses --------------------------------------------------------------------------

async def _load(request: Request) -> StoredResponse:
    router: Router = request.app.state.router
    return await _store(router).load(request.path_params["response_id"],
                                     caller_id(request_headers(request)))


async def retrieve_response(request: Request) -> Response:
    if request.query_params.get("stream") in ("true", "1"):
        raise InvalidRequest("stream: replaying a stored response as a stream is not "
                             "supported", param="stream", code="unsupported_parameter")
    record = await _load(request)
    return Response(orjson.dumps(record.response), media_type=JSON)


async def delete_response(request: Request) -> Response:
    router: Router = request.app.state.router
    response_id = request.path_params["response_id"]
    await _store(router).delete(response_id, caller_id(request_headers(request)))
    return Response(orjson.dumps({"id": response_id, "object": "response", "deleted": True}),
                    media_type=JSON)


async def list_input_items(request: Request) -> Response:
    """A cursor page of the input items (newest first unless `order=asc`)."""
    limit, order, after = _page_params(request.query_params)
    record = await _load(request)
    items = record.input_items if order == "asc" else record.input_items[::-1]
    start = 0
    if after is not None:
        start = next((i + 1 for i, item in enumerate(items) if item.get("id") == after), -1)
        if start < 0:
            raise InvalidRequest(f"after: no input item with id '{after}' in this response",
                                 param="after")
    page = items[start:start + limit]
    body = {"object": "list", "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": start + limit < len(items)}
    return Response(orjson.dumps(body), media_type=JSON)


def _page_params(query: Mapping[str, str]) -> tuple[int, str, str | None]:
    raw = query.get("limit", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_INPUT_ITEMS_PAGE:
        raise InvalidRequest(f"limit: expected an integer from 1 to {MAX_INPUT_ITEMS_PAGE}, "
                             f"got {raw!r}", param="limit")
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest(f"order: expected asc or desc, got {order!r}", param="order")
    return int(raw), order, query.get("after")


ROUTES = [
    Route("/v1/responses", create_response, methods=["POST"]),
    Route("/v1/responses/{response_id}", retrieve_response, methods=["GET"]),
    Route("/v1/responses/{response_id}", delete_response, methods=["DELETE"]),
    Route("/v1/responses/{response_id}/input_items", list_input_items, methods=["GET"]),
]
