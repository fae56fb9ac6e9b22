"""Anthropic Messages requests → the internal form (an OpenAI chat-completions body).

Pure functions, so that their cost can be measured on their own: `to_internal_request` checks
and translates a parsed body, `count_input_tokens` counts a translated one offline. The
/v1/messages surface keeps the client's own body beside the translation (`WithNative`), so an
Anthropic-protocol backend gets it as written; the translation is what OpenAI-protocol backends
get, and what signals, decisions and plugins read.

What is carried (Anthropic → OpenAI):
- `system` (a string or text blocks) and `role: "system"` entries in `messages` → system messages;
- text → text parts; images (base64 or URL) → `image_url` parts; base64 PDFs → `file` parts;
  a block's `cache_control` → its part's `cache_control`;
- `tool_use` → `tool_calls`; each `tool_result` → a `tool` message (an error result's text starts
  with "Error: "; images in a result follow in a user message);
- `thinking` / `redacted_thinking` → the assistant message's `thinking_blocks`;
- custom `tools` → function tools; `tool_choice`; `stop_sequences` → `stop`;
  `metadata.user_id` → `user` (the `metadata` kept too); an enabled `thinking` budget →
  `reasoning_effort`.
Anything else (server tools, `context_management`, adaptive thinking, `output_config`, block
types without an OpenAI form) only an Anthropic-protocol backend can use: it is left out here,
with a DEBUG log.

Only an explicit thinking budget becomes a reasoning_effort: the planner sends a request with one
to reasoning-capable models only, and adaptive thinking (Claude Code sends it, with an
`output_config.effort`, on every request) lets the model think or not, which any model does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import orjson

from routeyard.errors import InvalidRequest
from routeyard.tokens import count_prompt_tokens, count_text_tokens

log = logging.getLogger("routeyard.api.anthropic")

Part = dict[str, Any]
Message = dict[str, Any]

# The top-level fields the translation reads; the others are logged as left out.
TRANSLATED_FIELDS = frozenset({
    "model", "messages", "system", "max_tokens", "stream", "stop_sequences", "temperature",
    "top_p", "top_k", "metadata", "tools", "tool_choice", "thinking"})

# Anthropic tool_choice type → OpenAI's (type "tool" names a function instead).
TOOL_CHOICES: dict[str, str] = {"auto": "auto", "any": "required", "none": "none"}

# A thinking budget → the effort whose budget the Anthropic provider maps back to at most it
# (routeyard.pool.providers.anthropic.EFFORT_BUDGETS), largest first.
BUDGET_EFFORTS: tuple[tuple[int, str], ...] = ((16384, "high"), (4096, "medium"), (0, "low"))


def _invalid(param: str, problem: str) -> NoReturn:
    raise InvalidRequest(f"{param}: {problem}", param=param)


def _left_out(param: str, what: object) -> None:
    log.debug("anthropic request: %s (%s) has no OpenAI form; only Anthropic backends get it",
              param, what)


def _text_of(value: Any, param: str) -> str:
    if not isinstance(value, str):
        _invalid(param, "must be a string")
    return value


def _object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        _invalid(param, "must be an object")
    return value


def _block_type(block: Any, param: str) -> str:
    kind = _object(block, param).get("type")
    if not isinstance(kind, str):
        _invalid(f"{param}.type", "must be a string")
    return kind


def _blocks(content: Any, param: str) -> list[Any]:
    if not isinstance(content, list):
        _invalid(param, "must be a string or a list of content blocks")
    return content


def _with_cache_control(part: Part, block: dict[str, Any]) -> Part:
    if "cache_control" in block:
        part["cache_control"] = block["cache_control"]
    return part


def _content(parts: list[Part]) -> str | list[Part]:
    """One plain text part as a string (what every OpenAI server takes), else the parts."""
    if len(parts) == 1 and parts[0]["type"] == "text" and len(parts[0]) == 2:
        return str(parts[0]["text"])
    return parts


# --- content blocks → OpenAI parts ------------------------------------------------------------


def _text_part(block: dict[str, Any], param: str) -> Part:
    return {"type": "text", "text": _text_of(block.get("text"), f"{param}.text")}


def _data_url(source: dict[str, Any], param: str) -> str:
    media_type, data = source.get("media_type"), source.get("data")
    if not isinstance(media_type, str) or not isinstance(data, str):
        _invalid(f"{param}.source", "a base64 source needs string `media_type` and `data`")
    return f"data:{media_type};base64,{data}"


def _image_part(block: dict[str, Any], param: str) -> Part | None:
    source = _object(block.get("source"), f"{param}.source")
    kind = source.get("type")
    if kind == "base64":
        url = _data_url(source, param)
    elif kind == "url":
        url = _text_of(source.get("url"), f"{param}.source.url")
    else:  # e.g. a Files API id: only Anthropic can read it
        _left_out(f"{param}.source", kind)
        return None
    return {"type": "image_url", "image_url": {"url": url}}


def _document_part(block: dict[str, Any], param: str) -> Part | None:
    source = _object(block.get("source"), f"{param}.source")
    kind = source.get("type")
    if kind == "base64":
        file: dict[str, Any] = {"file_data": _data_url(source, param)}
        if isinstance(block.get("title"), str):
            file["filename"] = block["title"]
        return {"type": "file", "file": file}
    if kind == "text":
        return {"type": "text", "text": _text_of(source.get("data"), f"{param}.source.data")}
    _left_out(f"{param}.source", kind)
    return None


# User content block type → its OpenAI part (None: left out). tool_result is a message of its
# own, handled by `_tool_result`.
USER_PARTS: dict[str, Callable[[dict[str, Any], str], Part | None]] = {
    "text": _text_part,
    "image": _image_part,
    "document": _document_part,
}


def _text_parts(content: Any, param: str) -> list[Part]:
    """System content: a string or text blocks (other blocks are left out)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    parts = []
    for index, block in enumerate(_blocks(content, param)):
        where = f"{param}[{index}]"
        kind = _block_type(block, where)
        if kind == "text":
            parts.append(_with_cache_control(_text_part(block, where), block))
        else:
            _left_out(where, kind)
    return parts


# --- messages --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Turns:
    """The translated messages, and the tool_use ids a following user turn may answer."""

    messages: list[Message] = field(default_factory=list)
    open_tool_ids: frozenset[str] = frozenset()


def _system_entry(content: Any, param: str, turns: _Turns) -> None:
    # A `role: "system"` entry inside `messages` (Claude Code sends one). It stays in place and
    # leaves the tool_use ids open: it is not a turn of the conversation.
    parts = _text_parts(content, f"{param}.content")
    if parts:
        turns.messages.append({"role": "system", "content": _content(parts)})


def _user_turn(content: Any, param: str, turns: _Turns) -> None:
    answerable, turns.open_tool_ids = turns.open_tool_ids, frozenset()
    if isinstance(content, str):
        turns.messages.append({"role": "user", "content": content})
        return
    parts: list[Part] = []
    for index, block in enumerate(_blocks(content, f"{param}.content")):
        where = f"{param}.content[{index}]"
        kind = _block_type(block, where)
        if kind == "tool_result":  # OpenAI wants tool messages right after the tool calls
            turns.messages.append(_tool_result(block, where, answerable, parts))
            continue
        convert = USER_PARTS.get(kind)
        if convert is None:
            _left_out(where, kind)
            continue
        part = convert(block, where)
        if part is not None:
            parts.append(_with_cache_control(part, block))
    if parts:
        turns.messages.append({"role": "user", "content": _content(parts)})


def _tool_result(block: dict[str, Any], param: str, answerable: frozenset[str],
                 images: list[Part]) -> Message:
    """A `tool` message; images in the result go to `images` (OpenAI tool messages take text
    only), for the user message that follows."""
    tool_id = block.get("tool_use_id")
    if not isinstance(tool_id, str) or not tool_id:
        _invalid(f"{param}.tool_use_id", "must be a non-empty string")
    if tool_id not in answerable:
        _invalid(f"{param}.tool_use_id", f"no tool_use block with id '{tool_id}' in the "
                 "previous assistant message")
    is_error = block.get("is_error", False)
    if not isinstance(is_error, bool):
        _invalid(f"{param}.is_error", "must be a boolean")
    content = block.get("content")
    texts: list[Part] = []
    if isinstance(content, str):
        texts.append({"type": "text", "text": content})
    elif content is not None:
        for index, inner in enumerate(_blocks(content, f"{param}.content")):
            where = f"{param}.content[{index}]"
            kind = _block_type(inner, where)
            if kind == "text":
                texts.append(_with_cache_control(_text_part(inner, where), inner))
            elif kind == "image" and (image := _image_part(inner, where)) is not None:
                images.append(image)
            else:
                _left_out(where, kind)
    if is_error:
        texts = [{"type": "text", "text": "Error: " + "\n".join(t["text"] for t in texts)}]
    if "cache_control" in block and texts:  # the breakpoint on the result's last part
        texts[-1] = {**texts[-1], "cache_control": block["cache_control"]}
    body: str | list[Part] = _content(texts) if texts else ""
    return {"role": "tool", "tool_call_id": tool_id, "content": body}


@dataclass(slots=True)
class _AssistantTurn:
    texts: list[Part] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    thinking_blocks: list[dict[str, Any]] = field(default_factory=list)


def _assistant_text(block: dict[str, Any], param: str, turn: _AssistantTurn) -> None:
    turn.texts.append(_with_cache_control(_text_part(block, param), block))


def _assistant_tool_use(block: dict[str, Any], param: str, turn: _AssistantTurn) -> None:
    call_id, name = block.get("id"), block.get("name")
    if not isinstance(call_id, str) or not call_id:
        _invalid(f"{param}.id", "must be a non-empty string")
    if not isinstance(name, str) or not name:
        _invalid(f"{param}.name", "must be a non-empty string")
    arguments = orjson.dumps(_object(block.get("input"), f"{param}.input")).decode()
    turn.tool_calls.append({"id": call_id, "type": "function",
                            "function": {"name": name, "arguments": arguments}})


def _assistant_thinking(block: dict[str, Any], param: str, turn: _AssistantTurn) -> None:
    signature = block.get("signature", "")
    turn.thinking_blocks.append({
        "type": "thinking", "thinking": _text_of(block.get("thinking"), f"{param}.thinking"),
        "signature": _text_of(signature, f"{param}.signature")})


def _assistant_redacted(block: dict[str, Any], param: str, turn: _AssistantTurn) -> None:
    turn.thinking_blocks.append({"type": "redacted_thinking",
                                 "data": _text_of(block.get("data"), f"{param}.data")})


# Assistant content block type → how it lands on the OpenAI assistant message.
ASSISTANT_BLOCKS: dict[str, Callable[[dict[str, Any], str, _AssistantTurn], None]] = {
    "text": _assistant_text,
    "tool_use": _assistant_tool_use,
    "thinking": _assistant_thinking,
    "redacted_thinking": _assistant_redacted,
}


def _assistant_turn_of(content: Any, param: str, turns: _Turns) -> None:
    if isinstance(content, str):
        turns.messages.append({"role": "assistant", "content": content})
        turns.open_tool_ids = frozenset()
        return
    turn = _AssistantTurn()
    for index, block in enumerate(_blocks(content, f"{param}.content")):
        where = f"{param}.content[{index}]"
        kind = _block_type(block, where)
        add = ASSISTANT_BLOCKS.get(kind)
        if add is None:  # server_tool_use, web_search_tool_result, ...
            _left_out(where, kind)
        else:
            add(block, where, turn)
    message: Message = {"role": "assistant",
                        "content": _content(turn.texts) if turn.texts else (
                            None if turn.tool_calls else "")}
    if turn.tool_calls:
        message["tool_calls"] = turn.tool_calls
    if turn.thinking_blocks:
        message["thinking_blocks"] = turn.thinking_blocks
    turns.messages.append(message)
    turns.open_tool_ids = frozenset(call["id"] for call in turn.tool_calls)


# Message role → its translation into `turns`.
ROLES: dict[str, Callable[[Any, str, _Turns], None]] = {
    "user": _user_turn,
    "assistant": _assistant_turn_of,
    "system": _system_entry,
}


def _messages(raw: Any, turns: _Turns) -> None:
    if not isinstance(raw, list) or not raw:
        _invalid("messages", "must be a non-empty list")
    for index, message in enumerate(raw):
        param = f"messages[{index}]"
        role = _object(message, param).get("role")
        translate = ROLES.get(role) if isinstance(role, str) else None
        if translate is None:
            _invalid(f"{param}.role", "must be 'user', 'assistant' or 'system'")
        if "content" not in message:
            _invalid(f"{param}.content", "Field required")
        content = message["content"]
        if not isinstance(content, str | list):
            _invalid(f"{param}.content", "must be a string or a list of content blocks")
        if not content and role != "system" and not (role == "assistant"
                                                      and index == len(raw) - 1):
            # Anthropic's own rule; and an empty turn would leave nothing to translate.
            _invalid(param, "all messages must have non-empty content except for the "
                     "optional final assistant message")
        translate(content, param, turns)


# --- tools, sampling, thinking ---------------------------------------------------------------


def _tools(raw: Any, out: dict[str, Any]) -> frozenset[str]:
    """Custom tools as function tools; the names of those kept."""
    if not isinstance(raw, list):
        _invalid("tools", "must be a list")
    tools = []
    for index, tool in enumerate(raw):
        param = f"tools[{index}]"
        kind = _object(tool, param).get("type")
        if kind is not None and kind != "custom":  # a server tool (web_search_..., bash_...)
            _left_out(param, kind)
            continue
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            _invalid(f"{param}.name", "must be a non-empty string")
        function: dict[str, Any] = {
            "name": name, "parameters": _object(tool.get("input_schema"),
                                                f"{param}.input_schema")}
        description = tool.get("description")
        if description is not None:
            function["description"] = _text_of(description, f"{param}.description")
        tools.append(_with_cache_control({"type": "function", "function": function}, tool))
    if tools:
        out["tools"] = tools
    return frozenset(t["function"]["name"] for t in tools)


def _tool_choice(raw: Any, names: frozenset[str], out: dict[str, Any]) -> None:
    choice = _object(raw, "tool_choice")
    kind = choice.get("type")
    if kind == "tool":
        name = _text_of(choice.get("name"), "tool_choice.name")
        if name not in names:
            _left_out("tool_choice", f"a tool an OpenAI backend does not get: {name}")
            return
        converted: Any = {"type": "function", "function": {"name": name}}
    elif isinstance(kind, str) and kind in TOOL_CHOICES:
        converted = TOOL_CHOICES[kind]
    else:
        _invalid("tool_choice.type", "must be 'auto', 'any', 'tool' or 'none'")
    parallel = choice.get("disable_parallel_tool_use", False)
    if not isinstance(parallel, bool):
        _invalid("tool_choice.disable_parallel_tool_use", "must be a boolean")
    if not names:  # no tool left to choose from
        return
    out["tool_choice"] = converted
    if parallel:
        out["parallel_tool_calls"] = False


def _reasoning_effort(thinking: dict[str, Any]) -> str | None:
    """An enabled thinking budget → OpenAI's reasoning_effort (None: leave it out)."""
    kind = thinking.get("type")
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            _invalid("thinking.budget_tokens", "must be a positive integer")
        return next(effort for floor, effort in BUDGET_EFFORTS if budget >= floor)
    if kind != "disabled":  # adaptive (or newer): the model's choice, any model's default
        _left_out("thinking", kind)
    return None


def _number(data: dict[str, Any], key: str, out: dict[str, Any], kind: type = float) -> None:
    value = data.get(key)
    if value is None:
        return
    allowed = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, allowed):
        _invalid(key, "must be an integer" if kind is int else "must be a number")
    out[key] = value


def _sampling(data: dict[str, Any], out: dict[str, Any]) -> None:
    _number(data, "temperature", out)
    _number(data, "top_p", out)
    _number(data, "top_k", out, int)  # not OpenAI's, but vLLM and the Anthropic provider read it
    stops = data.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            _invalid("stop_sequences", "must be a list of strings")
        if stops:
            out["stop"] = stops
    metadata = data.get("metadata")
    if metadata is not None:
        user = _object(metadata, "metadata").get("user_id")
        if user is not None:
            out["user"] = _text_of(user, "metadata.user_id")
        out["metadata"] = metadata


# --- the request -----------------------------------------------------------------------------


def to_internal_request(data: Any, *, count_only: bool = False) -> dict[str, Any]:
    """A parsed Anthropic Messages body → the internal chat body (InvalidRequest when bad).
    `count_only`: a count_tokens body, which has no max_tokens."""
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        _invalid("model", "Field required" if model is None else "must be a non-empty string")
    out: dict[str, Any] = {"model": model}
    if not count_only:
        max_tokens = data.get("max_tokens")
        if max_tokens is None:
            _invalid("max_tokens", "Field required")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            _invalid("max_tokens", "must be a positive integer")
        out["max_tokens"] = max_tokens
    turns = _Turns()
    system = data.get("system")
    if system is not None:
        parts = _text_parts(system, "system")
        if parts:
            turns.messages.append({"role": "system", "content": _content(parts)})
    _messages(data.get("messages"), turns)
    out["messages"] = turns.messages
    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        _invalid("stream", "must be a boolean")
    if stream and not count_only:
        # Usage always comes back (as Anthropic's message_delta carries it).
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    _sampling(data, out)
    tools = data.get("tools")
    names = _tools(tools, out) if tools is not None else frozenset()
    if data.get("tool_choice") is not None:
        _tool_choice(data["tool_choice"], names, out)
    thinking = data.get("thinking")
    if thinking is not None:
        effort = _reasoning_effort(_object(thinking, "thinking"))
        if effort is not None:
            out["reasoning_effort"] = effort
    if log.isEnabledFor(logging.DEBUG):
        left_out = sorted(key for key in data if key not in TRANSLATED_FIELDS)
        if left_out:
            _left_out("top-level fields", ", ".join(left_out))
    return out


def count_input_tokens(body: dict[str, Any]) -> int:
    """The prompt tokens of a translated request, offline: its messages (text, tool calls,
    thinking) and its tool definitions."""
    total = count_prompt_tokens(body["messages"])
    for message in body["messages"]:
        for call in message.get("tool_calls") or ():
            function = call["function"]
            total += count_text_tokens(function["name"]) + count_text_tokens(
                function["arguments"])
        for block in message.get("thinking_blocks") or ():
            total += count_text_tokens(block.get("thinking", ""))
    if body.get("tools"):
        total += count_text_tokens(orjson.dumps(body["tools"]).decode())
    return total
