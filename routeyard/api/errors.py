"""Rendering errors in each surface's own schema, for every failure the HTTP layer can meet.

OpenAI's: `{"error": {"message", "type", "param", "code"}}`. Anthropic's:
`{"type": "error", "error": {"type", "message"}}`. A request's surface is known from its path
(`ERROR_STYLES`), so even a 401 before routing or a 404 for a typo answers in the schema the
client's SDK parses.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from routeyard.errors import RouteyardError

log = logging.getLogger("routeyard.api")

_JSON = "application/json"
_OPENAI_TYPE_BY_STATUS = {400: "invalid_request_error", 401: "authentication_error",
                          403: "permission_error", 404: "invalid_request_error",
                          405: "invalid_request_error", 413: "invalid_request_error",
                          429: "rate_limit_error"}
# Anthropic's error types by status (docs.anthropic.com, "Errors").
_ANTHROPIC_TYPE_BY_STATUS = {400: "invalid_request_error", 401: "authentication_error",
                             403: "permission_error", 404: "not_found_error",
                             405: "invalid_request_error", 413: "request_too_large",
                             429: "rate_limit_error", 529: "overloaded_error"}


class ErrorStyle:
    """OpenAI's error schema; subclasses render another surface's."""

    def body(self, status: int, message: str, *, type_: str | None = None,
             code: str | None = None, param: str | None = None,
             extra: Mapping[str, object] | None = None) -> bytes:
        return orjson.dumps({"error": {
            "message": message, "type": type_ or _OPENAI_TYPE_BY_STATUS.get(status,
                                                                            "server_error"),
            "param": param, "code": code, **(extra or {})}})

    def response(self, status: int, message: str, *, type_: str | None = None,
                 code: str | None = None, param: str | None = None,
                 headers: Mapping[str, str] | None = None,
                 extra: Mapping[str, object] | None = None) -> Response:
        return Response(self.body(status, message, type_=type_, code=code, param=param,
                                  extra=extra),
                        status_code=status, headers=dict(headers or {}), media_type=_JSON)

    def for_error(self, error: RouteyardError,
                  extra_headers: Mapping[str, str] | None = None) -> Response:
        """`error.extra`, where an error has one (a session budget's figures), adds fields to
        the error object beside message, type, param and code."""
        return self.response(error.status, error.message, type_=error.type, code=error.code,
                             param=error.param, headers={**error.headers,
                                                         **(extra_headers or {})},
                             extra=getattr(error, "extra", None))


class AnthropicErrorStyle(ErrorStyle):
    def body(self, status: int, message: str, *, type_: str | None = None,
             code: str | None = None, param: str | None = None,
             extra: Mapping[str, object] | None = None) -> bytes:
        # Anthropic's types are few and fixed: ours (an OpenAI type) is mapped by status.
        kind = _ANTHROPIC_TYPE_BY_STATUS.get(status, "api_error")
        return orjson.dumps({"type": "error", "error": {"type": kind, "message": message,
                                                        **(extra or {})}})


OPENAI = ErrorStyle()
ANTHROPIC = AnthropicErrorStyle()

# Path prefix → style; the longest matching prefix wins, OpenAI's is the default.
ERROR_STYLES: dict[str, ErrorStyle] = {"/v1/messages": ANTHROPIC}


def style_for(path: str) -> ErrorStyle:
    for prefix, style in ERROR_STYLES.items():
        if path.startswith(prefix):
            return style
    return OPENAI


def error_response(status: int, message: str, *, type_: str | None = None,
                   code: str | None = None, param: str | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    """In OpenAI's schema (the chat surface, health and admin paths)."""
    return OPENAI.response(status, message, type_=type_, code=code, param=param,
                           headers=headers)


def routeyard_error_response(error: RouteyardError,
                             extra_headers: dict[str, str] | None = None) -> Response:
    return OPENAI.for_error(error, extra_headers)


async def handle_routeyard_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RouteyardError)
    return style_for(request.url.path).for_error(exc)


async def handle_store_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("store unavailable: %s", exc)
    return style_for(request.url.path).response(
        503, "The state store is unavailable; try again shortly.", code="store_unavailable")


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    message = {404: "No such endpoint. See GET /v1/models and docs/api.md for the surfaces.",
               405: "Method not allowed on this endpoint."}.get(exc.status_code, str(exc.detail))
    return style_for(request.url.path).response(exc.status_code, message, code=code)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    # A bug of ours: log the traceback, but never send it to the client.
    log.exception("unhandled error", exc_info=exc)
    return style_for(request.url.path).response(
        500, "Internal error in Routeyard; the request was not completed.",
        code="internal_error")
