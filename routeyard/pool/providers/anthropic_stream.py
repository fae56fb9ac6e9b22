"""Anthropic Messages responses -> OpenAI: whole messages, and SSE streams as chunk payloads.

The request side and the provider itself live in `anthropic.py`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson

from routeyard.pool.providers.base import ChatStream, UpstreamError

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
    prompt = (
        (usage.get("input_tokens") or 0)
        + (usage.get("cache_creation_input_tokens") or 0)
        + cache_read
    )
    completion = usage.get("output_tokens") or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read},
    }


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
    for block in msg.get("content") or []:
        btype = block.get("type")
        if btype in TEXT_BLOCKS:
            field, key = TEXT_BLOCKS[btype]
            texts[field].append(block.get(key, ""))
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
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": msg.get("id") or "chatcmpl-anthropic",
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": msg.get("model") or model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason(msg.get("stop_reason")),
                "logprobs": None,
            }
        ],
        "usage": openai_usage(msg.get("usage") or {}),
    }


# --- streams -------------------------------------------------------------------------------------


class SSEDecoder:
    """Incremental `text/event-stream` decoder that tolerates chunks split anywhere."""

    def __init__(self) -> None:
        self._buf = b""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[tuple[str | None, str]]:
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")  # keep the unterminated tail
        events: list[tuple[str | None, str]] = []
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
            if not line:
                if self._data:
                    events.append((self._event, "\n".join(self._data)))
                self._event, self._data = None, []
                continue
            if line.startswith(":"):  # comment / keep-alive
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                self._event = value
            elif name == "data":
                self._data.append(value)
        return events


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
        self.committed = False
        self.finished = False
        self._tool_index: dict[int, int] = {}  # Anthropic block index -> OpenAI tool index
        self._handlers: dict[str, Callable[[dict[str, Any]], list[bytes]]] = {
            "message_start": self._message_start,
            "content_block_start": self._block_start,
            "content_block_delta": self._block_delta,
            "message_delta": self._message_delta,
            "message_stop": self._message_stop,
            "error": self._error,
        }
        # content_block_stop and ping carry nothing for OpenAI; unknown events are skipped
        # because Anthropic's versioning policy allows adding new event types.

    def feed(self, event: dict[str, Any]) -> list[bytes]:
        if self.finished:
            return []
        handler = self._handlers.get(str(event.get("type")))
        return handler(event) if handler else []

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return orjson.dumps(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
        )

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
            return [self._chunk({field: delta.get(key, "")})]
        if dtype == "input_json_delta":
            fragment = delta.get("partial_json", "")
            tool_index = self._tool_index.get(event.get("index", 0))
            if tool_index is None or not fragment:
                return []
            call = {"index": tool_index, "function": {"arguments": fragment}}
            return [self._chunk({"tool_calls": [call]})]
        return []  # signature_delta, citations_delta: no OpenAI equivalent

    def _message_delta(self, event: dict[str, Any]) -> list[bytes]:
        self.committed = True
        self.stop_reason = (event.get("delta") or {}).get("stop_reason") or self.stop_reason
        # message_delta usage is cumulative, so later values replace earlier ones.
        self.usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
        return []

    def _message_stop(self, event: dict[str, Any]) -> list[bytes]:
        self.committed = True
        self.finished = True
        usage_chunk = orjson.dumps(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": openai_usage(self.usage),
            }
        )
        return [self._chunk({}, finish_reason(self.stop_reason)), usage_chunk]

    def _error(self, event: dict[str, Any]) -> list[bytes]:
        raise UpstreamError(
            "protocol", "anthropic stream error: " + error_text(event, "unknown"), body=event
        )


class AnthropicChatStream(ChatStream):
    """An open Anthropic SSE response, exposed as OpenAI chunk payloads."""

    def __init__(self, resp: aiohttp.ClientResponse, model: str) -> None:
        self._resp = resp
        self._decoder = SSEDecoder()
        self.translator = StreamTranslator(model)
        self._pending: deque[bytes] = deque()
        self._events = self._read_events()

    async def prime(self) -> None:
        """Read until the stream is committed to content, buffering the chunks produced.

        An error event in this phase is re-raised as the status error it stands for (an
        overloaded stream is as retryable as a 529), since the client has seen nothing yet.
        """
        try:
            while not self.translator.committed:
                event = await anext(self._events, None)
                if event is None:
                    raise UpstreamError("disconnect", "anthropic stream ended before content")
                self._pending.extend(self.translator.feed(event))
        except UpstreamError as exc:
            await self.aclose()
            if exc.kind == "protocol" and isinstance(exc.body, dict):
                etype = (exc.body.get("error") or {}).get("type")
                raise UpstreamError(
                    "status", exc.message, status=ERROR_STATUS.get(etype, 502), body=exc.body
                ) from exc
            raise
        except asyncio.CancelledError:
            await self.aclose()
            raise

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            while self._pending:
                yield self._pending.popleft()
            async for event in self._events:
                for chunk in self.translator.feed(event):
                    yield chunk
            if not self.translator.finished:
                raise UpstreamError("disconnect", "anthropic stream ended without message_stop")
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        await self._events.aclose()
        if self.translator.finished:
            self._resp.release()
        else:
            self._resp.close()  # drop the connection rather than drain an abandoned stream

    def interrupt(self) -> None:
        self._resp.close()

    async def _read_events(self) -> AsyncIterator[dict[str, Any]]:
        try:
            async for raw in self._resp.content.iter_any():
                for name, data in self._decoder.feed(raw):
                    try:
                        event = orjson.loads(data)
                    except orjson.JSONDecodeError as exc:
                        raise UpstreamError(
                            "protocol", f"bad JSON in anthropic stream: {data[:200]!r}"
                        ) from exc
                    if isinstance(event, dict):
                        if name and "type" not in event:
                            event["type"] = name
                        yield event
        except TimeoutError as exc:  # also aiohttp's ServerTimeoutError
            raise UpstreamError("timeout", "anthropic stream read timed out") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError("disconnect", "anthropic stream broke", detail=repr(exc)) from exc
