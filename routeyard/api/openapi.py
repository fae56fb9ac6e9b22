"""The OpenAPI 3.1 description of every HTTP endpoint: `openapi_document()`.

Hand-written JSON Schema, so that it says exactly what the edge checks and no more: the request
fields Routeyard reads, with their types and which are required (every other field passes
through to the backend, hence `additionalProperties: true` on the request bodies), the answers'
outlines, and the error schemas: OpenAI's `{"error": {...}}` on every path but `/v1/messages`,
which answers in Anthropic's `{"type": "error", "error": {...}}`.

It is the schema `bench/fuzz.py` and `tests/test_fuzz.py` generate requests from, and served as
`GET /openapi.json` (`ROUTES`). Pure data, built on each call (a few hundred dicts, no I/O), so
nothing happens at import; the served copy is rendered once, on its first request.

`GET /openapi.json` needs the same key as `/v1/models` (a `user` key, once any key is set;
open when none is): the document is static and holds no secret, but a router behind keys
need not tell anonymous scanners which surfaces and version it serves. Only the probes
(`/`, `/healthz`, `/readyz`, `/metrics`) are open whatever the keys.
"""

from __future__ import annotations

import functools
from importlib import metadata
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

JSONDict = dict[str, Any]

OPENAPI_VERSION = "3.1.0"
_JSON = "application/json"
_SSE = "text/event-stream"

# Error statuses each kind of endpoint can answer (see docs/api.md, "Errors").
_BEFORE_ROUTING = (400, 401, 404, 405, 413)
_UPSTREAM = (403, 429, 502, 503, 504)
_ROUTED = (*_BEFORE_ROUTING, *_UPSTREAM)


# -- schema building blocks ----------------------------------------------------------------------


def _ref(name: str) -> JSONDict:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: JSONDict) -> JSONDict:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(properties: JSONDict, required: tuple[str, ...] = (), *,
            extra: bool = True, **more: Any) -> JSONDict:
    schema: JSONDict = {"type": "object", "properties": properties,
                        "additionalProperties": extra, **more}
    if required:
        schema["required"] = list(required)
    return schema


_STRING = {"type": "string"}
_NON_EMPTY = {"type": "string", "minLength": 1}
_BOOL = {"type": "boolean"}
_NUMBER = {"type": "number"}
_INT = {"type": "integer"}
_POSITIVE = {"type": "integer", "minimum": 1}
_ANY_OBJECT = {"type": "object"}
_OBJECTS = {"type": "array", "items": _ANY_OBJECT}
_STRINGS = {"type": "array", "items": _STRING}
_MODEL = {**_NON_EMPTY, "description": "An alias (routed), a model name (direct), or a name a "
          "`model_routes` pattern matches."}


# -- errors ------------------------------------------------------------------------------------


def _error_schemas() -> JSONDict:
    return {
        "OpenAIError": _object({"error": _object({
            "message": _STRING,
            "type": _STRING,
            "param": _nullable(_STRING),
            "code": _nullable(_STRING),
        }, ("message", "type", "param", "code"))}, ("error",)),
        "AnthropicError": _object({
            "type": {"const": "error"},
            "error": _object({
                "type": {"enum": ["invalid_request_error", "authentication_error",
                                  "permission_error", "not_found_error", "request_too_large",
                                  "rate_limit_error", "api_error", "overloaded_error"]},
                "message": _STRING,
            }, ("type", "message")),
        }, ("type", "error")),
    }


_STATUS_TEXT = {400: "Invalid request", 401: "Missing or invalid API key",
                403: "Model names not allowed", 404: "Unknown model, id or path",
                405: "Wrong method", 409: "Duplicate", 413: "Body too large",
                429: "Rate limited upstream", 502: "Every attempt failed",
                503: "No backend or store available", 504: "Upstream timeout"}


def _errors(statuses: tuple[int, ...], schema: str = "OpenAIError") -> JSONDict:
    return {str(status): {"description": _STATUS_TEXT[status],
                          "content": {_JSON: {"schema": _ref(schema)}}}
            for status in statuses}


def _ok(schema: JSONDict, *, events: str | None = None, description: str = "OK") -> JSONDict:
    """A 200 with a JSON body; `events`: also an SSE stream, each event's schema."""
    content: JSONDict = {_JSON: {"schema": schema}}
    if events is not None:
        content[_SSE] = {"schema": _ref(events)}
    return {"200": {"description": description, "content": content}}


def _event(data: JSONDict, *, named: bool = False, done: bool = False) -> JSONDict:
    """One server-sent event whose `data` is JSON of schema `data` (or `[DONE]` when `done`);
    `named`: the event has an `event:` line (Anthropic's and Responses' streams)."""
    payload: JSONDict = {"type": "string", "contentMediaType": _JSON, "contentSchema": data}
    event = _object({"data": {"anyOf": [{"const": "[DONE]"}, payload]} if done else payload,
                     "event": _STRING, "id": _STRING, "retry": _INT}, ("data",))
    if named:
        event["required"] = ["data", "event"]
    return event


def _event_schemas() -> JSONDict:
    """The streams' events: a chunk, or an error event when a stream breaks after its start."""
    typed = _object({"type": _STRING}, ("type",))
    return {
        "ChatStreamEvent": _event({"anyOf": [
            _object({"object": {"const": "chat.completion.chunk"}, "choices": _OBJECTS},
                    ("object", "choices")),
            _ref("OpenAIError")]}, done=True),
        "CompletionStreamEvent": _event({"anyOf": [
            _object({"object": {"const": "text_completion"}, "choices": _OBJECTS},
                    ("object", "choices")),
            _ref("OpenAIError")]}, done=True),
        "MessagesStreamEvent": _event(typed, named=True),
        "ResponsesStreamEvent": _event(_object({"type": _STRING, "sequence_number": _INT},
                                               ("type", "sequence_number")), named=True),
    }


def _operation(summary: str, responses: JSONDict, *, body: str | None = None,
               tag: str = "openai", parameters: list[JSONDict] | None = None) -> JSONDict:
    operation: JSONDict = {"summary": summary, "tags": [tag], "responses": responses}
    if body is not None:
        operation["requestBody"] = {"required": True,
                                    "content": {_JSON: {"schema": _ref(body)}}}
    if parameters:
        operation["parameters"] = parameters
    return operation


# -- request bodies ----------------------------------------------------------------------------


def _typed(kind: str, required: tuple[str, ...] = (), **fields: JSONDict) -> JSONDict:
    """An object whose `type` is `kind` (a content part, a block, an input item)."""
    return _object({"type": {"const": kind}, **fields}, ("type", *required))


def _typed_or_other(known: list[JSONDict]) -> JSONDict:
    """One of the `known` typed objects, or an object of any other type (passed on as it is,
    or left out, by the surface)."""
    names = [item["properties"]["type"]["const"] for item in known]
    return {"anyOf": [*known, _object({"type": {"type": "string", "not": {"enum": names}}},
                                      ("type",))]}


def _chat_schemas() -> JSONDict:
    """The chat body: the shapes `routeyard.serving.request` checks (each object may carry
    more keys, which pass through)."""
    image_url = {"anyOf": [_STRING, _object({"url": _STRING, "detail": _STRING}, ("url",))]}
    part = _typed_or_other([
        _typed("text", ("text",), text=_STRING),
        _typed("image_url", ("image_url",), image_url=image_url),
        _typed("file", ("file",), file=_object({"file_data": _STRING, "file_id": _STRING,
                                               "filename": _STRING})),
        _typed("refusal", ("refusal",), refusal=_STRING),
        _typed("input_audio", ("input_audio",), input_audio=_ANY_OBJECT),
    ])
    call = _object({
        "id": _STRING, "type": _STRING,
        "function": _object({"name": _STRING, "arguments": {"anyOf": [_STRING, _ANY_OBJECT]}},
                            ("name",)),
    }, ("function",))
    message = _object({
        "role": {"enum": ["system", "developer", "user", "assistant", "tool", "function"]},
        "content": {"anyOf": [_STRING, {"type": "array", "items": _ref("ContentPart")},
                              {"type": "null"}]},
        "name": _STRING,
        "tool_calls": _nullable({"type": "array", "items": call}),
        "tool_call_id": _STRING,
        "thinking_blocks": _nullable(_OBJECTS),
    }, ("role",))
    tool = _object({"type": _STRING, "function": _object({
        "name": _STRING, "description": _nullable(_STRING), "parameters": _nullable(_ANY_OBJECT),
    }, ("name",))})
    request = _object({
        "model": _MODEL,
        "messages": {"type": "array", "items": _ref("ChatMessage"), "minItems": 1},
        "stream": _nullable(_BOOL),
        "stream_options": _nullable(_object({"include_usage": _BOOL})),
        "max_tokens": _nullable(_POSITIVE),
        "max_completion_tokens": _nullable(_POSITIVE),
        "n": _nullable(_POSITIVE),
        "temperature": _nullable(_NUMBER),
        "top_p": _nullable(_NUMBER),
        "stop": {"anyOf": [_STRING, _STRINGS, {"type": "null"}]},
        "tools": _nullable({"type": "array", "items": tool}),
        "tool_choice": {"anyOf": [{"enum": ["auto", "none", "required"]}, _object({
            "type": _STRING, "function": _object({"name": _STRING}, ("name",))}, ("type",)),
            {"type": "null"}]},
        "parallel_tool_calls": _nullable(_BOOL),
        "reasoning_effort": _nullable({"enum": ["none", "minimal", "low", "medium", "high"]}),
        "response_format": _nullable(_object({"type": {"enum": [
            "text", "json_object", "json_schema"]}, "json_schema": _ANY_OBJECT}, ("type",))),
        # Anthropic's extended thinking, which clients aimed at Claude send here too.
        "thinking": _nullable(_object({"type": {"enum": ["enabled", "disabled", "adaptive"]},
                                       "budget_tokens": _nullable(_INT)}, ("type",))),
        "user": _STRING,
        "metadata": _nullable(_ANY_OBJECT),
    }, ("model", "messages"))
    completion = _object({
        "id": _STRING, "object": {"const": "chat.completion"}, "created": _INT, "model": _STRING,
        "choices": _OBJECTS, "usage": _ANY_OBJECT,
    }, ("id", "object", "choices"))
    return {"ContentPart": part, "ChatMessage": message, "ChatCompletionRequest": request,
            "ChatCompletion": completion}


def _anthropic_block() -> JSONDict:
    """The content blocks the translation reads; any other type is left out of it."""
    cache = {"cache_control": _ANY_OBJECT}
    source = _object({"type": {"enum": ["base64", "url", "text", "file"]}, "media_type": _STRING,
                      "data": _STRING, "url": _STRING}, ("type",))
    return _typed_or_other([
        _typed("text", ("text",), text=_STRING, **cache),
        _typed("image", ("source",), source=source, **cache),
        _typed("document", ("source",), source=source, title=_STRING, **cache),
        _typed("tool_use", ("id", "name", "input"), id=_NON_EMPTY, name=_NON_EMPTY,
               input=_ANY_OBJECT, **cache),
        _typed("tool_result", ("tool_use_id",), tool_use_id=_NON_EMPTY, is_error=_BOOL,
               content={"anyOf": [_STRING, _OBJECTS]}, **cache),
        _typed("thinking", ("thinking",), thinking=_STRING, signature=_STRING),
        _typed("redacted_thinking", ("data",), data=_STRING),
    ])


def _anthropic_schemas() -> JSONDict:
    block = _anthropic_block()
    content = {"anyOf": [_STRING, {"type": "array", "items": _ref("AnthropicBlock")}]}
    message = _object({"role": {"enum": ["user", "assistant", "system"]}, "content": content},
                      ("role", "content"))
    tool = _object({"type": _STRING, "name": _NON_EMPTY, "description": _STRING,
                    "input_schema": _ANY_OBJECT}, ("name", "input_schema"))
    fields = {
        "model": _MODEL,
        "messages": {"type": "array", "items": _ref("AnthropicMessageParam"), "minItems": 1},
        "system": {"anyOf": [_STRING, {"type": "array", "items": _ref("AnthropicBlock")}]},
        "stream": _BOOL,
        "stop_sequences": _STRINGS,
        "temperature": _NUMBER,
        "top_p": _NUMBER,
        "top_k": _INT,
        "metadata": _object({"user_id": _STRING}),
        "tools": {"type": "array", "items": tool},
        "tool_choice": _object({"type": {"enum": ["auto", "any", "tool", "none"]},
                                "name": _STRING, "disable_parallel_tool_use": _BOOL},
                               ("type",)),
        "thinking": _object({"type": {"enum": ["enabled", "disabled", "adaptive"]},
                             "budget_tokens": _POSITIVE}, ("type",)),
    }
    count_fields = {key: value for key, value in fields.items() if key != "stream"}
    answer = _object({
        "id": _STRING, "type": {"const": "message"}, "role": {"const": "assistant"},
        "model": _STRING, "content": _OBJECTS, "stop_reason": _nullable(_STRING),
        "usage": _ANY_OBJECT,
    }, ("id", "type", "role", "content"))
    return {
        "AnthropicBlock": block,
        "AnthropicMessageParam": message,
        "MessagesRequest": _object({**fields, "max_tokens": _POSITIVE},
                                   ("model", "max_tokens", "messages")),
        "CountTokensRequest": _object(count_fields, ("model", "messages")),
        "AnthropicMessage": answer,
        "TokenCount": _object({"input_tokens": _INT}, ("input_tokens",), extra=False),
    }


def _responses_schemas() -> JSONDict:
    """The Responses body: what `responses_wire` translates (other item types are listed as
    input items but not sent; other part types are a 400)."""
    part = {"anyOf": [
        _typed("input_text", ("text",), text=_STRING),
        _typed("output_text", ("text",), text=_STRING),
        _typed("input_image", (), image_url=_STRING, file_id=_STRING, detail=_STRING),
        _typed("input_file", (), file_data=_STRING, filename=_STRING),
        _typed("input_audio", ("input_audio",), input_audio=_ANY_OBJECT),
        _typed("refusal", ("refusal",), refusal=_STRING),
    ]}
    content = {"anyOf": [_STRING, {"type": "array", "items": part}]}
    role = {"enum": ["user", "assistant", "system", "developer"]}
    message = {"role": role, "content": content}
    item = _typed_or_other([
        _typed("message", ("role", "content"), **message),
        _typed("function_call", ("call_id", "name", "arguments"), call_id=_STRING,
               name=_STRING, arguments=_STRING),
        _typed("function_call_output", ("call_id", "output"), call_id=_STRING,
               output={"anyOf": [_STRING, {"type": "array", "items": part}]}),
        _typed("reasoning", (), summary=_OBJECTS),
    ])
    # The easy form of a message: {"role", "content"} without a type.
    item["anyOf"].append(_object(message, ("role", "content")))
    function = _typed("function", ("name",), name=_NON_EMPTY, description=_nullable(_STRING),
                      parameters=_nullable(_ANY_OBJECT), strict=_nullable(_BOOL))
    json_schema = _typed("json_schema", ("name", "schema"), name=_STRING, schema=_ANY_OBJECT,
                         strict=_nullable(_BOOL), description=_nullable(_STRING))
    request = _object({
        "model": _MODEL,
        "input": {"anyOf": [_STRING, {"type": "array", "items": _ref("ResponseInputItem")}]},
        "instructions": _nullable(_STRING),
        "previous_response_id": _nullable(_STRING),
        "store": _nullable(_BOOL),
        "stream": _nullable(_BOOL),
        "tools": _nullable({"type": "array", "items": _typed_or_other([function])}),
        "tool_choice": {"anyOf": [
            {"enum": ["auto", "none", "required"]},
            _typed("function", ("name",), name=_STRING),
            _typed("allowed_tools", ("tools",), mode={"enum": ["auto", "required"]},
                   tools=_OBJECTS),
            {"type": "null"}]},
        "text": _nullable(_object({"format": _nullable({"anyOf": [
            _typed("text"), _typed("json_object"), json_schema]})})),
        "reasoning": _nullable(_object({"effort": _nullable(_STRING)})),
        "max_output_tokens": _nullable(_POSITIVE),
        "temperature": _nullable(_NUMBER),
        "top_p": _nullable(_NUMBER),
        "parallel_tool_calls": _nullable(_BOOL),
        "metadata": _nullable(_ANY_OBJECT),
        "user": _nullable(_STRING),
        "background": _nullable({"const": False}),
    }, ("model", "input"))
    response = _object({
        "id": _STRING, "object": {"const": "response"}, "created_at": _INT, "status": _STRING,
        "model": _STRING, "output": _OBJECTS, "usage": _nullable(_ANY_OBJECT),
    }, ("id", "object", "status", "output"))
    items = _object({"object": {"const": "list"}, "data": _OBJECTS,
                     "first_id": _nullable(_STRING), "last_id": _nullable(_STRING),
                     "has_more": _BOOL}, ("object", "data", "has_more"))
    deleted = _object({"id": _STRING, "object": {"const": "response"},
                       "deleted": {"const": True}}, ("id", "object", "deleted"))
    return {"ResponseInputItem": item, "ResponsesRequest": request, "Response": response,
            "InputItemList": items, "DeletedResponse": deleted}


def _other_schemas() -> JSONDict:
    token_ids = {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1}
    embeddings = _object({
        "model": _MODEL,
        "input": {"anyOf": [
            _NON_EMPTY,
            {"type": "array", "items": _NON_EMPTY, "minItems": 1, "maxItems": 2048},
            token_ids,
            {"type": "array", "items": token_ids, "minItems": 1, "maxItems": 2048}]},
        "encoding_format": {"enum": ["float", "base64", None]},
        "dimensions": _nullable(_POSITIVE),
        "user": _STRING,
    }, ("model", "input"))
    completions = _object({
        "model": _MODEL,
        "prompt": {"anyOf": [_STRING, {"type": "array", "items": _STRING, "minItems": 1,
                                       "maxItems": 128}]},
        "echo": _nullable(_BOOL),
        "suffix": {"enum": [None, ""]},
        "logprobs": {"type": "null"},
        "stream": _nullable(_BOOL),
        "max_tokens": _nullable(_POSITIVE),
        "n": _nullable(_POSITIVE),
        "temperature": _nullable(_NUMBER),
        "top_p": _nullable(_NUMBER),
        "stop": {"anyOf": [_STRING, _STRINGS, {"type": "null"}]},
        "user": _STRING,
    }, ("model", "prompt"))
    feedback = _object({
        "request_id": _NON_EMPTY,
        "rating": {"type": "integer", "minimum": 1, "maximum": 5},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "correct": _BOOL,
        "preferred_over": _STRING,
    }, ("request_id",), extra=False, minProperties=2, maxProperties=2)
    model_entry = _object({"id": _STRING, "object": {"const": "model"},
                           "owned_by": _STRING, "routeyard": _ANY_OBJECT}, ("id", "object"))
    return {
        "EmbeddingsRequest": embeddings,
        "EmbeddingList": _object({"object": {"const": "list"}, "data": _OBJECTS,
                                  "model": _STRING, "usage": _ANY_OBJECT}, ("object", "data")),
        "CompletionRequest": completions,
        "TextCompletion": _object({"id": _STRING, "object": {"const": "text_completion"},
                                   "choices": _OBJECTS, "usage": _ANY_OBJECT},
                                  ("id", "object", "choices")),
        "RouteRequest": {"anyOf": [_ref("ChatCompletionRequest"),
                                   _object({"prompt": _STRING}, ("prompt",))]},
        "RouteResult": _object({"decision": _STRING, "model": _nullable(_STRING)}),
        "FeedbackRequest": feedback,
        "FeedbackResult": _ANY_OBJECT,
        "ModelList": _object({"object": {"const": "list"},
                              "data": {"type": "array", "items": model_entry}},
                             ("object", "data")),
        "Status": _object({"status": _STRING}, ("status",)),
        "Readiness": _object({"status": {"enum": ["ready", "degraded", "not_ready",
                                                  "draining"]},
                              "available_endpoints": _INT, "store": _STRING,
                              "store_ok": _BOOL}, ("status",)),
    }


# -- paths ---------------------------------------------------------------------------------------


def _response_id(name: str = "response_id") -> JSONDict:
    return {"name": name, "in": "path", "required": True, "schema": _STRING}


_INPUT_ITEM_QUERY = [
    {"name": "limit", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
    {"name": "order", "in": "query", "required": False, "schema": {"enum": ["asc", "desc"]}},
    {"name": "after", "in": "query", "required": False, "schema": _STRING},
]


def _query(name: str, schema: JSONDict) -> JSONDict:
    return {"name": name, "in": "query", "required": False, "schema": schema}


# The decision log's filters (routeyard/api/decisions.py): any string; times are ISO 8601 or
# unix seconds.
_LOG_FILTERS = [_query(name, _STRING) for name in
                ("since", "until", "decision", "model", "key", "tenant", "status", "surface")]
_LOG_PAGE = [*_LOG_FILTERS, _query("has_feedback", {"enum": ["true", "false", "1", "0"]}),
             _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
             _query("cursor", _STRING)]
_LOG_STATS = [*_LOG_FILTERS,
              _query("group_by", {"enum": ["model", "decision", "key", "tenant", "hour"]})]


def _paths() -> JSONDict:
    anthropic = "AnthropicError"
    return {
        "/v1/chat/completions": {"post": _operation(
            "Chat completion (routed), streamed as SSE chunks with `stream: true`",
            {**_ok(_ref("ChatCompletion"), events="ChatStreamEvent"), **_errors(_ROUTED)},
            body="ChatCompletionRequest")},
        "/v1/messages": {"post": _operation(
            "Anthropic Messages (routed), streamed as Anthropic events with `stream: true`",
            {**_ok(_ref("AnthropicMessage"), events="MessagesStreamEvent"),
             **_errors(_ROUTED, anthropic)},
            body="MessagesRequest", tag="anthropic")},
        "/v1/messages/count_tokens": {"post": _operation(
            "Count a Messages request's input tokens, offline",
            {**_ok(_ref("TokenCount")), **_errors(_BEFORE_ROUTING, anthropic)},
            body="CountTokensRequest", tag="anthropic")},
        "/v1/responses": {"post": _operation(
            "OpenAI Responses (routed; stored unless `store: false`)",
            {**_ok(_ref("Response"), events="ResponsesStreamEvent"), **_errors(_ROUTED)},
            body="ResponsesRequest")},
        "/v1/responses/{response_id}": {
            "parameters": [_response_id()],
            "get": _operation("A stored response", {
                **_ok(_ref("Response")), **_errors((400, 401, 404, 503))},
                parameters=[{"name": "stream", "in": "query", "required": False,
                             "schema": {"enum": ["false", "0"]}}]),
            "delete": _operation("Delete a stored response", {
                **_ok(_ref("DeletedResponse")), **_errors((401, 404, 503))}),
        },
        "/v1/responses/{response_id}/input_items": {
            "parameters": [_response_id()],
            "get": _operation("A stored response's input items, a cursor page", {
                **_ok(_ref("InputItemList")), **_errors((400, 401, 404, 503))},
                parameters=_INPUT_ITEM_QUERY),
        },
        "/v1/embeddings": {"post": _operation(
            "Embeddings, on the pool's embedding models",
            {**_ok(_ref("EmbeddingList")), **_errors(_ROUTED)}, body="EmbeddingsRequest")},
        "/v1/completions": {"post": _operation(
            "Legacy text completions, answered by chat models",
            {**_ok(_ref("TextCompletion"), events="CompletionStreamEvent"), **_errors(_ROUTED)},
            body="CompletionRequest")},
        "/v1/route": {"post": _operation(
            "Dry run: how a request would be routed (nothing is sent)",
            {**_ok(_ref("RouteResult")), **_errors(_BEFORE_ROUTING)}, body="RouteRequest",
            tag="routeyard")},
        "/v1/feedback": {"post": _operation(
            "Feedback for a served request (exactly one of rating, score, correct, "
            "preferred_over)",
            {**_ok(_ref("FeedbackResult")), **_errors((*_BEFORE_ROUTING, 409, 503))},
            body="FeedbackRequest", tag="routeyard")},
        "/v1/decisions": {"get": _operation(
            "The decision log, newest first, filtered, a cursor page (viewer role)",
            {**_ok(_ANY_OBJECT), **_errors((400, 401, 403, 503))}, tag="routeyard",
            parameters=_LOG_PAGE)},
        "/v1/decisions/{request_id}": {
            "parameters": [_response_id("request_id")],
            "get": _operation("One decision record, by request id (viewer role)", {
                **_ok(_ANY_OBJECT), **_errors((401, 403, 404, 503))}, tag="routeyard")},
        "/v1/stats": {"get": _operation(
            "Counts, tokens, cost, latency, cache, feedback and savings, grouped (viewer role)",
            {**_ok(_ANY_OBJECT), **_errors((400, 401, 403, 503))}, tag="routeyard",
            parameters=_LOG_STATS)},
        "/v1/models": {"get": _operation(
            "Aliases, model_routes patterns and models, with the surfaces each serves",
            {**_ok(_ref("ModelList")), **_errors((401,))})},
        "/healthz": {"get": _operation("Liveness", _ok(_ref("Status")), tag="operations")},
        "/readyz": {"get": _operation("Readiness", {
            **_ok(_ref("Readiness")),
            "503": {"description": "Not ready, or draining",
                    "content": {_JSON: {"schema": _ref("Readiness")}}}}, tag="operations")},
        "/openapi.json": {"get": _operation(
            "This document (the same key as /v1/models)",
            {**_ok(_ANY_OBJECT), **_errors((401,))}, tag="operations")},
        "/metrics": {"get": _operation("Prometheus metrics", {"200": {
            "description": "Prometheus text format",
            "content": {"text/plain": {"schema": _STRING}}}}, tag="operations")},
        "/": {
            "get": _operation("Base-URL probe", _ok(_ref("Status")), tag="operations"),
            "head": _operation("Base-URL probe", {"200": {"description": "OK"}},
                               tag="operations"),
        },
    }


def openapi_document() -> JSONDict:
    """The OpenAPI 3.1 document of every endpoint, as a dict (JSON-serialisable)."""
    schemas = {**_error_schemas(), **_event_schemas(), **_chat_schemas(),
               **_anthropic_schemas(), **_responses_schemas(), **_other_schemas()}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Routeyard", "version": _version(),
                 "description": "An LLM router that speaks OpenAI's and Anthropic's APIs. "
                 "Request bodies list the fields Routeyard checks; any other field passes "
                 "through to the backend."},
        "paths": _paths(),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "A key of `server.api_keys` (when set)."},
                "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key",
                              "description": "The same key, as the anthropic SDK sends it."},
            },
        },
        # No key is needed unless server.api_keys is set; /healthz, /readyz, /metrics and /
        # are always open. /openapi.json needs a key like /v1/models.
        "security": [{}, {"bearer": []}, {"x-api-key": []}],
    }


def _version() -> str:
    """The installed distribution's version (pyproject's), read from its metadata: importing
    the `routeyard` package for its `__version__` would be an import from above the HTTP
    edge's layer (tests/test_layers.py)."""
    try:
        return metadata.version("routeyard")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "0+unknown"


@functools.cache
def _rendered() -> bytes:
    return orjson.dumps(openapi_document())


async def openapi_json(_: Request) -> Response:
    """`GET /openapi.json`: this description, rendered once (it does not change at runtime:
    a reload changes the models, not the endpoints or their schemas)."""
    return Response(_rendered(), media_type=_JSON)


ROUTES = [Route("/openapi.json", openapi_json, methods=["GET"])]
