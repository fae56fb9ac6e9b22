"""Anthropic adapter over HTTP: an in-process server and the simulator."""

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
from anthropic_samples import RECORDED, anthropic_message, sse
from simproc import SimulatorProcess, start_simulator

from routeyard.pool.providers.anthropic import (
    DEFAULT_MAX_TOKENS,
    AnthropicProvider,
)
from routeyard.pool.providers.base import ChatStream, EndpointTarget, UpstreamError

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

