"""OpenAI chat-completions wire shapes: the internal request and answer form, in one place.

Routeyard's internal form is an OpenAI chat-completions body and answer, so every layer that
builds an answer, a stream chunk or an SSE frame (providers translating a backend, plugins
answering without one, a cascade replaying its choice) builds it here. A leaf beside `tokens`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

import orjson

from routeyard.tokens import message_text

DONE = b"data: [DONE]\n\n"

# Extension fields the internal form carries beside OpenAI's own (OpenAI clients ignore them):
# - message / delta `reasoning_content`: a reasoning model's thinking text;
# - message / delta `thinking_blocks`: Anthropic thinking blocks with their signatures
#   ([{"type": "thinking", "thinking", "signature"} | {"type": "redacted_thinking", "data"}]),
#   so that a multi-turn conversation with extended thinking survives translation.


class WithNative(dict[str, Any]):
    """An internal body (or answer) that also carries the same request (or answer) in the
    client's own protocol, `native`. A provider of that protocol sends or returns the native
    form untouched, so nothing is lost in a round trip (thinking signatures, cache_control).
    Any copy, e.g. a plugin editing the body, is a plain dict again: an edited request is
    always translated, never sent as the client wrote it."""

    __slots__ = ("native", "protocol")

    def __init__(self, internal: dict[str, Any], native: dict[str, Any], protocol: str) -> None:
        super().__init__(internal)
        self.native = native
        self.protocol = protocol


def native_of(value: Any, protocol: str) -> dict[str, Any] | None:
    """The native form `value` carries for `protocol`, if any."""
    if isinstance(value, WithNative) and value.protocol == protocol:
        return value.native
    return None
COMPLETION = "chat.completion"
CHUNK = "chat.completion.chunk"


def sse(payload: bytes) -> bytes:
    """One SSE `data:` frame."""
    return b"data: " + payload + b"\n\n"


def error_frame(message: str, *, type_: str, code: str) -> bytes:
    """The SSE frame that ends a stream that cannot go on (the openai SDK raises APIError)."""
    return sse(orjson.dumps({"error": {"message": message, "type": type_, "param": None,
                                       "code": code}}))


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion(completion_id: str, model: str, message: Mapping[str, Any], *,
               finish_reason: str = "stop", usage_: Mapping[str, int] | None = None,
               created: int | None = None) -> dict[str, Any]:
    """A one-choice `chat.completion`."""
    return {"id": completion_id, "object": COMPLETION,
            "created": int(time.time()) if created is None else created, "model": model,
            "choices": [{"index": 0, "finish_reason": finish_reason, "logprobs": None,
                         "message": dict(message)}],
            "usage": dict(usage_) if usage_ is not None else usage(0, 0)}


def chunk(completion_id: str | None, model: str | None, created: int | None,
          choices: list[dict[str, Any]], usage_: Mapping[str, Any] | None = None
          ) -> dict[str, Any]:
    """A `chat.completion.chunk`; with no choices and a usage, the final usage chunk."""
    body: dict[str, Any] = {"id": completion_id, "object": CHUNK,
                            "created": int(time.time()) if created is None else created,
                            "model": model, "choices": choices}
    if usage_ is not None:
        body["usage"] = dict(usage_)
    return body


def delta_choice(index: int, delta: dict[str, Any], finish_reason: str | None = None
                 ) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


_PIECES = re.compile(r"\S+\s*|\s+")


def completion_chunks(response: Mapping[str, Any]) -> list[bytes]:
    """A `chat.completion` as the chunk payloads that stream it: word by word, tool calls in
    one delta, then the usage chunk when the answer has a usage."""
    cid = response.get("id") or "chatcmpl-replay"
    model = response.get("model") or ""
    created = response.get("created") or int(time.time())
    chunks: list[dict[str, Any]] = []

    def add(index: int, delta: dict[str, Any], finish: str | None = None) -> None:
        chunks.append(chunk(cid, model, created, [delta_choice(index, delta, finish)]))

    for position, choice in enumerate(response.get("choices") or []):
        index = int(choice.get("index", position))
        message = choice.get("message") or {}
        add(index, {"role": message.get("role") or "assistant", "content": ""})
        content = message.get("content")
        for piece in _PIECES.findall(content) if isinstance(content, str) else ():
            add(index, {"content": piece})
        calls = message.get("tool_calls") or []
        if calls:
            add(index, {"tool_calls": [{**call, "index": i} for i, call in enumerate(calls)]})
        add(index, {}, choice.get("finish_reason") or "stop")
    if response.get("usage"):
        chunks.append(chunk(cid, model, created, [], response["usage"]))
    return [orjson.dumps(c) for c in chunks]


def completion_text(response: Mapping[str, Any], *, first_only: bool = False) -> str:
    """The text of a completion's choices (all of them, or only the first)."""
    texts = []
    for choice in response.get("choices") or []:
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict):
            texts.append(message_text(message))
        if first_only:
            break
    return " ".join(texts)


def split_choices(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One single-choice completion per choice (an `n > 1` answer taken apart)."""
    choices = response.get("choices") or [{}]
    return [{**response, "choices": [{**c, "index": 0}]} for c in choices]


def streamed_completion(first_chunk: Mapping[str, Any] | None, text: str,
                        usage_: Mapping[str, int] | None, model: str) -> dict[str, Any]:
    """The `chat.completion` a finished one-choice text stream amounts to."""
    first = first_chunk or {}
    return completion(str(first.get("id", "")), str(first.get("model") or model),
                      {"role": "assistant", "content": text}, usage_=usage_,
                      created=first.get("created"))
