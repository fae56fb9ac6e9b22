"""Rendering errors in the OpenAI error schema, for every failure the HTTP layer can meet."""

from __future__ import annotations

import logging

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from routeyard.errors import RouteyardError

log = logging.getLogger("routeyard.api")

_TYPE_BY_STATUS = {400: "invalid_request_error", 401: "authentication_error",
                   403: "permission_error", 404: "invalid_request_error",
                   405: "invalid_request_error", 413: "invalid_request_error",
                   429: "rate_limit_error"}


def error_response(status: int, message: str, *, type_: str | None = None,
                   code: str | None = None, param: str | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"message": message,
                      "type": type_ or _TYPE_BY_STATUS.get(status, "server_error"),
                      "param": param, "code": code}}
    return Response(orjson.dumps(body), status_code=status, headers=headers,
                    media_type="application/json")


def routeyard_error_response(error: RouteyardError,
                             extra_headers: dict[str, str] | None = None) -> Response:
    headers = {**error.headers, **(extra_headers or {})}
    return Response(orjson.dumps(error.body()), status_code=error.status, headers=headers,
                    media_type="application/json")


async def handle_routeyard_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RouteyardError)
    return routeyard_error_response(exc)


async def handle_store_unavailable(_: Request, exc: Exception) -> Response:
    log.warning("store unavailable: %s", exc)
    return error_response(503, "The state store is unavailable; try again shortly.",
                          code="store_unavailable")


async def handle_http_exception(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    message = {404: "No such endpoint. See the OpenAI API: /v1/chat/completions, /v1/models.",
               405: "Method not allowed on this endpoint."}.get(exc.status_code, str(exc.detail))
    return error_response(exc.status_code, message, code=code)


async def handle_unexpected(_: Request, exc: Exception) -> Response:
    # A bug of ours: log the traceback, but never send it to the client.
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "Internal error in Routeyard; the request was not completed.",
                          code="internal_error")
