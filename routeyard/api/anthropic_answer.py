"""Internal answers → Anthropic Messages: a whole message, and a stream's typed SSE events.

Pure, so that their cost can be measured on their own: `to_anthropic_message` renders an OpenAI
`chat.completion`; `AnthropicEventStream` turns `chat.completion.chunk` dicts into the event
sequence the anthropic SDK's `messages.stream()` accumulates: `message_start`, a `ping`, then per
content block `content_block_start`, `content_block_delta`s (text_delta, thinking_delta,
signature_delta, input_json_delta) and `content_block_stop`, then `message_delta` (stop reason
and usage) and `message_stop`.

The internal form's extensions (see `routeyard.wire`) come back as Anthropic blocks:
`thinking_blocks` and `reasoning_content` as thinking blocks (with their signatures), a
matched stop sequence (`stop_reason` on the choice, vLLM's field) as `stop_sequence`, and
cache reads and writes as `cache_read_input_tokens` / `cache_creation_input_tokens`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from routeyard.pool.providers.anthropic import tool_input

# OpenAI finish_reason → Anthropic stop_reason ("stop" with a matched sequence: stop_sequence).
STOP_REASONS: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def message_id(upstream_id: Any, request_id: str) -> str:
    """An Anthropic backend's own message id, else one made from the request id."""
    if isinstance(upstream_id, str) and upstream_id.startswith("msg_"):
        return upstream_id
    return "msg_" + request_id.removeprefix("req_")


def stop_reason(choice: Mapping[str, Any]) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) of a finished choice."""
    finish = choice.get("finish_reason") or "stop"
    matched = choice.get("stop_reason")
    if finish == "stop" and isinstance(matched, str) and matched:
        return "stop_sequence", matched
    return STOP_REASONS.get(finish, "end_turn"), None


def anthropic_usage(usage: Mapping[str, Any] | None) -> dict[str, int]:
    """OpenAI usage → Anthropic's: input_tokens excludes the cache reads and writes."""
    usage = usage or {}
    details = usage.get("prompt_tokens_details") or {}
    cache_read = int(details.get("cached_tokens") or 0)
    cache_write = int(usage.get("cache_creation_input_tokens") or 0)
    prompt = int(usage.get("prompt_tokens") or 0)
    return {"input_tokens": max(0, prompt - cache_read - cache_write),
            "output_tokens": int(usage.get("completion_tokens") or 0),
            "cache_creation_input_tokens": cache_write,
            "cache_read_input_tokens": cache_read}


def _tool_use_id(call: Mapping[str, Any]) -> str:
    found = call.get("id")
    return found if isinstance(found, str) and found else "toolu_" + secrets.token_hex(12)


def _thinking_blocks(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    blocks = message.get("thinking_blocks")
    if isinstance(blocks, list) and blocks:
        return [dict(b) for b in blocks if isinstance(b, dict)]
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:  # an OpenAI-protocol reasoning model's
        return [{"type": "thinking", "thinking": reasoning, "signature": ""}]
    return []


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    return ""


def to_anthropic_message(response: Mapping[str, Any], *, model: str, id_: str
                         ) -> dict[str, Any]:
    """A `chat.completion` (its first choice) → an Anthropic `message`."""
    choices = response.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = _thinking_blocks(message)
    text = _text(message.get("content")) or _text(message.get("refusal"))
    if text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append({"type": "tool_use", "id": _tool_use_id(call),
                        "name": function.get("name") or "",
                        "input": tool_input(function.get("arguments"))})
    reason, sequence = stop_reason(choice)
    return {"id": id_, "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": reason, "stop_sequence": sequence,
            "usage": anthropic_usage(response.get("usage"))}


# --- streams ---------------------------------------------------------------------------------


def sse_event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def error_event(message: str, *, kind: str = "api_error") -> bytes:
    """The event that ends a stream that cannot go on (the SDK raises it as an APIError)."""
    return sse_event("error", {"type": "error", "error": {"type": kind, "message": message}})


class AnthropicEventStream:
    """Internal stream chunks → Anthropic SSE events. Feed each chunk dict to `feed`; call
    `finish` when the stream ended well. One content block is open at a time."""

    def __init__(self, model: str, request_id: str, input_tokens: int = 0) -> None:
        self.model = model
        self.request_id = request_id
        self.input_tokens = input_tokens  # message_start's estimate; message_delta corrects it
        self.started = False
        self.index = -1  # the last block opened
        self.open: str | None = None  # its type while it is open
        self.thinking_text = False  # the open thinking block has had text
        self.tool_blocks: dict[int, int] = {}  # OpenAI tool-call index → block index
        self.stop: tuple[str, str | None] = ("end_turn", None)
        self.usage: Mapping[str, Any] | None = None
        # Delta field → its handler, in the order Anthropic puts blocks: thinking first.
        self._deltas: tuple[tuple[str, Callable[[Any, list[bytes]], None]], ...] = (
            ("reasoning_content", self._reasoning),
            ("thinking_blocks", self._thinking_blocks),
            ("content", self._text),
            ("tool_calls", self._tool_calls),
        )

    def feed(self, chunk: Mapping[str, Any]) -> list[bytes]:
        frames: list[bytes] = []
        if not self.started:
            self._start(chunk.get("id"), frames)
        usage = chunk.get("usage")
        if usage:
            self.usage = usage
        choices = chunk.get("choices")
        if not choices:
            return frames
        choice = choices[0]
        delta = choice.get("delta") or {}
        for name, handle in self._deltas:
            value = delta.get(name)
            if value:
                handle(value, frames)
        if choice.get("finish_reason"):
            self.stop = stop_reason(choice)
        return frames

    def finish(self) -> list[bytes]:
        frames: list[bytes] = []
        if not self.started:
            self._start(None, frames)
        self._close(frames)
        reason, sequence = self.stop
        frames.append(sse_event("message_delta", {
            "type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": sequence},
            "usage": anthropic_usage(self.usage)}))
        frames.append(sse_event("message_stop", {"type": "message_stop"}))
        return frames

    # --- blocks ---------------------------------------------------------------------------

    def _start(self, upstream_id: Any, frames: list[bytes]) -> None:
        self.started = True
        frames.append(sse_event("message_start", {"type": "message_start", "message": {
            "id": message_id(upstream_id, self.request_id), "type": "message",
            "role": "assistant", "model": self.model, "content": [], "stop_reason": None,
            "stop_sequence": None, "usage": {
                "input_tokens": self.input_tokens, "output_tokens": 0,
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}))
        frames.append(sse_event("ping", {"type": "ping"}))

    def _open(self, block: dict[str, Any], frames: list[bytes]) -> None:
        self._close(frames)
        self.index += 1
        self.open = block["type"]
        self.thinking_text = False
        frames.append(sse_event("content_block_start", {
            "type": "content_block_start", "index": self.index, "content_block": block}))

    def _close(self, frames: list[bytes]) -> None:
        if self.open is not None:
            frames.append(sse_event("content_block_stop",
                                    {"type": "content_block_stop", "index": self.index}))
            self.open = None

    def _delta(self, delta: dict[str, Any], frames: list[bytes], index: int | None = None
               ) -> None:
        frames.append(sse_event("content_block_delta", {
            "type": "content_block_delta", "index": self.index if index is None else index,
            "delta": delta}))

    # --- delta fields ---------------------------------------------------------------------

    def _text(self, text: str, frames: list[bytes]) -> None:
        if self.open != "text":
            self._open({"type": "text", "text": ""}, frames)
        self._delta({"type": "text_delta", "text": text}, frames)

    def _reasoning(self, text: str, frames: list[bytes]) -> None:
        if self.open != "thinking":
            self._open({"type": "thinking", "thinking": "", "signature": ""}, frames)
        self.thinking_text = True
        self._delta({"type": "thinking_delta", "thinking": text}, frames)

    def _thinking_blocks(self, blocks: list[Any], frames: list[bytes]) -> None:
        """Whole blocks: a thinking block's text has streamed as reasoning_content when the
        open thinking block has text, so only its signature is left to send."""
        for block in blocks:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "redacted_thinking":
                self._open({"type": "redacted_thinking", "data": block.get("data", "")}, frames)
            else:
                if not (self.open == "thinking" and self.thinking_text):
                    self._open({"type": "thinking", "thinking": "", "signature": ""}, frames)
                    if block.get("thinking"):
                        self._delta({"type": "thinking_delta", "thinking": block["thinking"]},
                                    frames)
                self._delta({"type": "signature_delta",
                             "signature": block.get("signature", "")}, frames)
            self._close(frames)  # a signed block is finished

    def _tool_calls(self, calls: list[Any], frames: list[bytes]) -> None:
        for call in calls:
            if not isinstance(call, dict):
                continue
            position = call.get("index", 0)
            function = call.get("function") or {}
            block = self.tool_blocks.get(position)
            if block is None:
                self._open({"type": "tool_use", "id": _tool_use_id(call),
                            "name": function.get("name") or "", "input": {}}, frames)
                block = self.tool_blocks[position] = self.index
            arguments = function.get("arguments")
            if arguments:
                self._delta({"type": "input_json_delta", "partial_json": arguments}, frames,
                            block)
