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

# Each shape checks only the keys Routeyard itself reads, on the way to routing or when a
# provider translates the body (the Anthropic adapter reads content parts, tool calls, tools,
# tool_choice and thinking); every other key passes through as it is.
_PASS_THROUGH = ConfigDict(extra="allow", strict=True)


@with_config(_PASS_THROUGH)
class ImageURL(TypedDict, total=False):
    url: Required[str]
    detail: str


@with_config(_PASS_THROUGH)
class FileRef(TypedDict, total=False):
    file_data: str
    file_id: str
    filename: str


@with_config(_PASS_THROUGH)
class ContentPart(TypedDict, total=False):
    type: Required[str]
    text: str
    refusal: str
    image_url: ImageURL | str  # OpenAI's object; a bare URL string is common too
    file: FileRef


@with_config(_PASS_THROUGH)
class FunctionCall(TypedDict, total=False):
    name: Required[str]
    arguments: str | dict[str, Any]  # a JSON string; some clients echo an object back


@with_config(_PASS_THROUGH)
class ToolCall(TypedDict, total=False):
    id: str
    type: str
    function: Required[FunctionCall]


@with_config(_PASS_THROUGH)
class ChatMessage(TypedDict, total=False):
    role: Required[Literal["system", "developer", "user", "assistant", "tool", "function"]]
    content: str | list[ContentPart] | None
    name: str
    tool_calls: list[ToolCall] | None
    tool_call_id: str
    thinking_blocks: list[dict[str, Any]] | None


@with_config(_PASS_THROUGH)
class StreamOptions(TypedDict, total=False):
    include_usage: bool


@with_config(_PASS_THROUGH)
class FunctionDef(TypedDict, total=False):
    name: Required[str]
    description: str | None
    parameters: dict[str, Any] | None


@with_config(_PASS_THROUGH)
class Tool(TypedDict, total=False):
    type: str
    function: FunctionDef  # absent on tool types other than "function"


@with_config(_PASS_THROUGH)
class NamedFunction(TypedDict, total=False):
    name: Required[str]


@with_config(_PASS_THROUGH)
class ToolChoice(TypedDict, total=False):
    type: Required[str]
    function: NamedFunction


@with_config(_PASS_THROUGH)
class Thinking(TypedDict, total=False):
    """Anthropic's thinking block, which clients aimed at Claude send on the chat surface."""

    type: Required[str]
    budget_tokens: int | None


@with_config(_PASS_THROUGH)
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
    tools: list[Tool] | None
    tool_choice: str | ToolChoice | None
    parallel_tool_calls: bool | None
    reasoning_effort: str | None
    response_format: dict[str, Any] | None
    thinking: Thinking | None
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
        param, message = _first_problem(error)
        raise InvalidRequest(message, param=param) from None
    # Validation only checks: the original dict (with every passthrough field) is kept.
    return data


# The names pydantic puts in an error's location for the member of a union that failed.
_UNION_TAGS = frozenset({"str", "int", "float", "bool", "none", "ImageURL", "FileRef",
                         "ContentPart", "FunctionCall", "ToolCall", "ToolChoice", "Thinking",
                         "StreamOptions"})


def _first_problem(error: ValidationError) -> tuple[str | None, str]:
    """The most specific problem (the deepest location: of a union's members, the one that
    got furthest), and how many other problems there are."""
    problems = []
    for item in error.errors():
        loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and ("[" in p
                                                                        or p in _UNION_TAGS)))
        problems.append((loc, str(item["msg"])))
    deepest = max(len(loc) for loc, _ in problems)
    loc = next(loc for loc, _ in problems if len(loc) == deepest)
    # Several members of a union failing at the same place: say each way it could be right.
    said = " or ".join(dict.fromkeys(msg for where, msg in problems if where == loc))
    others = sum(1 for where, _ in problems if where != loc and where != loc[:len(where)])
    param = format_location(loc) or None
    message = f"{param}: {said}" if param else said
    if others:
        message += f" (and {others} more problem(s))"
    return param, message


def wants_stream(body: dict[str, Any]) -> bool:
    return bool(body.get("stream"))


def wants_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return bool(options and options.get("include_usage"))
