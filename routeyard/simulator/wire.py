"""Wire encodings of simulated answers: OpenAI chat completions and Anthropic Messages.

Both surfaces share one interface so the runner can time and fault requests without caring
which API it speaks. Streaming pieces are spliced into per-request byte templates because
encoding a dict per token would dominate the hot path.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any, Protocol

import orjson

from routeyard.simulator.engine import Plan


class StreamEncoder(Protocol):
    def head(self) -> bytes: ...
    def piece(self, piece_json: bytes) -> bytes: ...
    def tail(self) -> bytes: ...


class Surface(Protocol):
    content_type: bytes
    sse_content_type: bytes

    def error(self, status: int, message: str, code: str | None = None) -> bytes: ...
    def completion(self, plan: Plan) -> bytes: ...
    def stream(self, plan: Plan, include_usage: bool) -> StreamEncoder: ...


def _ids(prefix: str) -> tuple[str, itertools.count[int]]:
    # A random prefix per app keeps ids unique across simulator processes; a counter is cheap.
    return prefix + os.urandom(4).hex(), itertools.count(1)


def _generic_error_type(status: int) -> str:
    return "api_error" if status >= 500 else "invalid_request_error"


_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    429: "rate_limit_exceeded",
    500: "server_error",
    503: "service_unavailable",
    504: "timeout",
}


class OpenAISurface:
    content_type = b"application/json"
    sse_content_type = b"text/event-stream"

    def __init__(self) -> None:
        self._prefix, self._counter = _ids("chatcmpl-sim")

    def _id(self) -> str:
        return f"{self._prefix}{next(self._counter):x}"

    def error(self, status: int, message: str, code: str | None = None) -> bytes:
        kind = _OPENAI_ERROR_TYPES.get(status) or _generic_error_type(status)
        error = {"message": message, "type": kind, "param": None, "code": code}
        return orjson.dumps({"error": error})

    def completion(self, plan: Plan) -> bytes:
        content = plan.logprobs()
        choice: dict[str, object] = {
            "index": 0,
            "message": {"role": "assistant", "content": plan.text(), "refusal": None},
            "logprobs": None if content is None else {"content": content, "refusal": None},
            "finish_reason": plan.finish,
        }
        if plan.stop_reason is not False:
            choice["stop_reason"] = plan.stop_reason
        body: dict[str, object] = {
            "id": self._id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": plan.model,
            "choices": [choice],
        }
        if not plan.profile.omit_usage:
            body["usage"] = _openai_usage(plan)
        return orjson.dumps(body)

    def stream(self, plan: Plan, include_usage: bool) -> _OpenAIStream:
        content = plan.logprobs()
        if content is not None:
            return _OpenAILogprobStream(plan, self._id(), include_usage, content)
        return _OpenAIStream(plan, self._id(), include_usage)


def _openai_usage(plan: Plan) -> dict[str, Any]:
    found: dict[str, Any] = {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": plan.completion_tokens,
        "total_tokens": plan.prompt_tokens + plan.completion_tokens,
    }
    if plan.cached_tokens is not None:  # a prefill model: as vLLM and OpenAI report it
        found["prompt_tokens_details"] = {"cached_tokens": plan.cached_tokens}
    return found


class _OpenAIStream:
    __slots__ = ("_base", "_plan", "_prefix", "_suffix", "_usage")

    def __init__(self, plan: Plan, rid: str, include_usage: bool) -> None:
        self._plan = plan
        self._usage = include_usage and not plan.profile.omit_usage
        self._base = {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": plan.model,
        }
        # With include_usage the real API sends "usage": null on every chunk but the last.
        extra = b',"usage":null' if self._usage else b""
        opened = orjson.dumps(self._base)[:-1]  # drop the closing brace to append choices
        self._prefix = b"data: " + opened + b',"choices":[{"index":0,"delta":{"content":'
        self._suffix = b'},"logprobs":null,"finish_reason":null}]' + extra + b"}\n\n"

    def _chunk(self, delta: dict[str, str], finish: str | None) -> bytes:
        chunk: dict[str, object] = {
            **self._base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self._usage:
            chunk["usage"] = None
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def head(self) -> bytes:
        return self._chunk({"role": "assistant", "content": ""}, None)

    def piece(self, piece_json: bytes) -> bytes:
        return self._prefix + piece_json + self._suffix

    def tail(self) -> bytes:
        out = self._chunk({}, self._plan.finish)
        if self._plan.stop_reason is not False:  # vLLM's: on the chunk that finishes
            ended = orjson.loads(out[6:])
            ended["choices"][0]["stop_reason"] = self._plan.stop_reason
            out = b"data: " + orjson.dumps(ended) + b"\n\n"
        if self._usage:
            last = {**self._base, "choices": [], "usage": _openai_usage(self._plan)}
            out += b"data: " + orjson.dumps(last) + b"\n\n"
        return out + b"data: [DONE]\n\n"


class _OpenAILogprobStream(_OpenAIStream):
    """A stream whose content chunks carry each token's logprobs: a chunk built per token,
    which only requests that ask for logprobs pay for."""

    __slots__ = ("_content", "_next")

    def __init__(self, plan: Plan, rid: str, include_usage: bool,
                 content: list[dict[str, object]]) -> None:
        super().__init__(plan, rid, include_usage)
        self._content = content
        self._next = 0

    def piece(self, piece_json: bytes) -> bytes:
        index, self._next = self._next, self._next + 1
        chunk: dict[str, object] = {
            **self._base,
            "choices": [{"index": 0, "delta": {"content": orjson.loads(piece_json)},
                         "logprobs": {"content": [self._content[index]], "refusal": None},
                         "finish_reason": None}],
        }
        if self._usage:
            chunk["usage"] = None
        return b"data: " + orjson.dumps(chunk) + b"\n\n"


_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    404: "not_found_error",
    405: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "api_error",
}
_ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens"}


class AnthropicSurface:
    content_type = b"application/json"
    sse_content_type = b"text/event-stream; charset=utf-8"

    def __init__(self) -> None:
        self._prefix, self._counter = _ids("msg_sim")

    def _id(self) -> str:
        return f"{self._prefix}{next(self._counter):x}"

    def error(self, status: int, message: str, code: str | None = None) -> bytes:
        kind = _ANTHROPIC_ERROR_TYPES.get(status) or _generic_error_type(status)
        return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})

    def completion(self, plan: Plan) -> bytes:
        body: dict[str, object] = {
            "id": self._id(),
            "type": "message",
            "role": "assistant",
            "model": plan.model,
            "content": [{"type": "text", "text": plan.text()}],
            "stop_reason": _ANTHROPIC_STOP[plan.finish],
            "stop_sequence": None,
        }
        if not plan.profile.omit_usage:
            body["usage"] = _anthropic_usage(plan.prompt_tokens, plan.completion_tokens)
        return orjson.dumps(body)

    def stream(self, plan: Plan, include_usage: bool) -> _AnthropicStream:
        return _AnthropicStream(plan, self._id())


def _anthropic_usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    # The real API always reports prompt-cache reads and writes; the simulator caches nothing.
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    }


def _event(name: bytes, data: dict[str, object]) -> bytes:
    return b"event: " + name + b"\ndata: " + orjson.dumps(data) + b"\n\n"


_DELTA_PREFIX = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":'
)
_DELTA_SUFFIX = b"}}\n\n"


class _AnthropicStream:
    __slots__ = ("_id", "_plan")

    def __init__(self, plan: Plan, mid: str) -> None:
        self._plan = plan
        self._id = mid

    def head(self) -> bytes:
        plan = self._plan
        message: dict[str, object] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": plan.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
        }
        if not plan.profile.omit_usage:
            message["usage"] = _anthropic_usage(plan.prompt_tokens, 1)
        return (
            _event(b"message_start", {"type": "message_start", "message": message})
            + _event(
                b"content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            + _event(b"ping", {"type": "ping"})
        )

    def piece(self, piece_json: bytes) -> bytes:
        return _DELTA_PREFIX + piece_json + _DELTA_SUFFIX

    def tail(self) -> bytes:
        plan = self._plan
        delta: dict[str, object] = {
            "type": "message_delta",
            "delta": {"stop_reason": _ANTHROPIC_STOP[plan.finish], "stop_sequence": None},
        }
        if not plan.profile.omit_usage:
            delta["usage"] = {"output_tokens": plan.completion_tokens}
        return (
            _event(b"content_block_stop", {"type": "content_block_stop", "index": 0})
            + _event(b"message_delta", delta)
            + _event(b"message_stop", {"type": "message_stop"})
        )
