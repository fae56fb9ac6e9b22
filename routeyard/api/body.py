"""Reading a request body as JSON at the edge: size limit, a clean disconnect, and a depth limit.

orjson parses JSON nested up to 1,024 levels, but serialises at most 254, so a body nested
deeper than that in any pass-through field (`metadata`, `tools`, content parts, unknown keys)
used to parse here and fail later, toward the backend, as a 500. The depth is bounded here
instead, far below what serialising (plus a translation's few extra levels) can take.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from routeyard.errors import ClientDisconnected, InvalidRequest, PayloadTooLarge

MAX_JSON_DEPTH = 128  # no real request comes near; JSON schemas of tools nest ~10-20 levels


async def read_json(request: Request) -> Any:
    """The body as JSON, or a client error: too large (413), empty, invalid or too deep (400)."""
    limit: int = request.app.state.max_body_bytes
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(
                    f"The request body is larger than the limit of {limit} bytes.")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientDisconnected("The client closed the connection while sending the body.",
                                 ) from None
    raw = b"".join(chunks)
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidRequest(f"The request body is not valid JSON: {error}") from None
    # A body of n bytes nests at most n/2 levels: small bodies skip the walk.
    if len(raw) > 2 * MAX_JSON_DEPTH and nested_deeper_than(data, MAX_JSON_DEPTH):
        raise InvalidRequest(f"The request body is nested more than {MAX_JSON_DEPTH} levels "
                             f"deep; the limit is {MAX_JSON_DEPTH}.", code="json_too_deep")
    return data


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` levels (the top level is one)."""
    if limit <= 0:
        return type(value) is dict or type(value) is list
    kind = type(value)
    if kind is dict:
        children = value.values()
    elif kind is list:
        children = value
    else:
        return False
    for child in children:
        child_kind = type(child)
        if (child_kind is dict or child_kind is list) and nested_deeper_than(child, limit - 1):
            return True
    return False
