"""The OpenAI Responses API ⇄ the internal form (an OpenAI chat body and `chat.completion`):
pure functions, no I/O, so that the translation can be measured alone.

    turn = translate_request(data, history)       # Responses request → Turn (turn.body: chat)
    response = response_from_completion(turn, completion, model)   # answer → Response object

A stream's chunks become Responses events in `responses_events.py`, with the item builders and
`response_object` from here. `history` is the stored conversation of `previous_response_id`, as
the chat messages the backend saw (without their instructions: OpenAI does not carry those over).

Only what a chat backend can carry is translated: function tools (others, such as `web_search`,
`local_shell`, `custom` or `namespace`, are left out of the request), messages, function calls
and their outputs. Fields Routeyard cannot carry are dropped with a DEBUG log; features it cannot
honour at all (`background`, `conversation`, `prompt`) are a clean 400.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from routeyard.errors import InvalidRequest

log = logging.getLogger("routeyard.api.responses")

JSONDict = dict[str, Any]


def new_id(prefix: str) -> str:
    """`resp_`, `msg_`, `fc_`, ... + 160 random bits: unguessable, so a stored response's id
    is not enough to reach it without its owner's key either way."""
    return f"{prefix}_{secrets.token_hex(20)}"


@dataclass(slots=True)
class Turn:
    """One translated Responses request."""

    body: JSONDict  # the internal chat body: instructions, history, this turn's messages
    messages: list[JSONDict]  # this turn's input as chat messages (no instructions)
    input_items: list[JSONDict]  # this turn's input items with ids (only built when stored)
    echo: JSONDict  # the request fields every Response object repeats
    store: bool
    stream: bool
    response_id: str = field(default_factory=lambda: new_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))


# -- type checks with located messages ----------------------------------------------------

_KINDS = {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
          dict: "an object", list: "an array", type(None): "null"}


def _kind(value: Any) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def _bad(param: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(f"{param}: expected {expected}, got {_kind(value)}", param=param)


def _string(value: Any, param: str) -> str:
    if type(value) is not str:
        raise _bad(param, "a string", value)
    return value


def _object(value: Any, param: str) -> JSONDict:
    if type(value) is not dict:
        raise _bad(param, "an object", value)
    return value


def _number(value: Any, param: str) -> float:
    if type(value) is not float and type(value) is not int:
        raise _bad(param, "a number", value)
    return value


def _positive_int(value: Any, param: str) -> int:
    if type(value) is not int or value < 1:
        raise InvalidRequest(f"{param}: expected an integer ≥ 1, got {value!r}"
                             if type(value) is int else
                             f"{param}: expected an integer ≥ 1, got {_kind(value)}", param=param)
    return value


def _bool(value: Any, param: str) -> bool:
    if type(value) is not bool:
        raise _bad(param, "a boolean", value)
    return value


# -- content parts ----------------------------------------------------------------------------

def _text_part(part: JSONDict, param: str) -> JSONDict:
    return {"type": "text", "text": _string(part.get("text"), f"{param}.text")}


def _image_part(part: JSONDict, param: str) -> JSONDict:
    url = part.get("image_url")
    if url is None:
        if part.get("file_id") is not None:
            raise InvalidRequest(f"{param}.file_id: file references need OpenAI's Files API; "
                                 "send the image as `image_url` (a URL or a data URL)",
                                 param=f"{param}.file_id", code="unsupported_parameter")
        raise InvalidRequest(f"{param}.image_url: required", param=f"{param}.image_url")
    image: JSONDict = {"url": _string(url, f"{param}.image_url")}
    detail = part.get("detail")
    if detail is not None:
        image["detail"] = _string(detail, f"{param}.detail")
    return {"type": "image_url", "image_url": image}


def _file_part(part: JSONDict, param: str) -> JSONDict:
    data = part.get("file_data")
    if data is None:
        raise InvalidRequest(f"{param}.file_data: required (file_id and file_url need OpenAI's "
                             "Files API)", param=f"{param}.file_data",
                             code="unsupported_parameter")
    file: JSONDict = {"file_data": _string(data, f"{param}.file_data")}
    if part.get("filename") is not None:
        file["filename"] = _string(part["filename"], f"{param}.filename")
    return {"type": "file", "file": file}


def _audio_part(part: JSONDict, param: str) -> JSONDict:
    return {"type": "input_audio", "input_audio": _object(part.get("input_audio"),
                                                          f"{param}.input_audio")}


# Responses content part type → the chat content part. `refusal` is the assistant's own field.
_PARTS: dict[str, Callable[[JSONDict, str], JSONDict]] = {
    "input_text": _text_part, "output_text": _text_part, "text": _text_part,
    "input_image": _image_part, "input_file": _file_part, "input_audio": _audio_part,
}


def _chat_content(content: Any, param: str) -> tuple[str | list[JSONDict], str | None]:
    """A message's content → (chat content: a string when it is all one text, refusal)."""
    if type(content) is str:
        return content, None
    if type(content) is not list:
        raise _bad(param, "a string or an array of content parts", content)
    parts: list[JSONDict] = []
    refusal = None
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        kind = _string(_object(part, where).get("type"), f"{where}.type")
        if kind == "refusal":
            refusal = _string(part.get("refusal"), f"{where}.refusal")
            continue
        convert = _PARTS.get(kind)
        if convert is None:
            raise InvalidRequest(f"{where}.type: unknown content part type {kind!r} (known: "
                                 f"{', '.join(sorted({*_PARTS, 'refusal'}))})",
                                 param=f"{where}.type")
        parts.append(convert(part, where))
    if len(parts) == 1 and parts[0]["type"] == "text":
        return parts[0]["text"], refusal
    return parts, refusal


def _stored_content(content: Any, role: str) -> Any:
    """A message's content as a stored input item lists it (a string becomes one part)."""
    if type(content) is str:
        kind = "output_text" if role == "assistant" else "input_text"
        part: JSONDict = {"type": kind, "text": content}
        if role == "assistant":
            part["annotations"] = []
        return [part]
    return content


# -- input items ------------------------------------------------------------------------------

_ROLES = {"user": "user", "assistant": "assistant", "system": "system",
          "developer": "system"}  # "system" is what every chat backend takes


class _Input:
    """Builds this turn's chat messages (and its stored items) from the input items."""

    def __init__(self, history: Sequence[JSONDict], keep_items: bool) -> None:
        self.history = history
        self.keep_items = keep_items
        self.messages: list[JSONDict] = []
        self.items: list[JSONDict] = []
        self.dropped: list[str] = []
        self._call_ids: set[str] | None = None  # of calls so far; built on first use
        self._id_base = ""

    def keep(self, item: JSONDict, prefix: str) -> None:
        if not self.keep_items:
            return
        if "id" not in item:
            # Unique, not secret (the response's own id is): one random draw per turn.
            if not self._id_base:
                self._id_base = secrets.token_hex(16)
            item = {"id": f"{prefix}_{self._id_base}{len(self.items):04x}", **item}
        self.items.append(item)

    def call_ids(self) -> set[str]:
        if self._call_ids is None:
            self._call_ids = {call.get("id") for message in self.history
                              for call in message.get("tool_calls") or ()}
        return self._call_ids

    def assistant_for_call(self) -> JSONDict:
        """The assistant message a function call joins: the last one when it is the latest
        message (parallel calls, or a text answer followed by calls), else a new one."""
        if self.messages and self.messages[-1]["role"] == "assistant":
            return self.messages[-1]
        message: JSONDict = {"role": "assistant", "content": None}
        self.messages.append(message)
        return message


def _message_item(build: _Input, item: JSONDict, param: str) -> None:
    role = _string(item.get("role"), f"{param}.role")
    chat_role = _ROLES.get(role)
    if chat_role is None:
        raise InvalidRequest(f"{param}.role: expected one of assistant, developer, system, user, "
                             f"got {role!r}", param=f"{param}.role")
    if "content" not in item:
        raise InvalidRequest(f"{param}.content: required", param=f"{param}.content")
    content, refusal = _chat_content(item["content"], f"{param}.content")
    message: JSONDict = {"role": chat_role, "content": content}
    if refusal is not None and chat_role == "assistant":
        message["refusal"] = refusal
    build.messages.append(message)
    if build.keep_items:
        stored = {**item, "type": "message",
                  "content": _stored_content(item["content"], role)}
        stored.setdefault("status", "completed")
        build.keep(stored, "msg")


def _function_call_item(build: _Input, item: JSONDict, param: str) -> None:
    call_id = _string(item.get("call_id"), f"{param}.call_id")
    name = _string(item.get("name"), f"{param}.name")
    arguments = _string(item.get("arguments"), f"{param}.arguments")
    message = build.assistant_for_call()
    message.setdefault("tool_calls", []).append(
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})
    build.call_ids().add(call_id)
    if build.keep_items:
        build.keep({**item, "status": item.get("status") or "completed"}, "fc")


def _function_output_item(build: _Input, item: JSONDict, param: str) -> None:
    call_id = _string(item.get("call_id"), f"{param}.call_id")
    if call_id not in build.call_ids():
        raise InvalidRequest(f"{param}: no function_call with call_id {call_id!r} comes before "
                             "this function_call_output (in this input or the previous "
                             "response)", param=f"{param}.call_id")
    output = item.get("output")
    if type(output) is str:
        content: Any = output
    elif type(output) is list:
        content, _ = _chat_content(output, f"{param}.output")
    else:
        raise _bad(f"{param}.output", "a string or an array of content parts", output)
    build.messages.append({"role": "tool", "tool_call_id": call_id, "content": content})
    if build.keep_items:
        build.keep({**item, "status": item.get("status") or "completed"}, "fco")


def _dropped_item(build: _Input, item: JSONDict, param: str) -> None:
    # Reasoning (often encrypted, for OpenAI only) and calls of tool types that are never sent
    # to a chat backend: nothing a chat backend could read. Listed as input items all the same.
    build.dropped.append(f"{param} ({item['type']})")
    build.keep(item, "item")


def _item_reference(build: _Input, item: JSONDict, param: str) -> None:
    raise InvalidRequest(f"{param}: item_reference is not supported; send the item itself, or "
                         "chain with previous_response_id", param=param,
                         code="unsupported_parameter")


_ITEMS: dict[str, Callable[[_Input, JSONDict, str], None]] = {
    "message": _message_item,
    "function_call": _function_call_item,
    "function_call_output": _function_output_item,
    "item_reference": _item_reference,
    **dict.fromkeys((
        "reasoning", "custom_tool_call", "custom_tool_call_output", "local_shell_call",
        "local_shell_call_output", "shell_call", "shell_call_output", "web_search_call",
        "file_search_call", "computer_call", "computer_call_output", "image_generation_call",
        "code_interpreter_call", "mcp_call", "mcp_list_tools", "mcp_approval_request",
        "mcp_approval_response", "apply_patch_call", "apply_patch_call_output",
        "tool_search_call", "tool_search_output", "compaction"), _dropped_item),
}


def _input(value: Any, build: _Input) -> None:
    if type(value) is str:
        build.messages.append({"role": "user", "content": value})
        build.keep({"type": "message", "role": "user", "status": "completed",
                    "content": [{"type": "input_text", "text": value}]}, "msg")
        return
    if type(value) is not list:
        raise _bad("input", "a string or an array of input items", value)
    for index, item in enumerate(value):
        param = f"input[{index}]"
        kind = _object(item, param).get("type")
        if kind is None and "role" in item:
            kind = "message"  # the easy form: {"role", "content"}
        handler = _ITEMS.get(_string(kind, f"{param}.type"))
        if handler is None:
            raise InvalidRequest(f"{param}.type: unknown input item type {kind!r}",
                                 param=f"{param}.type")
        handler(build, item, param)


# -- tools, text format, the other fields ---------------------------------------------------

@dataclass(slots=True)
class _Body:
    """The chat body's fields beside model and messages, as the request's fields are read."""

    fields: JSONDict = field(default_factory=dict)
    tools: list[JSONDict] = field(default_factory=list)
    tool_choice: Any = None
    dropped: list[str] = field(default_factory=list)


def _function_tool(tool: JSONDict, param: str) -> JSONDict:
    function: JSONDict = {"name": _string(tool.get("name"), f"{param}.name")}
    if not function["name"]:
        raise InvalidRequest(f"{param}.name: must not be empty", param=f"{param}.name")
    if tool.get("description") is not None:
        function["description"] = _string(tool["description"], f"{param}.description")
    if tool.get("parameters") is not None:
        function["parameters"] = _object(tool["parameters"], f"{param}.parameters")
    if tool.get("strict") is not None:
        function["strict"] = _bool(tool["strict"], f"{param}.strict")
    return {"type": "function", "function": function}


def _tools(value: Any, body: _Body) -> None:
    if type(value) is not list:
        raise _bad("tools", "an array of tools", value)
    for index, tool in enumerate(value):
        param = f"tools[{index}]"
        kind = _string(_object(tool, param).get("type"), f"{param}.type")
        if kind == "function":
            body.tools.append(_function_tool(tool, param))
        else:  # hosted or client tool types a chat backend cannot run: left out
            body.dropped.append(f"{param} ({kind})")


def _tool_choice(value: Any, body: _Body) -> None:
    if type(value) is str:
        if value not in ("auto", "none", "required"):
            raise InvalidRequest(f"tool_choice: expected auto, none or required, got {value!r}",
                                 param="tool_choice")
        body.tool_choice = value
        return
    kind = _string(_object(value, "tool_choice").get("type"), "tool_choice.type")
    if kind == "function":
        name = _string(value.get("name"), "tool_choice.name")
        body.tool_choice = {"type": "function", "function": {"name": name}}
    elif kind == "allowed_tools":
        mode = value.get("mode", "auto")
        if mode not in ("auto", "required"):
            raise InvalidRequest("tool_choice.mode: expected auto or required",
                                 param="tool_choice.mode")
        tools = value.get("tools")
        if type(tools) is not list:
            raise _bad("tool_choice.tools", "an array of tools", tools)
        names = {t.get("name") for t in tools if type(t) is dict and t.get("type") == "function"}
        body.tool_choice = ("allowed", mode, names)
    else:  # a hosted tool's choice: that tool is not sent
        body.dropped.append(f"tool_choice ({kind})")


def _finish_tools(body: _Body) -> None:
    """Tools, tool_choice and parallel_tool_calls of the chat body, once all are read. A chat
    backend rejects a tool_choice or parallel_tool_calls without tools."""
    choice = body.tool_choice
    tools = body.tools
    if type(choice) is tuple:  # allowed_tools: only those tools, with its mode
        _, mode, names = choice
        tools = [t for t in tools if t["function"]["name"] in names]
        choice = mode
    if not tools:
        body.fields.pop("parallel_tool_calls", None)
        return
    body.fields["tools"] = tools
    if choice is not None:
        body.fields["tool_choice"] = choice


def _text_format(value: Any, body: _Body) -> None:
    text = _object(value, "text")
    if text.get("verbosity") is not None:
        body.dropped.append("text.verbosity")
    if text.get("format") is None:
        return
    fmt = _object(text["format"], "text.format")
    kind = _string(fmt.get("type"), "text.format.type")
    if kind == "json_schema":
        schema: JSONDict = {"name": _string(fmt.get("name"), "text.format.name"),
                            "schema": _object(fmt.get("schema"), "text.format.schema")}
        if fmt.get("strict") is not None:
            schema["strict"] = _bool(fmt["strict"], "text.format.strict")
        if fmt.get("description") is not None:
            schema["description"] = _string(fmt["description"], "text.format.description")
        body.fields["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif kind == "json_object":
        body.fields["response_format"] = {"type": "json_object"}
    elif kind != "text":
        raise InvalidRequest(f"text.format.type: expected text, json_schema or json_object, got "
                             f"{kind!r}", param="text.format.type")


def _reasoning(value: Any, body: _Body) -> None:
    reasoning = _object(value, "reasoning")
    if reasoning.get("effort") is not None:
        body.fields["reasoning_effort"] = _string(reasoning["effort"], "reasoning.effort")
    if reasoning.get("summary") is not None or reasoning.get("generate_summary") is not None:
        body.dropped.append("reasoning.summary")  # a chat backend streams its reasoning as is


def _copy(name: str, check: Callable[[Any, str], Any], to: str | None = None
          ) -> Callable[[Any, _Body], None]:
    """A field the chat body has too (under `to`), checked by `check`."""
    def apply(value: Any, body: _Body) -> None:
        body.fields[to or name] = check(value, name)
    return apply


def _dropped(name: str) -> Callable[[Any, _Body], None]:
    def apply(value: Any, body: _Body) -> None:
        body.dropped.append(name)
    return apply


def _refused(name: str, why: str) -> Callable[[Any, _Body], None]:
    def apply(value: Any, body: _Body) -> None:
        if value is not False:
            raise InvalidRequest(f"{name}: {why}", param=name, code="unsupported_parameter")
    return apply


def _read_elsewhere(value: Any, body: _Body) -> None:
    return None


# Every request field: what it becomes in the chat body. Unknown fields are dropped (DEBUG).
_FIELDS: dict[str, Callable[[Any, _Body], None]] = {
    **dict.fromkeys(("model", "input", "instructions", "previous_response_id", "store",
                     "stream"), _read_elsewhere),
    "tools": _tools,
    "tool_choice": _tool_choice,
    "text": _text_format,
    "reasoning": _reasoning,
    "parallel_tool_calls": _copy("parallel_tool_calls", _bool),
    "max_output_tokens": _copy("max_output_tokens", _positive_int, "max_tokens"),
    "temperature": _copy("temperature", _number),
    "top_p": _copy("top_p", _number),
    "metadata": _copy("metadata", _object),
    "user": _copy("user", _string),
    # Not sent on: OpenAI-only fields that stricter chat servers reject as unknown.
    **{name: _dropped(name) for name in (
        "include", "truncation", "service_tier", "top_logprobs", "max_tool_calls",
        "stream_options", "prompt_cache_retention", "prompt_cache_key", "safety_identifier")},
    "background": _refused("background", "background responses are not supported; send the "
                           "request without it (streaming works)"),
    "conversation": _refused("conversation", "conversations are not supported; chain "
                             "responses with previous_response_id"),
    "prompt": _refused("prompt", "stored prompt templates are not supported"),
}


def previous_response_id(data: Any) -> str | None:
    """The request's `previous_response_id`, read before the rest (its conversation is
    loaded first)."""
    if type(data) is not dict:
        raise InvalidRequest("the request body must be a JSON object")
    value = data.get("previous_response_id")
    return None if value is None else _string(value, "previous_response_id")


def translate_request(data: Any, history: Sequence[JSONDict] = (), *,
                      keep_items: bool = True) -> Turn:
    """A Responses request → the internal chat body and what the Response echoes.
    `keep_items`: build the input items with ids (only a stored response needs them)."""
    if type(data) is not dict:
        raise InvalidRequest("the request body must be a JSON object")
    model = data.get("model")
    if type(model) is not str or not model:
        raise InvalidRequest("model: required, a non-empty string", param="model")
    store = data.get("store")
    store = True if store is None else _bool(store, "store")
    stream = data.get("stream")
    stream = False if stream is None else _bool(stream, "stream")
    if "input" not in data or data["input"] is None:
        raise InvalidRequest("input: required, a string or an array of input items",
                             param="input")
    body = _Body()
    for name, value in data.items():
        rule = _FIELDS.get(name)
        if rule is None:
            body.dropped.append(name)
        elif value is not None:
            rule(value, body)
    _finish_tools(body)
    build = _Input(history, keep_items and store)
    _input(data["input"], build)
    instructions = data.get("instructions")
    head: list[JSONDict] = []
    if instructions is not None:
        head.append({"role": "system", "content": _string(instructions, "instructions")})
    messages = [*head, *history, *build.messages]
    if not messages:
        raise InvalidRequest("input: the conversation is empty; give at least one message",
                             param="input")
    if (body.dropped or build.dropped) and log.isEnabledFor(logging.DEBUG):
        log.debug("responses: not carried to the chat backend: %s",
                  ", ".join(body.dropped + build.dropped))
    chat: JSONDict = {"model": model, "messages": messages, **body.fields}
    if stream:
        chat["stream"] = True
    return Turn(chat, build.messages, build.items, _echo(data, store), store, stream)


def _echo(data: JSONDict, store: bool) -> JSONDict:
    """The request fields a Response object repeats, with OpenAI's defaults."""
    text = data.get("text")
    reasoning = data.get("reasoning") or {}
    return {
        "instructions": data.get("instructions"),
        "max_output_tokens": data.get("max_output_tokens"),
        "metadata": data.get("metadata") or {},
        "parallel_tool_calls": data.get("parallel_tool_calls") is not False,
        "previous_response_id": data.get("previous_response_id"),
        "prompt_cache_key": data.get("prompt_cache_key"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "safety_identifier": data.get("safety_identifier"),
        "store": store,
        "temperature": data.get("temperature"),
        "text": {**text, "format": text.get("format") or {"type": "text"}} if text
        else {"format": {"type": "text"}},
        "tool_choice": data.get("tool_choice") or "auto",
        "tools": data.get("tools") or [],
        "top_p": data.get("top_p"),
        "truncation": data.get("truncation") or "disabled",
        "user": data.get("user"),
        "background": False,
    }
