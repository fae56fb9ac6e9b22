"""Anthropic Messages provider: pure translation both ways, stream translation, and e2e."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from simproc import SimulatorProcess, start_simulator

from routeyard.pool.providers.anthropic import (
    DEFAULT_MAX_TOKENS,
    EFFORT_BUDGETS,
    AnthropicProvider,
    TranslationError,
    anthropic_headers,
    to_anthropic_request,
    to_openai_completion,
)
from routeyard.pool.providers.anthropic_stream import SSEDecoder, StreamTranslator
from routeyard.pool.providers.base import ChatStream, EndpointTarget, UpstreamError

# --- request translation ---------------------------------------------------------------------


def req(**body: Any) -> dict[str, Any]:
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    return to_anthropic_request(body, "claude-x")


def test_minimal_request_has_model_and_default_max_tokens() -> None:
    out = req()
    assert out == {
        "model": "claude-x",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": DEFAULT_MAX_TOKENS,
    }


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert req(max_tokens=10)["max_tokens"] == 10
    assert req(max_tokens=10, max_completion_tokens=20)["max_tokens"] == 20


def test_system_and_developer_messages_are_hoisted_and_joined() -> None:
    out = req(
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": [{"type": "text", "text": "use JSON"}]},
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "late rule"},
        ]
    )
    assert out["system"] == "be brief\n\nuse JSON\n\nlate rule"
    assert out["messages"] == [{"role": "user", "content": "hi"}]


def test_consecutive_same_role_turns_are_merged() -> None:
    out = req(
        messages=[
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b"}]},
            {"role": "assistant", "content": "c"},
            {"role": "assistant", "content": ""},  # empty turns vanish
            {"role": "assistant", "content": "d"},
            {"role": "user", "content": "e"},
        ]
    )
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}],
        },
        {"role": "user", "content": "e"},
    ]


def test_images_data_url_and_http_url() -> None:
    content = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "image_url", "image_url": {"url": "https://x.test/cat.jpg", "detail": "high"}},
    ]
    out = req(messages=[{"role": "user", "content": content}])
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "what is this"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
        {"type": "image", "source": {"type": "url", "url": "https://x.test/cat.jpg"}},
    ]


def test_pdf_file_part_becomes_document() -> None:
    part = {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE"}}
    out = req(messages=[{"role": "user", "content": [part]}])
    assert out["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
        }
    ]


@pytest.mark.parametrize(
    "content",
    [
        [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}],
        [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}],
        [{"type": "image_url", "image_url": {"url": "data:image/png,notbase64"}}],
        [{"type": "file", "file": {"file_id": "file-123"}}],
    ],
)
def test_unsupported_content_raises(content: list[dict[str, Any]]) -> None:
    with pytest.raises(TranslationError):
        req(messages=[{"role": "user", "content": content}])


def test_unknown_role_raises() -> None:
    with pytest.raises(TranslationError):
        req(messages=[{"role": "function", "name": "f", "content": "x"}])


def test_tool_calls_and_tool_results() -> None:
    messages = [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "weather", "arguments": ""},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "rain"}]},
        {"role": "user", "content": "thanks"},
    ]
    out = req(messages=messages)
    assert out["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "weather", "input": {}},
        ],
    }
    # Tool results and the next user turn merge into one user message, results first.
    assert out["messages"][2] == {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "call_1",
                "content": [{"type": "text", "text": "sunny"}],
            },
            {
                "type": "tool_result",
                "tool_use_id": "call_2",
                "content": [{"type": "text", "text": "rain"}],
            },
            {"type": "text", "text": "thanks"},
        ],
    }
    assert len(out["messages"]) == 3


def test_broken_tool_arguments_do_not_break_the_conversation() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
    out = req(
        messages=[
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": "calling", "tool_calls": [call]},
        ]
    )
    assert out["messages"][1]["content"][1]["input"] == {"_raw_arguments": "{oops"}


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "Get the weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            "strict": True,
        },
    },
    {"type": "function", "function": {"name": "noargs"}},
]


def test_tools_are_translated() -> None:
    out = req(tools=TOOLS)
    assert out["tools"] == [
        {
            "name": "weather",
            "description": "Get the weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        {"name": "noargs", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in out  # auto is Anthropic's default


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, None),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        (
            {"type": "function", "function": {"name": "weather"}},
            None,
            {"type": "tool", "name": "weather"},
        ),
        ("auto", False, {"type": "auto", "disable_parallel_tool_use": True}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    ],
)
def test_tool_choice(choice: Any, parallel: Any, expected: dict[str, Any] | None) -> None:
    out = req(tools=TOOLS, tool_choice=choice, parallel_tool_calls=parallel)
    assert out.get("tool_choice") == expected


def test_tool_choice_without_tools_is_dropped() -> None:
    assert "tool_choice" not in req(tool_choice="required")


def test_sampling_stop_stream_user() -> None:
    out = req(temperature=1.5, top_p=0.9, stop="END", stream=True, user="u-42")
    assert out["temperature"] == 1.0  # clamped to Anthropic's range
    assert out["top_p"] == 0.9
    assert out["stop_sequences"] == ["END"]
    assert out["stream"] is True
    assert out["metadata"] == {"user_id": "u-42"}
    assert req(stop=["a", "b"])["stop_sequences"] == ["a", "b"]
    assert req(temperature=0)["temperature"] == 0


def test_openai_only_params_are_dropped() -> None:
    out = req(
        n=1,
        presence_penalty=0.5,
        frequency_penalty=0.5,
        logit_bias={"1": 1},
        logprobs=True,
        top_logprobs=2,
        seed=7,
        response_format={"type": "json_object"},
        stream_options={"include_usage": True},
        service_tier="auto",
        store=True,
        parallel_tool_calls=True,
    )
    assert set(out) == {"model", "messages", "max_tokens"}


@pytest.mark.parametrize("effort", ["low", "medium", "high"])
def test_reasoning_effort_maps_to_thinking_budget(effort: str) -> None:
    out = req(reasoning_effort=effort, temperature=0.2, top_p=0.5)
    budget = EFFORT_BUDGETS[effort]
    assert out["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert out["max_tokens"] > budget  # Anthropic requires budget < max_tokens
    assert "temperature" not in out and "top_p" not in out  # rejected alongside thinking


def test_thinking_budget_shrinks_to_fit_client_max_tokens() -> None:
    out = req(reasoning_effort="high", max_completion_tokens=5000)
    assert out["max_tokens"] == 5000
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 4999}
    assert "thinking" not in req(reasoning_effort="low", max_tokens=500)  # no room to think


def test_thinking_passthrough_and_no_thinking_cases() -> None:
    out = req(thinking={"type": "enabled", "budget_tokens": 2048}, max_tokens=8000)
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert "thinking" not in req(reasoning_effort="none")
    # Anthropic forbids thinking with forced tool use; the tool choice wins.
    forced = req(reasoning_effort="high", tools=TOOLS, tool_choice="required")
    assert "thinking" not in forced and forced["max_tokens"] == DEFAULT_MAX_TOKENS


def test_anthropic_headers_use_x_api_key() -> None:
    target = EndpointTarget("http://x/v1", "m", api_key="sk", headers={"anthropic-beta": "b"})
    assert anthropic_headers(target) == {
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "b",
        "x-api-key": "sk",
    }


# --- response translation --------------------------------------------------------------------


def anthropic_message(content: list[dict[str, Any]], stop: str, **usage: int) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5, **usage},
    }


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


def sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


# As recorded from the Messages API (ids shortened); CRLF on a few lines, as proxies produce.
RECORDED = """event: message_start
data: {"type":"message_start","message":{"id":"msg_s1","type":"message","role":"assistant","content":[],"model":"claude-x","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}

event: ping
data: {"type": "ping"}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Héllo"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" there"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_9","name":"weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"city\\": \\"Pa"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ris\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":42}}

event: message_stop
data: {"type":"message_stop"}

""".encode().replace(b"\n", b"\r\n", 3)  # noqa: E501


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


# --- provider against an in-process aiohttp server (error paths the simulator lacks) ---------

MESSAGE = anthropic_message([{"type": "text", "text": "hi there"}], "end_turn")
ERROR_EVENT = sse(
    "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
)
SEEN = web.AppKey("seen", list)
HEAD = RECORDED.split(b"event: ping")[0]  # message_start only
CONTENT = RECORDED.split(b"event: content_block_stop")[0]  # up to the first text deltas


async def _sse(request: web.Request, *parts: bytes, pause: float = 0.0) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    for part in parts:
        await resp.write(part)
    await asyncio.sleep(pause)
    return resp


async def _messages(request: web.Request) -> web.StreamResponse:
    request.app[SEEN].append((dict(request.headers), await request.json()))
    scenario = request.headers.get("x-test", "ok")
    if scenario == "ok":
        return web.json_response(MESSAGE)
    if scenario == "garbage":
        return web.Response(text="<html>oops</html>")
    if scenario == "status429":
        body = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
        return web.json_response(body, status=429, headers={"retry-after": "7"})
    if scenario == "slow":
        await asyncio.sleep(5)
    streams = {
        "stream": (RECORDED,),
        "overloaded_early": (HEAD, ERROR_EVENT),
        "error_mid": (CONTENT, ERROR_EVENT),
        "cut": (CONTENT,),
    }
    if scenario == "stall":
        return await _sse(request, CONTENT, pause=5)
    return await _sse(request, *streams[scenario])


async def _models(request: web.Request) -> web.Response:
    return web.json_response({"data": []}, status=200 if request.headers.get("x-api-key") else 401)


@pytest.fixture
async def local() -> AsyncIterator[tuple[AnthropicProvider, str, list[Any]]]:
    app = web.Application()
    app[SEEN] = []
    app.router.add_post("/v1/messages", _messages)
    app.router.add_get("/v1/models", _models)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        yield AnthropicProvider(session), str(server.make_url("/v1")), app[SEEN]
    await server.close()


def target(base_url: str, scenario: str = "ok", **kw: Any) -> EndpointTarget:
    return EndpointTarget(base_url, "claude-up", api_key="k", headers={"x-test": scenario}, **kw)


BODY = {"messages": [{"role": "user", "content": "hi"}], "stream_options": {"include_usage": True}}
TIMEOUT = aiohttp.ClientTimeout(total=10)


async def collect(stream: ChatStream) -> list[dict[str, Any]]:
    return [orjson.loads(chunk) async for chunk in stream]


async def test_local_complete_sends_anthropic_wire_format(local: Any) -> None:
    provider, url, seen = local
    out = await provider.complete(target(url), BODY, TIMEOUT)
    assert out["choices"][0]["message"]["content"] == "hi there"
    headers, sent = seen[0]
    assert headers["x-api-key"] == "k" and "Authorization" not in headers
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["Content-Type"] == "application/json"
    assert sent == {
        "model": "claude-up",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": DEFAULT_MAX_TOKENS,
        "stream": False,
    }


async def test_local_stream(local: Any) -> None:
    provider, url, seen = local
    chunks = await collect(await provider.open_stream(target(url, "stream"), BODY, TIMEOUT))
    assert seen[0][1]["stream"] is True
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["total_tokens"] == 67


async def test_local_status_error_carries_message_and_retry_after(local: Any) -> None:
    provider, url, _ = local
    with pytest.raises(UpstreamError) as info:
        await provider.complete(target(url, "status429"), BODY, TIMEOUT)
    err = info.value
    assert (err.kind, err.status, err.retry_after, err.retryable) == ("status", 429, 7.0, True)
    assert "slow down" in err.message
    assert err.body["error"]["type"] == "rate_limit_error"


async def test_local_non_json_body_is_protocol_error(local: Any) -> None:
    provider, url, _ = local
    with pytest.raises(UpstreamError) as info:
        await provider.complete(target(url, "garbage"), BODY, TIMEOUT)
    assert info.value.kind == "protocol"


async def test_local_error_event_before_content_fails_like_a_529(local: Any) -> None:
    provider, url, _ = local
    with pytest.raises(UpstreamError) as info:
        await provider.open_stream(target(url, "overloaded_early"), BODY, TIMEOUT)
    assert (info.value.kind, info.value.status, info.value.retryable) == ("status", 529, True)


@pytest.mark.parametrize(("scenario", "kind"), [("error_mid", "protocol"), ("cut", "disconnect")])
async def test_local_stream_breaks_after_content(local: Any, scenario: str, kind: str) -> None:
    provider, url, _ = local
    stream = await provider.open_stream(target(url, scenario), BODY, TIMEOUT)
    got: list[bytes] = []
    with pytest.raises(UpstreamError) as info:
        async for chunk in stream:
            got.append(chunk)
    assert info.value.kind == kind
    assert b"there" in got[-1]  # the content before the break was delivered


async def test_local_timeouts(local: Any) -> None:
    provider, url, _ = local
    short = aiohttp.ClientTimeout(total=0.3)
    with pytest.raises(UpstreamError) as info:
        await provider.complete(target(url, "slow"), BODY, short)
    assert info.value.kind == "timeout"
    stream = await provider.open_stream(
        target(url, "stall"), BODY, aiohttp.ClientTimeout(sock_read=0.3)
    )
    with pytest.raises(UpstreamError) as info:
        await collect(stream)
    assert info.value.kind == "timeout"


async def test_connect_error_and_bad_request_translation() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        provider = AnthropicProvider(session)
        with pytest.raises(UpstreamError) as info:
            await provider.complete(target(f"http://127.0.0.1:{port}/v1"), BODY, TIMEOUT)
        assert info.value.kind == "connect"
        bad = {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}
        with pytest.raises(UpstreamError) as info:
            await provider.open_stream(target(f"http://127.0.0.1:{port}/v1"), bad, TIMEOUT)
        assert (info.value.kind, info.value.status, info.value.failover) == ("status", 400, False)
        assert not await provider.health(target(f"http://127.0.0.1:{port}/v1"), TIMEOUT)


async def test_local_health_uses_x_api_key(local: Any) -> None:
    provider, url, _ = local
    assert await provider.health(target(url), TIMEOUT)


# --- end to end against the simulator process ------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", "sim-model", "--output-tokens", "16", "--seed", "1") as proc:
        yield proc


def sim_target(sim: SimulatorProcess, fault: str | None = None) -> EndpointTarget:
    headers = {"x-sim-fault": fault} if fault else {}
    return EndpointTarget(sim.base_url, "sim-model", api_key="k", headers=headers)


CHAT = {
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "tell me about routing"},
    ],
    "temperature": 0.3,
    "seed": 3,  # OpenAI-only: must be dropped, not forwarded
}


async def test_e2e_complete_and_stream_agree(sim: SimulatorProcess) -> None:
    async with aiohttp.ClientSession() as session:
        provider = AnthropicProvider(session)
        out = await provider.complete(sim_target(sim), CHAT, TIMEOUT)
        chunks = await collect(await provider.open_stream(sim_target(sim), CHAT, TIMEOUT))
    assert out["object"] == "chat.completion" and out["model"] == "sim-model"
    choice = out["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["message"]["content"]
    assert out["usage"]["completion_tokens"] == 16 and out["usage"]["prompt_tokens"] > 0

    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == choice["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == out["usage"]


async def test_e2e_max_tokens_maps_to_length(sim: SimulatorProcess) -> None:
    async with aiohttp.ClientSession() as session:
        out = await AnthropicProvider(session).complete(
            sim_target(sim), {**CHAT, "max_completion_tokens": 5}, TIMEOUT
        )
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 5


@pytest.mark.parametrize("fault", ["503", "429"])
@pytest.mark.parametrize("streaming", [False, True])
async def test_e2e_status_faults(sim: SimulatorProcess, fault: str, streaming: bool) -> None:
    async with aiohttp.ClientSession() as session:
        provider = AnthropicProvider(session)
        call = provider.open_stream if streaming else provider.complete
        with pytest.raises(UpstreamError) as info:
            await call(sim_target(sim, fault), CHAT, TIMEOUT)
    err = info.value
    assert (err.kind, err.status, err.retryable, err.failover) == ("status", int(fault), True, True)
    assert err.body["type"] == "error" and err.message.startswith(f"anthropic {fault}: ")
    if fault == "429":
        assert err.retry_after is not None


async def test_e2e_disconnect_mid_stream(sim: SimulatorProcess) -> None:
    async with aiohttp.ClientSession() as session:
        provider = AnthropicProvider(session)
        with pytest.raises(UpstreamError) as info:
            await collect(await provider.open_stream(sim_target(sim, "disconnect"), CHAT, TIMEOUT))
    assert info.value.kind == "disconnect" and info.value.retryable


async def test_e2e_health(sim: SimulatorProcess) -> None:
    async with aiohttp.ClientSession() as session:
        assert await AnthropicProvider(session).health(sim_target(sim), TIMEOUT)
