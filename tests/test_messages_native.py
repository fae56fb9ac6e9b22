"""/v1/messages to an Anthropic-protocol backend: the client's body goes through as written
(thinking signatures, cache_control, fields Routeyard does not know), with its anthropic-version
and anthropic-beta headers; the backend's answer comes back as written, streamed and not. A
body a plugin edited is translated instead, keeping thinking blocks and cache_control."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from anthropic_backend import SIGNATURE, THINKING_REPLY, AnthropicBackend, anthropic_backend
from routerproc import RouterProcess, start_router

CLIENT_BETAS = "interleaved-thinking-2025-05-14,context-management-2025-06-27"
CACHE = {"type": "ephemeral"}
PRIOR_SIGNATURE = "ErUBCkYIBRgCIkB" + "prior-turn" * 6

# A second turn of a conversation with extended thinking and tool use, as the anthropic SDK
# sends it: everything Routeyard must not lose on the way to Anthropic.
CONVERSATION: list[dict[str, Any]] = [
    {"role": "user", "content": [
        {"type": "text", "text": "What is the weather in Paris? Then write a haiku.",
         "cache_control": CACHE}]},
    {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "I should look the weather up first.",
         "signature": PRIOR_SIGNATURE},
        {"type": "tool_use", "id": "toolu_01A", "name": "get_weather",
         "input": {"city": "Paris"}}]},
    {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18°C, clear",
         "cache_control": CACHE}]},
]
TOOLS: list[dict[str, Any]] = [
    {"name": "get_weather", "description": "The weather in a city.",
     "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                      "required": ["city"]}, "cache_control": CACHE},
    {"type": "web_search_20250305", "name": "web_search", "max_uses": 2},
]
SYSTEM: list[dict[str, Any]] = [{"type": "text", "text": "You are a poet who checks facts.",
                                 "cache_control": CACHE}]


# Fields the SDK's typed methods do not take; it sends them as `extra_body`.
EXTRA = {"context_management": {"edits": [{"type": "clear_thinking_20251015"}]},
         "a_field_from_the_future": {"kept": True}}


def sdk_args(model: str) -> dict[str, Any]:
    return {"model": model, "max_tokens": 4096, "system": SYSTEM, "messages": CONVERSATION,
            "tools": TOOLS, "thinking": {"type": "enabled", "budget_tokens": 2048},
            "extra_body": EXTRA}


def request_body(model: str) -> dict[str, Any]:
    args = sdk_args(model)
    extra = args.pop("extra_body")
    return {**args, **extra}


@pytest.fixture
async def backend() -> AsyncIterator[AnthropicBackend]:
    async with anthropic_backend() as running:
        yield running


@pytest.fixture
async def gateway(backend: AnthropicBackend, tmp_path: Path) -> AsyncIterator[RouterProcess]:
    def model(name: str) -> dict[str, Any]:
        return {"name": name, "capabilities": {"tools": True, "reasoning": True},
                "context_window": 200_000, "endpoints": [{
                    "base_url": backend.url, "provider": "anthropic", "api_key": "sk-backend",
                    "headers": {"anthropic-beta": "endpoint-beta-1"}}]}

    config = {
        "models": [model("sonnet"), model("sonnet-edited")],
        "signals": {"keyword": {"sets": {"edit": {"any": ["haiku"]}}}},
        # A decision whose plugins edit the body: it is translated, not sent as written (a
        # plugin that edits nothing, like `headers`, keeps the native body).
        "decisions": [{"name": "edited", "rules": "keyword:edit", "candidates": ["sonnet-edited"],
                       "plugins": [{"type": "headers", "set": {"x-edited": "yes"}},
                                   {"type": "system_prompt", "mode": "append",
                                    "text": "Be brief."}]}],
        "default": {"candidates": ["sonnet"]},
        "pool": {"health_check": {"interval_s": 0}},
    }
    with start_router(config, tmp_path) as process:
        yield process


def client(gateway: RouterProcess) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=gateway.url, api_key="sk-client", max_retries=0,
                                    default_headers={"anthropic-beta": CLIENT_BETAS})


def blocks(message: Any) -> list[dict[str, Any]]:
    return [{k: v for k, v in b.to_dict().items() if k != "parsed_output"}
            for b in message.content]


async def test_the_body_reaches_anthropic_byte_for_byte(gateway: RouterProcess,
                                                        backend: AnthropicBackend) -> None:
    sent = json.dumps(request_body("sonnet"), separators=(",", ":"),
                      ensure_ascii=False).encode()
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway.url}/v1/messages", content=sent, headers={
            "content-type": "application/json", "anthropic-version": "2023-06-01",
            "anthropic-beta": CLIENT_BETAS, "x-api-key": "sk-client"})
    assert response.status_code == 200, response.text
    assert response.headers["x-routeyard-model"] == "sonnet"
    [received] = backend.received
    assert received.raw == sent
    assert received.headers["anthropic-version"] == "2023-06-01"
    assert received.headers["anthropic-beta"] == "endpoint-beta-1," + CLIENT_BETAS
    assert received.headers["x-api-key"] == "sk-backend"  # the endpoint's key, not the client's
    # The answer as the backend wrote it, under the name the client asked for.
    assert response.json() == {**THINKING_REPLY, "model": "sonnet"}


async def test_thinking_signatures_come_back_streamed_and_not(
        gateway: RouterProcess, backend: AnthropicBackend) -> None:
    sdk = client(gateway)
    body = request_body("sonnet")
    message = await sdk.messages.create(**sdk_args("sonnet"))
    async with sdk.messages.stream(**sdk_args("sonnet")) as stream:
        final = await stream.get_final_message()
    assert [b["type"] for b in blocks(message)] == ["thinking", "redacted_thinking", "text"]
    assert message.content[0].signature == SIGNATURE  # type: ignore[union-attr]
    assert blocks(final) == blocks(message) == THINKING_REPLY["content"]
    assert final.stop_reason == message.stop_reason == "end_turn"
    for usage in (message.usage, final.usage):
        assert (usage.input_tokens, usage.cache_creation_input_tokens,
                usage.cache_read_input_tokens, usage.output_tokens) == (21, 7, 1800, 64)
    whole, streamed = (r.body for r in backend.received)
    assert whole == body  # what the SDK sent, untouched
    assert streamed == {**body, "stream": True}
    assert all(r.headers["anthropic-beta"] == "endpoint-beta-1," + CLIENT_BETAS
               for r in backend.received)


async def test_an_edited_body_is_translated_without_losing_thinking_or_caching(
        gateway: RouterProcess, backend: AnthropicBackend) -> None:
    sdk = client(gateway)
    raw = await sdk.messages.with_raw_response.create(**sdk_args("auto"))
    assert raw.headers["x-routeyard-decision"] == "edited"
    assert raw.headers["x-edited"] == "yes"
    message = await raw.parse()
    async with sdk.messages.stream(**sdk_args("auto")) as stream:
        final = await stream.get_final_message()
    # Through OpenAI's form and back: the blocks and their signatures survive.
    assert blocks(final) == blocks(message) == THINKING_REPLY["content"]
    assert message.model == "auto" and message.usage.cache_read_input_tokens == 1800
    assert final.usage.cache_creation_input_tokens == 7
    sent = backend.received[0].body
    assert sent["model"] == "sonnet-edited"
    assert sent["system"] == [*SYSTEM, {"type": "text", "text": "Be brief."}]
    assert sent["messages"] == [
        CONVERSATION[0],
        {"role": "assistant", "content": CONVERSATION[1]["content"]},
        {"role": "user", "content": [{
            "type": "tool_result", "tool_use_id": "toolu_01A",
            "content": [{"type": "text", "text": "18°C, clear", "cache_control": CACHE}]}]},
    ]
    assert sent["tools"] == [TOOLS[0]]  # the server tool has no OpenAI form
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}  # effort "low"
    assert "context_management" not in sent and "a_field_from_the_future" not in sent
    # Forwarded headers reach Anthropic backends on the translated path too.
    assert backend.received[1].headers["anthropic-beta"] == "endpoint-beta-1," + CLIENT_BETAS
