"""Anthropic adapter: responses and streams → OpenAI format."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from anthropic_samples import RECORDED, anthropic_message, sse

from routeyard.pool.providers.anthropic import (
    to_openai_completion,
)
from routeyard.pool.providers.anthropic_stream import StreamTranslator
from routeyard.pool.providers.base import UpstreamError
from routeyard.pool.providers.sse import SSEDecoder

# --- response translation --------------------------------------------------------------------


def test_text_response() -> None:
    msg = anthropic_message(
        [{"type": "text", "text": "Hello"}, {"type": "text", "text": " world"}], "end_turn"
    )
    out = to_openai_completion(msg, created=123)
    assert out == {
        "id": "msg_1",
        "object": "chat.completion",
        "created": 123,
        "model": "claude-x",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello world", "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "total_tokens": 15,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }


def test_tool_use_and_thinking_response_with_cache_usage() -> None:
    msg = anthropic_message(
        [
            {"type": "thinking", "thinking": "Let me look.", "signature": "sig"},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
        ],
        "tool_use",
        cache_creation_input_tokens=3,
        cache_read_input_tokens=100,
    )
    out = to_openai_completion(msg)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["reasoning_content"] == "Let me look."
    assert choice["message"]["tool_calls"] == [
        {
            "id": "toolu_1",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
        }
    ]
    assert out["usage"]["prompt_tokens"] == 113
    assert out["usage"]["total_tokens"] == 118
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 100}


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
        (None, "stop"),
    ],
)
def test_stop_reasons(stop: str | None, finish: str) -> None:
    msg = anthropic_message([{"type": "text", "text": "x"}], stop)  # type: ignore[arg-type]
    assert to_openai_completion(msg)["choices"][0]["finish_reason"] == finish


# --- stream translation ----------------------------------------------------------------------


def translate(raw: bytes, cut: int) -> tuple[list[dict[str, Any]], StreamTranslator]:
    decoder, translator = SSEDecoder(), StreamTranslator("fallback", created=1)
    chunks: list[bytes] = []
    for start in range(0, len(raw), cut):
        for _name, data in decoder.feed(raw[start : start + cut]):
            chunks.extend(translator.feed(orjson.loads(data)))
    return [orjson.loads(c) for c in chunks], translator


@pytest.mark.parametrize("cut", [1, 3, 7, 64, 10_000])
def test_recorded_stream_split_anywhere(cut: int) -> None:
    chunks, translator = translate(RECORDED, cut)
    assert translator.finished
    assert {c["id"] for c in chunks} == {"msg_s1"}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["model"] for c in chunks} == {"claude-x"}
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content", "") for d in deltas) == "Héllo there"
    calls = [call for d in deltas for call in d.get("tool_calls", [])]
    assert calls[0] == {
        "index": 0,
        "id": "toolu_9",
        "type": "function",
        "function": {"name": "weather", "arguments": ""},
    }
    assert all(call["index"] == 0 for call in calls)
    assert "".join(call["function"]["arguments"] for call in calls) == '{"city": "Paris"}'
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finish[-1] == "tool_calls" and set(finish[:-1]) == {None}
    # Always a trailing usage chunk, from message_start input and message_delta output.
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 25
    assert chunks[-1]["usage"]["completion_tokens"] == 42
    assert chunks[-1]["usage"]["total_tokens"] == 67


def test_thinking_stream_becomes_reasoning_content() -> None:
    translator = StreamTranslator("m", created=1)
    events = [
        {"type": "message_start", "message": {"id": "msg", "usage": {"input_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking"}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "hmm"},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": "s"},
        },
        {
            "type": "message_delta",
            "delta": {"stop_reason": "max_tokens"},
            "usage": {"output_tokens": 2},
        },
        {"type": "message_stop"},
    ]
    chunks = [orjson.loads(c) for e in events for c in translator.feed(e)]
    assert chunks[1]["choices"][0]["delta"] == {"reasoning_content": "hmm"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["total_tokens"] == 3


def test_stream_error_event_raises_protocol_error() -> None:
    raw = RECORDED.split(b"event: content_block_stop")[0] + sse(
        "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    with pytest.raises(UpstreamError) as info:
        translate(raw, 5)
    assert info.value.kind == "protocol"
    assert "Overloaded" in info.value.message


def test_sse_decoder_handles_comments_multiline_data_and_partial_tail() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b": keep-alive\n\nevent: x\ndata: a\nda") == []
    assert decoder.feed(b"ta: b\n\n") == [("x", "a\nb")]
    assert decoder.feed(b"data: {}\n") == []  # not dispatched until the blank line


