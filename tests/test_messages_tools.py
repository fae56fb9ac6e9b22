"""/v1/messages to an OpenAI-protocol backend whose answers the test scripts: a tool-use round
trip, a coding agent's conversation (long system prompt, 20 tools, tool results, streaming)
that the SDK rebuilds streamed exactly as a direct call returns it, tool_choice, and what the
OpenAI backend is sent."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anthropic
import pytest
from routerproc import RouterProcess, start_router
from scripted_openai import completion, scripted_backend

WEATHER_TOOL = {"name": "get_weather", "description": "The current weather in a city.",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                 "required": ["city"]}}


def weather_script(body: dict[str, Any]) -> dict[str, Any]:
    """Asks for the weather, then answers from the tool's result."""
    last = body["messages"][-1]
    if last["role"] == "tool":
        return completion(f"In Paris it is {last['content']}.",
                          usage={"prompt_tokens": 300, "completion_tokens": 9,
                                 "total_tokens": 309,
                                 "prompt_tokens_details": {"cached_tokens": 256}})
    return completion("Let me check.", tool_calls=[
        {"id": "call_w1", "name": "get_weather", "arguments": {"city": "Paris"}}])


class Backend:
    """The scripted backend's URL, the bodies it got, and a replaceable script."""

    def __init__(self) -> None:
        self.url = ""
        self.received: list[dict[str, Any]] = []
        self.script: Callable[[dict[str, Any]], dict[str, Any]] = weather_script


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    state = Backend()
    async with scripted_backend(lambda body: state.script(body)) as (url, received):
        state.url, state.received = url, received
        yield state


@pytest.fixture
async def gateway(backend: Backend, tmp_path: Path) -> AsyncIterator[RouterProcess]:
    config = {
        "models": [{"name": "coder", "endpoints": [{"base_url": backend.url}],
                    "capabilities": {"tools": True, "reasoning": True, "vision": True},
                    "context_window": 200_000}],
        "model_routes": [{"match": "claude-*"}],
        "default": {"candidates": ["coder"]},
        "pool": {"health_check": {"interval_s": 0}},
    }
    with start_router(config, tmp_path) as process:
        yield process


@pytest.fixture
def sdk(gateway: RouterProcess) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=gateway.url, api_key="k", max_retries=0)


def blocks(message: Any) -> list[dict[str, Any]]:
    return [{k: v for k, v in b.to_dict().items() if k != "parsed_output"}
            for b in message.content]


async def streamed(sdk: anthropic.AsyncAnthropic, **args: Any) -> Any:
    async with sdk.messages.stream(**args) as stream:
        return await stream.get_final_message()


@pytest.mark.parametrize("stream", [False, True])
async def test_a_tool_use_round_trip(sdk: anthropic.AsyncAnthropic, backend: Backend,
                                     stream: bool) -> None:
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    args = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "tools": [WEATHER_TOOL]}
    call = (await streamed(sdk, messages=ask, **args) if stream
            else await sdk.messages.create(messages=ask, **args))
    assert call.stop_reason == "tool_use"
    assert blocks(call) == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_w1", "name": "get_weather", "input": {"city": "Paris"}}]
    answer_turn = [*ask, {"role": "assistant", "content": call.content},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_w1",
                                                 "content": "18°C and clear"}]}]
    final = (await streamed(sdk, messages=answer_turn, **args) if stream
             else await sdk.messages.create(messages=answer_turn, **args))
    assert final.stop_reason == "end_turn"
    assert blocks(final) == [{"type": "text", "text": "In Paris it is 18°C and clear."}]
    assert final.usage.cache_read_input_tokens == 256 and final.usage.input_tokens == 44
    first, second = backend.received
    assert first["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "parameters": WEATHER_TOOL["input_schema"],
        "description": WEATHER_TOOL["description"]}}]
    assert second["messages"][1:] == [
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_w1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_w1", "content": "18°C and clear"}]
    assert first["max_tokens"] == 1024 and first["model"] == "coder"
    assert bool(first.get("stream")) is stream


# --- a coding agent's conversation -----------------------------------------------------------

SYSTEM_PROMPT = "You are a coding agent working in a large repository. " * 120
AGENT_TOOLS = [{"name": f"tool_{i:02d}", "description": f"Agent tool number {i}.",
                "input_schema": {"type": "object", "properties": {
                    "path": {"type": "string"}, "limit": {"type": "integer"},
                    "options": {"type": "object", "properties": {"flag": {"type": "boolean"}}}},
                    "required": ["path"]}} for i in range(20)]


def agent_conversation() -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": "Fix the failing test."}]}]
    for turn in range(4):
        call_ids = [f"toolu_{turn}{k}" for k in range(2)]
        messages.append({"role": "assistant", "content": [
            {"type": "text", "text": f"Step {turn}: reading files."},
            *({"type": "tool_use", "id": cid, "name": f"tool_{turn * 2 + k:02d}",
               "input": {"path": f"src/file_{turn}_{k}.py", "limit": 200}}
              for k, cid in enumerate(call_ids))]})
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call_ids[0],
             "content": [{"type": "text", "text": f"contents of file {turn}\n" * 30}]},
            {"type": "tool_result", "tool_use_id": call_ids[1], "is_error": turn == 2,
             "content": "No such file" if turn == 2 else "ok"}]})
    messages.append({"role": "user", "content": "Now run the tests."})
    return messages


def agent_script(body: dict[str, Any]) -> dict[str, Any]:
    return completion(
        "I will run the tests and then inspect the failure.",
        reasoning="The failure is in file 2. Run pytest first, then read the log.",
        tool_calls=[{"id": "call_run", "name": "tool_07",
                     "arguments": {"path": "tests/", "options": {"flag": True}}},
                    {"id": "call_read", "name": "tool_03",
                     "arguments": {"path": "src/file_2_1.py", "limit": 50}}],
        usage={"prompt_tokens": 9000, "completion_tokens": 120, "total_tokens": 9120,
               "prompt_tokens_details": {"cached_tokens": 8192}})


async def test_a_coding_agents_stream_rebuilds_the_direct_answer(
        sdk: anthropic.AsyncAnthropic, backend: Backend) -> None:
    backend.script = agent_script
    args = {"model": "claude-sonnet-4-5", "max_tokens": 32000, "messages": agent_conversation(),
            "system": [{"type": "text", "text": SYSTEM_PROMPT,
                        "cache_control": {"type": "ephemeral"}}],
            "tools": AGENT_TOOLS, "metadata": {"user_id": "session-42"},
            "thinking": {"type": "enabled", "budget_tokens": 16000}}
    direct = await sdk.messages.create(**args, timeout=60)  # the SDK's long-request guard
    final = await streamed(sdk, **args)
    assert blocks(final) == blocks(direct) == [
        {"type": "thinking", "signature": "",
         "thinking": "The failure is in file 2. Run pytest first, then read the log."},
        {"type": "text", "text": "I will run the tests and then inspect the failure."},
        {"type": "tool_use", "id": "call_run", "name": "tool_07",
         "input": {"path": "tests/", "options": {"flag": True}}},
        {"type": "tool_use", "id": "call_read", "name": "tool_03",
         "input": {"path": "src/file_2_1.py", "limit": 50}}]
    assert final.stop_reason == direct.stop_reason == "tool_use"
    assert final.usage.to_dict() == direct.usage.to_dict()
    assert (direct.usage.input_tokens, direct.usage.cache_read_input_tokens,
            direct.usage.output_tokens) == (808, 8192, 120)

    sent, sent_streaming = backend.received
    assert sent_streaming == {**sent, "stream": True, "stream_options": {"include_usage": True}}
    assert sent["messages"][0] == {"role": "system", "content": [
        {"type": "text", "text": SYSTEM_PROMPT, "cache_control": {"type": "ephemeral"}}]}
    assert len(sent["tools"]) == 20 and sent["reasoning_effort"] == "medium"
    assert sent["user"] == "session-42" and sent["metadata"] == {"user_id": "session-42"}
    roles = [m["role"] for m in sent["messages"]]
    assert roles == ["system", "user"] + ["assistant", "tool", "tool"] * 4 + ["user"]
    errors = [m["content"] for m in sent["messages"] if m["role"] == "tool"
              and m["content"].startswith("Error: ")]
    assert errors == ["Error: No such file"]


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "auto"}, ("auto", None)),
    ({"type": "any"}, ("required", None)),
    ({"type": "none"}, ("none", None)),
    ({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
     ({"type": "function", "function": {"name": "get_weather"}}, False)),
    ({"type": "tool", "name": "web_search"}, (None, None)),  # a server tool: left out
])
async def test_tool_choice_and_server_tools(sdk: anthropic.AsyncAnthropic, backend: Backend,
                                            choice: dict[str, Any], expected: tuple[Any, Any]
                                            ) -> None:
    tools = [WEATHER_TOOL, {"type": "web_search_20250305", "name": "web_search"},
             {"type": "bash_20250124", "name": "bash"}]
    await sdk.messages.create(model="auto", max_tokens=64, tools=tools,  # type: ignore[arg-type]
                              tool_choice=choice,  # type: ignore[arg-type]
                              messages=[{"role": "user", "content": "weather?"}])
    [sent] = backend.received
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather"]
    assert (sent.get("tool_choice"), sent.get("parallel_tool_calls")) == expected


async def test_only_server_tools_means_no_tools(sdk: anthropic.AsyncAnthropic,
                                                backend: Backend) -> None:
    backend.script = lambda body: completion("plain")
    message = await sdk.messages.create(
        model="auto", max_tokens=64, messages=[{"role": "user", "content": "search"}],
        tools=[{"type": "web_search_20250305", "name": "web_search"}],  # type: ignore[list-item]
        tool_choice={"type": "any"}, stop_sequences=["END"],
        extra_body={"temperature": 0.2, "top_k": 5})  # this SDK no longer takes them
    assert message.content[0].text == "plain"  # type: ignore[union-attr]
    [sent] = backend.received
    assert "tools" not in sent and "tool_choice" not in sent
    assert (sent["stop"], sent["temperature"], sent["top_k"]) == (["END"], 0.2, 5)


async def test_a_stop_sequence_and_images_reach_the_backend(sdk: anthropic.AsyncAnthropic,
                                                            backend: Backend) -> None:
    answer = completion("halted")
    answer["choices"][0]["stop_reason"] = "END"  # vLLM names the stop string that matched
    backend.script = lambda body: answer
    image = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    message = await sdk.messages.create(model="auto", max_tokens=64, messages=[
        {"role": "user", "content": [
            {"type": "image", "source": image},
            {"type": "image", "source": {"type": "url", "url": "https://x.test/cat.png"}},
            {"type": "text", "text": "Describe both."}]}], stop_sequences=["END"])
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")
    assert json.loads(json.dumps(backend.received[0]["messages"])) == [{"role": "user",
                                                                       "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}},
        {"type": "text", "text": "Describe both."}]}]
