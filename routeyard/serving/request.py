"""Validation of the chat request: the few fields Routeyard reads must have the right types.

Everything else passes through untouched to the backend (extra keys are allowed), so new
OpenAI parameters work without a Routeyard release.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal, NotRequired, Required

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, with_config

# pydantic needs typing_extensions.TypedDict before Python 3.12.
from typing_extensions import TypedDict

from routeyard.config.loader import format_location
from routeyard.errors import InvalidRequest


@with_config(ConfigDict(extra="allow", strict=True))
class ChatMessage(TypedDict, total=False):
    role: Required[Literal["system", "developer", "user", "assistant", "tool", "function"]]
    content: str | list[dict[str, Any]] | None
    name: str


@with_config(ConfigDict(extra="allow", strict=True))
class StreamOptions(TypedDict, total=False):
    include_usage: bool


@with_config(ConfigDict(extra="allow", strict=True))
class ChatRequest(TypedDict, total=False):
    model: Required[Annotated[str, Field(min_length=1)]]
    messages: Required[Annotated[list[ChatMessage], Field(min_length=1)]]
    stream: bool | None
    stream_options: StreamOptions | None
    max_tokens: Annotated[int, Field(ge=1)] | None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None
    n: Annotated[int, Field(ge=1)] | None
    temperature: float | None
    top_p: float | None
    stop: str | list[str] | None
    tools: list[dict[str, Any]] | None
    user: str
    metadata: NotRequired[dict[str, Any] | None]


@cache
def _chat_request_adapter() -> TypeAdapter[ChatRequest]:
    # Built on first use: schema building costs milliseconds that `--help` should not pay.
    return TypeAdapter(ChatRequest)


def validate_chat_request(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object")
    try:
        _chat_request_adapter().validate_python(data)
    except ValidationError as error:
        first = error.errors()[0]
        loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and "[" in p))
        param = format_location(loc) or None
        message = f"{param}: {first['msg']}" if param else str(first["msg"])
        if len(error.errors()) > 1:
            message += f" (and {len(error.errors()) - 1} more problem(s))"
        raise InvalidRequest(message, param=param) from None
    # Validation only checks: the original dict (with every passthrough field) is kept.
    return data


def wants_stream(body: dict[str, Any]) -> bool:
    return bool(body.get("stream"))


def wants_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return bool(options and options.get("include_usage"))
