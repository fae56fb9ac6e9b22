"""Anthropic Messages responses -> OpenAI: whole messages, and SSE streams as chunk payloads.

Beside OpenAI's own fields the translation keeps what an Anthropic client needs back (see
`routeyard.wire`): thinking text as `reasoning_content`; thinking blocks with their signatures
as `thinking_blocks` (on the message; in a stream, one delta per finished block, after its text
went out as `reasoning_content`); a matched stop sequence as the choice's `stop_reason` (vLLM's
field); cache writes as `usage.cache_creation_input_tokens` (LiteLLM's field).

The request side and the provider itself live in `anthropic.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from routeyard.pool.providers.base import UpstreamError
from routeyard.pool.providers.sse import SSEChatStream
from routeyard.wire import chunk, completion, delta_choice

# Anthropic stop_reason -> OpenAI finish_reason; anything unknown reads as a normal stop.
STOP_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Anthropic error.type -> the HTTP status it stands for, used when an `event: error` arrives
# before any content, so the executor can treat it like the equivalent status response.
ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}

# Text-like stream deltas: Anthropic delta type -> (OpenAI delta field, Anthropic text key).
TEXT_DELTAS: dict[str, tuple[str, str]] = {
    "text_delta": ("content", "text"),
    "thinking_delta": ("reasoning_content", "thinking"),
}

# Response content blocks that become text fields: block type -> (message field, block key).
TEXT_BLOCKS: dict[str, tuple[str, str]] = {
    "text": ("content", "text"),
    "thinking": ("reasoning_content", "thinking"),
}


def finish_reason(stop_reason: str | None) -> str:
    return STOP_REASONS.get(stop_reason or "end_turn", "stop")


def openai_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Anthropic usage -> OpenAI usage. Cache reads/writes are still prompt tokens."""
    cache_read = usage.get("cache_read_input_tokens") or 0
    cache_write = usage.get("cache_creation_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + cache_write + cache_read
    completion = usage.get("output_tokens") or 0
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read},
    }
    if cache_write:  # no OpenAI field: LiteLLM's name for it
        out["cache_creation_input_tokens"] = cache_write
    return out


def thinking_block(block: dict[str, Any]) -> dict[str, Any] | None:
    """A response's thinking or redacted_thinking block as the internal form carries it."""
    kind = block.get("type")
    if kind == "thinking":
        return {"type": "thinking", "thinking": block.get("thinking", ""),
                "signature": block.get("signature", "")}
    if kind == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.get("data", "")}
    return None


def error_text(payload: Any, fallback: str) -> str:
    """The human message of Anthropic's `{"type":"error","error":{"type","message"}}`."""
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        err = payload["error"]
        etype, msg = err.get("type"), err.get("message")
        if msg:
            return f"{etype}: {msg}" if etype else str(msg)
    return fallback


# --- whole responses -----------------------------------------------------------------------------


def to_openai_completion(
    msg: dict[str, Any], *, model: str | None = None, created: int | None = None
) -> dict[str, Any]:
    """Translate an Anthropic Messages response into an OpenAI `chat.completion`."""
    texts: dict[str, list[str]] = {"content": [], "reasoning_content": []}
    tool_calls = []
    thinking_blocks = []
    for block in msg.get("content") or []:
        btype = block.get("type")
        if btype in TEXT_BLOCKS:
            field, key = TEXT_BLOCKS[btype]
            texts[field].append(block.get(key, ""))
        if btype in ("thinking", "redacted_thinking"):  # also whole, with the signature
            thinking_blocks.append(thinking_block(block))
        elif btype == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts["content"]) if texts["content"] else None,
        "refusal": None,
    }
    if texts["reasoning_content"]:
        message["reasoning_content"] = "".join(texts["reasoning_content"])
    if thinking_blocks:
        message["thinking_blocks"] = thinking_blocks
    if tool_calls:
        message["tool_calls"] = tool_calls
    answer = completion(msg.get("id") or "chatcmpl-anthropic", msg.get("model") or model,
                        message, finish_reason=finish_reason(msg.get("stop_reason")),
                        usage_=openai_usage(msg.get("usage") or {}), created=created)
    if msg.get("stop_reason") == "stop_sequence" and msg.get("stop_sequence"):
        answer["choices"][0]["stop_reason"] = msg["stop_sequence"]
    return answer


# --- streams -------------------------------------------------------------------------------------


class StreamTranslator:
    """Anthropic stream events -> OpenAI `chat.completion.chunk` payloads (bytes).

    Pure: feed it decoded event dicts, get back the chunks to send. `committed` turns true
    once anything past message_start has been seen, i.e. once an error can no longer be
    treated as a failure to start; `finished` once message_stop has been seen.
    """

    def __init__(self, model: str, *, created: int | None = None) -> None:
        self.id = "chatcmpl-anthropic"
        self.model = model
        self.created = created if created is not None else int(time.time())
        self.usage: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self.stop_sequence: str | None = None
        self.committed = False
        self.finished = False
        self._tool_index: dict[int, int] = {}  # Anthropic block index -> OpenAI tool index
        # Open thinking blocks by Anthropic block index: sent whole when they stop.
        self._thinking: dict[int, dict[str, Any]] = {}
        self._handlers: dict[str, Callable[[dict[str, Any]], list[bytes]]] = {
            "message_start": self._message_start,
            "content_block_start": self._block_start,
            "content_block_delta": self._block_delta,
            "content_block_stop": self._block_stop,
            "message_delta": self._message_delta,
            "message_stop": self._message_stop,
            "error": self._error,
        }
        # ping carries nothing for OpenAI; unknown events are skipped because Anthropic's
        # versioning policy allows adding new event types.

    def feed(self, event: dict[str, Any]) -> list[bytes]:
        if self.finished:
            return []
        handler = self._handlers.get(str(event.get("type")))
        return handler(event) if handler else []

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = delta_choice(0, delta, finish)
        if finish is not None and self.stop_reason == "stop_sequence" and self.stop_sequence:
            choice["stop_reason"] = self.stop_sequence
        return orjson.dumps(chunk(self.id, self.model, self.created, [choice]))

    def _message_start(self, event: dict[str, Any]) -> list[bytes]:
        msg = event.get("message") or {}
        self.id = msg.get("id") or self.id
        self.model = msg.get("model") or self.model
        self.usage.update(msg.get("usage") or {})
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, event: dict[str, Any]) -> list[bytes]:
        self.committed = True
        block = event.get("content_block") or {}
        btype = block.get("type")
        if btype == "tool_use":
            tool_index = len(self._tool_index)
            self._tool_index[event.get("index", 0)] = tool_index
            call = {
                "index": tool_index,
                "id": block.get("id"),
                "type": "function",
                "function": {"name": block.get("name"), "arguments": ""},
            }
            return [self._chunk({"tool_calls": [call]})]
        if btype == "thinking":
            self._thinking[event.get("index", 0)] = thinking_block(block) or {}
        elif btype == "redacted_thinking":  # whole at once: nothing streams into it
            return [self._chunk({"thinking_blocks": [thinking_block(block)]})]
        # A text block may open with text already in it; normally it is "".
        if btype == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        return []

    def _block_delta(self, event: dict[str, Any]) -> list[bytes]:
        self.committed = True
        delta = event.get("delta") or {}
        dtype = delta.get("type")
        if dtype in TEXT_DELTAS:
            field, key = TEXT_DELTAS[dtype]
            text = delta.get(key, "")
            thinking = self._thinking.get(event.get("index", 0))
            if thinking is not None and dtype == "thinking_delta":
                thinking["thinking"] += text
            return [self._chunk({field: text})]
        if dtype == "signature_delta":
            thinking = self._thinking.get(event.get("index", 0))
            if thinking is not None:
                thinking["signature"] = thinking.get("signature", "") + delta.get("signature", "")
            return []
        if dtype == "input_json_delta":
            fragment = delta.get("partial_json", "")
            tool_index = self._tool_index.get(event.get("index", 0))
            if tool_index is None or not fragment:
                return []
            call = {"index": tool_index, "function": {"arguments": fragment}}
            return [self._chunk({"tool_calls": [call]})]
        return []  # citations_delta: no OpenAI equivalent

    def _block_stop(self, event: dict[str, Any]) -> list[bytes]:
        thinking = self._thinking.pop(event.get("index", 0), None)
        return [] if thinking is None else [self._chunk({"thinking_blocks": [thinking]})]

    def _message_delta(self, event: dict[str, Any]) -> list[bytes]:
        self.committed = True
        delta = event.get("delta") or {}
        self.stop_reason = delta.get("stop_reason") or self.stop_reason
        self.stop_sequence = delta.get("stop_sequence") or self.stop_sequence
        # message_delta usage is cumulative, so later values replace earlier ones.
        self.usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
        return []

    def _message_stop(self, event: dict[str, Any]) -> list[bytes]:
        self.committed = True
        self.finished = True
        usage_chunk = orjson.dumps(
            chunk(self.id, self.model, self.created, [], openai_usage(self.usage)))
        return [self._chunk({}, finish_reason(self.stop_reason)), usage_chunk]

    def _error(self, event: dict[str, Any]) -> list[bytes]:
        raise UpstreamError(
            "protocol", "anthropic stream error: " + error_text(event, "unknown"), body=event
        )


class AnthropicChatStream(SSEChatStream):
    """An open Anthropic SSE response: events go through a `StreamTranslator`."""

    end_marker = "message_stop"

    def __init__(self, response: aiohttp.ClientResponse, model: str) -> None:
        super().__init__(response, "anthropic")
        self.translator = StreamTranslator(model)

    @property
    def finished(self) -> bool:
        return self.translator.finished

    @property
    def committed(self) -> bool:
        return self.translator.committed  # message_start alone does not commit

    def translate(self, event: str | None, data: str) -> list[bytes]:
        try:
            decoded = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError(
                "protocol", f"bad JSON in anthropic stream: {data[:200]!r}"
            ) from None
        if not isinstance(decoded, dict):
            return []
        if event and "type" not in decoded:
            decoded["type"] = event
        return self.translator.feed(decoded)

    def failure_before_content(self, error: UpstreamError) -> UpstreamError:
        """An error event before content is the status error it stands for (an overloaded
        stream is as retryable as a 529), since the client has seen nothing yet."""
        if error.kind == "protocol" and isinstance(error.body, dict):
            etype = (error.body.get("error") or {}).get("type")
            return UpstreamError(
                "status", error.message, status=ERROR_STATUS.get(etype, 502), body=error.body
            )
        return error
