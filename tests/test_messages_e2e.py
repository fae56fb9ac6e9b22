"""POST /v1/messages end to end: the anthropic SDK against `routeyard serve` and the simulator,
over an OpenAI-protocol model and an Anthropic-protocol one; count_tokens; x-api-key auth;
bad input, unknown models and upstream failures in Anthropic's error envelope; Claude Code's
wire; routing, plugins and the decision log as for chat completions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, sse_events, start_simulator

from routeyard.simulator.text import filler_text

TEXT = filler_text(10)  # what the simulator answers with 10 output tokens
USER = [{"role": "user", "content": "hello"}]
# The simulator's two protocols: "hello" goes to m1 (OpenAI), "hello claude" to claude.
PROTOCOLS = [("hello", "m1"), ("hello claude", "claude")]
EVENT_ORDER = ["message_start", "ping", "content_block_start", "content_block_delta",
               "content_block_stop", "message_delta", "message_stop"]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", "m1", "--model", "claude-sim", "--ttft-ms", "0",
                         "--tpot-ms", "0", "--output-tokens", "10") as process:
        for name, fault in (("m1-broken", {"error_5xx_rate": 1.0}),
                            ("m1-cut", {"disconnect_rate": 1.0}),
                            ("sonnet-cut", {"disconnect_rate": 1.0})):
            process.set_profile(name, **fault)
        yield process


# What an agent's requests need: tools, and room for 32k output tokens.
AGENT_READY = {"capabilities": {"tools": True}, "context_window": 200_000}


def config(sim: SimulatorProcess, **extra: Any) -> dict[str, Any]:
    def model(name: str, upstream: str | None = None) -> dict[str, Any]:
        endpoint: dict[str, Any] = {"base_url": sim.base_url}
        if upstream is not None:
            endpoint.update(provider="anthropic", upstream_model=upstream, api_key="k")
        return {"name": name, "endpoints": [endpoint], **AGENT_READY}

    return {
        "models": [model("m1"), model("claude", "claude-sim"), model("m1-broken"),
                   model("m1-cut"), model("sonnet-cut", "sonnet-cut")],
        "signals": {"keyword": {"sets": {"forbidden": {"any": ["forbidden"]}}}},
        "decisions": [{"name": "to-claude", "when": {"keywords_any": ["claude"]},
                       "candidates": ["claude"]}],
        "default": {"candidates": ["m1"], "plugins": [
            {"type": "block", "when": "keyword:forbidden", "message": "Not on my watch."}]},
        "model_routes": [{"match": "claude-*"}],
        "pool": {"health_check": {"interval_s": 0},
                 "retry": {"max_retries": 0}},
        "server": {"max_body_bytes": 200_000},
        **extra,
    }


@pytest.fixture(scope="module")
def gateway(sim: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RouterProcess]:
    with start_router(config(sim), tmp_path_factory.mktemp("messages")) as process:
        yield process


@pytest.fixture
def client(gateway: RouterProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def text_of(message: Any) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def blocks(message: Any) -> list[dict[str, Any]]:
    """Content blocks as dicts (a streamed message's text blocks add `parsed_output`)."""
    return [{k: v for k, v in b.to_dict().items() if k != "parsed_output"}
            for b in message.content]


def error_of(response: httpx.Response) -> dict[str, Any]:
    """Anthropic's envelope, checked whole: {"type": "error", "error": {"type", "message"}}."""
    body = response.json()
    assert body.keys() == {"type", "error"} and body["type"] == "error", body
    assert body["error"].keys() == {"type", "message"} and body["error"]["message"], body
    return body["error"]


# --- answers over both protocols -------------------------------------------------------------


@pytest.mark.parametrize(("prompt", "served_by"), PROTOCOLS)
def test_create_and_stream_agree(client: anthropic.Anthropic, prompt: str,
                                 served_by: str) -> None:
    raw = client.messages.with_raw_response.create(model="auto", max_tokens=100,
                                                   messages=user(prompt))
    assert raw.headers["x-routeyard-model"] == served_by
    assert raw.headers["x-routeyard-request-id"].startswith("req_")
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_") and message.model == "auto"
    assert [b.type for b in message.content] == ["text"] and text_of(message) == TEXT
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.output_tokens == 10 and message.usage.input_tokens > 0
    assert message.usage.cache_read_input_tokens == 0

    with client.messages.stream(model="auto", max_tokens=100, messages=user(prompt)) as stream:
        streamed_text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed_text == TEXT
    assert blocks(final) == blocks(message)
    assert final.stop_reason == "end_turn" and final.model == "auto"
    assert final.usage.output_tokens == 10
    assert final.usage.input_tokens == message.usage.input_tokens


@pytest.mark.parametrize(("prompt", "served_by"), PROTOCOLS)
def test_the_event_sequence_and_max_tokens(gateway: RouterProcess, prompt: str,
                                           served_by: str) -> None:
    body = {"model": "auto", "max_tokens": 4, "messages": user(prompt), "stream": True}
    response = httpx.post(f"{gateway.url}/v1/messages", json=body)
    assert response.status_code == 200 and response.headers["x-routeyard-model"] == served_by
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]] == EVENT_ORDER
    assert all(data["type"] == name for name, data in events)
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert {d["type"] for d in deltas} == {"text_delta"}
    assert "".join(d["text"] for d in deltas) == filler_text(4)
    assert events[-2][1]["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert events[-2][1]["usage"]["output_tokens"] == 4
    whole = httpx.post(f"{gateway.url}/v1/messages", json={**body, "stream": False}).json()
    assert whole["stop_reason"] == "max_tokens" and whole["usage"]["output_tokens"] == 4


def test_claude_model_names_are_routed(client: anthropic.Anthropic) -> None:
    raw = client.messages.with_raw_response.create(model="claude-sonnet-4-5", max_tokens=50,
                                                   messages=USER)
    assert raw.headers["x-routeyard-decision"] == "default"
    assert raw.headers["x-routeyard-model"] == "m1"
    assert raw.parse().model == "claude-sonnet-4-5"
    raw = client.messages.with_raw_response.create(model="claude-opus-4-1", max_tokens=50,
                                                   messages=user("hi claude"))
    assert raw.headers["x-routeyard-decision"] == "to-claude"
    assert raw.headers["x-routeyard-model"] == "claude"


def test_plugins_and_the_decision_log_apply(client: anthropic.Anthropic,
                                            gateway: RouterProcess) -> None:
    raw = client.messages.with_raw_response.create(model="auto", max_tokens=50,
                                                   messages=user("this is forbidden"))
    assert raw.headers["x-routeyard-blocked"] == "policy"
    assert "x-routeyard-model" not in raw.headers
    assert text_of(raw.parse()) == "Not on my watch." and raw.parse().stop_reason == "end_turn"
    with client.messages.stream(model="auto", max_tokens=50,
                                messages=user("still forbidden")) as stream:
        assert stream.get_final_message().content[0].text == "Not on my watch."
    served = client.messages.with_raw_response.create(model="auto", max_tokens=50,
                                                      messages=USER)
    feedback = httpx.post(f"{gateway.base_url}/feedback", json={
        "request_id": served.headers["x-routeyard-request-id"], "rating": 1})
    assert feedback.status_code == 200, feedback.text
    assert feedback.json()["decision"] == "default"
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'routeyard_requests_total{decision="default",model="m1",status="ok"}' in metrics


# --- count_tokens ----------------------------------------------------------------------------


def test_count_tokens(client: anthropic.Anthropic) -> None:
    plain = client.messages.count_tokens(model="auto", messages=[
        {"role": "user", "content": "hello there"}])
    assert plain.input_tokens == 8  # 3 (reply primer) + 3 (message) + 2 (text)
    tool = {"name": "get_weather", "description": "The weather in a city.",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
    with_system = client.messages.count_tokens(
        model="claude-sonnet-4-5", system="You are terse.",
        messages=[{"role": "user", "content": "hello there"}])
    with_tools = client.messages.count_tokens(
        model="auto", messages=[{"role": "user", "content": "hello there"}], tools=[tool])
    assert with_system.input_tokens == plain.input_tokens + 3 + 4
    assert with_tools.input_tokens > plain.input_tokens + 10
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="nope", messages=USER)
    with pytest.raises(anthropic.BadRequestError, match="messages"):
        client.messages.count_tokens(model="auto", messages=[])


# --- auth ------------------------------------------------------------------------------------


def test_x_api_key_auth(sim: SimulatorProcess, tmp_path: Path) -> None:
    with start_router(config(sim, server={"api_keys": ["sk-right"]}), tmp_path) as gateway:
        # The SDK given only an x-api-key header sends it as is.
        by_header = anthropic.Anthropic(base_url=gateway.url, api_key=None, max_retries=0,
                                        default_headers={"x-api-key": "sk-right"})
        assert text_of(by_header.messages.create(model="auto", max_tokens=20,
                                                 messages=USER)) == filler_text(10)
        by_key = anthropic.Anthropic(base_url=gateway.url, api_key="sk-right", max_retries=0)
        assert by_key.messages.count_tokens(model="auto", messages=USER).input_tokens > 0
        wrong = anthropic.Anthropic(base_url=gateway.url, api_key=None, max_retries=0,
                                    default_headers={"x-api-key": "sk-wrong"})
        with pytest.raises(anthropic.AuthenticationError) as caught:
            wrong.messages.create(model="auto", max_tokens=20, messages=USER)
        assert caught.value.status_code == 401
        assert caught.value.body == {"type": "error", "error": {
            "type": "authentication_error", "message": "Missing or invalid API key."}}
        response = httpx.post(f"{gateway.url}/v1/messages/count_tokens",
                              json={"model": "auto", "messages": USER})
        assert response.status_code == 401
        assert error_of(response)["type"] == "authentication_error"


# --- bad input -------------------------------------------------------------------------------

GOOD: dict[str, Any] = {"model": "auto", "max_tokens": 20, "messages": USER}


def _with(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


BAD_BODIES: list[tuple[str, Any, str]] = [
    ("missing max_tokens", {"model": "auto", "messages": USER}, "max_tokens"),
    ("max_tokens a string", _with(max_tokens="10"), "max_tokens"),
    ("max_tokens zero", _with(max_tokens=0), "max_tokens"),
    ("missing model", {"max_tokens": 5, "messages": USER}, "model"),
    ("messages not a list", _with(messages="hi"), "messages"),
    ("no messages", _with(messages=[]), "messages"),
    ("unknown role", _with(messages=[{"role": "robot", "content": "hi"}]), "messages[0].role"),
    ("content missing", _with(messages=[{"role": "user"}]), "messages[0].content"),
    ("content a number", _with(messages=[{"role": "user", "content": 5}]),
     "messages[0].content"),
    ("block not an object", _with(messages=[{"role": "user", "content": ["hi"]}]),
     "messages[0].content[0]"),
    ("block without type", _with(messages=[{"role": "user", "content": [{"text": "hi"}]}]),
     "messages[0].content[0].type"),
    ("text block without text", _with(messages=[{"role": "user", "content": [
        {"type": "text"}]}]), "messages[0].content[0].text"),
    ("image without source", _with(messages=[{"role": "user", "content": [
        {"type": "image"}]}]), "messages[0].content[0].source"),
    ("base64 image without data", _with(messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png"}}]}]),
     "messages[0].content[0].source"),
    ("tool_use input a string", _with(messages=[{"role": "user", "content": "go"}, {
        "role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": "{}"}]}]),
     "messages[1].content[0].input"),
    ("tool_result without its tool_use", _with(messages=[{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_missing", "content": "42"}]}]),
     "toolu_missing"),
    ("tool_result answering an older turn", _with(messages=[
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]},
        {"role": "assistant", "content": "done"},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]}]),
     "messages[4].content[0].tool_use_id"),
    ("is_error a string", _with(messages=[
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": "yes"}]}]),
     "is_error"),
    ("system a number", _with(system=5), "system"),
    ("temperature a string", _with(temperature="hot"), "temperature"),
    ("stream a string", _with(stream="yes"), "stream"),
    ("stop_sequences a string", _with(stop_sequences="END"), "stop_sequences"),
    ("tools an object", _with(tools={"name": "f"}), "tools"),
    ("tool without input_schema", _with(tools=[{"name": "f"}]), "tools[0].input_schema"),
    ("unknown tool_choice", _with(tools=[{"name": "f", "input_schema": {}}],
                                  tool_choice={"type": "sometimes"}), "tool_choice.type"),
    ("thinking budget a string", _with(thinking={"type": "enabled", "budget_tokens": "lots"}),
     "thinking.budget_tokens"),
    ("metadata user_id a number", _with(metadata={"user_id": 5}), "metadata.user_id"),
    ("body a list", [GOOD], "JSON object"),
]


@pytest.mark.parametrize(("case", "body", "named"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_bad_bodies_are_a_400_in_anthropics_envelope(gateway: RouterProcess, case: str,
                                                     body: Any, named: str) -> None:
    response = httpx.post(f"{gateway.url}/v1/messages", json=body)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["type"] == "invalid_request_error" and named in error["message"]


@pytest.mark.parametrize(("raw", "status", "kind", "said"), [
    (b"{not json", 400, "invalid_request_error", "not valid JSON"),
    (b"", 400, "invalid_request_error", "empty"),
    (b"[" * 300 + b"]" * 300, 400, "invalid_request_error", "nested"),
    (json.dumps(_with(metadata={"deep": json.loads("[" * 200 + "]" * 200)})).encode(), 400,
     "invalid_request_error", "nested"),
    (json.dumps(_with(system="x" * 250_000)).encode(), 413, "request_too_large", "limit"),
], ids=["malformed JSON", "empty", "deep JSON", "deep JSON in a field", "too large"])
def test_unreadable_bodies(gateway: RouterProcess, raw: bytes, status: int, kind: str,
                           said: str) -> None:
    response = httpx.post(f"{gateway.url}/v1/messages", content=raw,
                          headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = error_of(response)
    assert error["type"] == kind and said in error["message"]


def test_the_sdk_raises_its_own_errors(client: anthropic.Anthropic,
                                       gateway: RouterProcess) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="no-such-model", max_tokens=5, messages=USER)
    assert caught.value.body["error"]["type"] == "not_found_error"
    assert "no-such-model" in caught.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError, match="toolu_x"):
        client.messages.create(model="auto", max_tokens=5, messages=[{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_x", "content": "1"}]}])
    with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
        client.messages.create(model="auto", max_tokens=-1, messages=USER)
    wrong_method = httpx.get(f"{gateway.url}/v1/messages")
    assert wrong_method.status_code == 405 and error_of(wrong_method)["type"] == (
        "invalid_request_error")
    typo = httpx.post(f"{gateway.url}/v1/messagez", json=GOOD)
    assert typo.status_code == 404  # outside /v1/messages: OpenAI's envelope
    assert typo.json()["error"]["code"] == "not_found"


# --- upstream failures -----------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_failure_is_an_api_error(client: anthropic.Anthropic, stream: bool) -> None:
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="m1-broken", max_tokens=20, messages=USER, stream=stream)
    assert caught.value.status_code == 502
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "api_error"
    assert caught.value.response.headers["x-routeyard-decision"] == "direct"


@pytest.mark.parametrize("model", ["m1-cut", "sonnet-cut"])
def test_a_stream_that_breaks_ends_with_an_error_event(client: anthropic.Anthropic,
                                                       gateway: RouterProcess,
                                                       model: str) -> None:
    with pytest.raises(anthropic.APIStatusError, match="broke"), client.messages.stream(
            model=model, max_tokens=20, messages=USER) as stream:
        stream.get_final_message()
    response = httpx.post(f"{gateway.url}/v1/messages", json={
        "model": model, "max_tokens": 20, "messages": USER, "stream": True})
    events = sse_events(response.text)
    assert events[0][0] == "message_start" and events[-1][0] == "error"
    assert "message_stop" not in [name for name, _ in events]
    assert events[-1][1]["error"]["type"] == "api_error"
    assert "broke" in events[-1][1]["error"]["message"]


# --- Claude Code's wire ----------------------------------------------------------------------

BETAS = ("claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,"
         "fine-grained-tool-streaming-2025-05-14,oauth-2025-04-20")


def claude_code_body(prompt: str) -> dict[str, Any]:
    tools: list[dict[str, Any]] = [
        {"name": f"Tool{i}", "description": f"Tool number {i}.",
         "input_schema": {"$schema": "http://json-schema.org/draft-07/schema#",
                          "type": "object", "additionalProperties": False,
                          "properties": {"arg": {"type": "string"}}, "required": ["arg"]}}
        for i in range(22)]
    tools += [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
              {"type": "bash_20250124", "name": "bash"}]
    return {
        "model": "claude-sonnet-4-5", "max_tokens": 32000, "stream": True,
        "messages": [
            {"role": "system", "content": "You are Claude Code, Anthropic's official CLI."},
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>context</system-reminder>"},
                {"type": "text", "text": prompt, "cache_control": {"type": "ephemeral"}}]}],
        "system": [{"type": "text", "text": "You are an interactive CLI tool.",
                    "cache_control": {"type": "ephemeral"}}],
        "tools": tools, "metadata": {"user_id": "user_abc_account_123_session_456"},
        "thinking": {"type": "adaptive"}, "output_config": {"effort": "medium"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    }


@pytest.mark.parametrize(("prompt", "served_by"), PROTOCOLS)
def test_claude_codes_wire(gateway: RouterProcess, prompt: str, served_by: str) -> None:
    assert httpx.head(gateway.url + "/").status_code == 200
    headers = {"authorization": "Bearer sk-ant-oat01-whatever", "anthropic-version": "2023-06-01",
               "anthropic-beta": BETAS, "x-app": "cli", "user-agent": "claude-cli/2.0.0"}
    url = f"{gateway.url}/v1/messages?beta=true"
    body = claude_code_body(prompt)
    streamed = httpx.post(url, json=body, headers=headers)
    assert streamed.status_code == 200, streamed.text
    assert streamed.headers["x-routeyard-model"] == served_by
    events = sse_events(streamed.text)
    assert events[0][0] == "message_start" and events[-1][0] == "message_stop"
    text = "".join(d["delta"]["text"] for name, d in events if name == "content_block_delta")
    # ... then again without `stream`, as Claude Code retries.
    whole = httpx.post(url, json={**body, "stream": False}, headers=headers)
    assert whole.status_code == 200, whole.text
    assert whole.json()["content"] == [{"type": "text", "text": text}]
    assert whole.json()["model"] == "claude-sonnet-4-5"
