"""The /v1/messages translation as pure functions: Anthropic request → internal body (and, through
the Anthropic provider, back), internal answer → Anthropic message, internal chunks → the SSE
events the anthropic SDK accumulates; and the provider's native passthrough and forwarding."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event

from routeyard.api.anthropic_answer import (
    AnthropicEventStream,
    anthropic_usage,
    to_anthropic_message,
)
from routeyard.api.anthropic_request import count_input_tokens, to_internal_request
from routeyard.errors import InvalidRequest
from routeyard.pool.providers.anthropic import (
    AnthropicProvider,
    to_anthropic_request,
    with_forwarded,
)
from routeyard.pool.providers.anthropic_stream import StreamTranslator
from routeyard.pool.providers.base import EndpointTarget
from routeyard.wire import WithNative

CACHE = {"type": "ephemeral"}


def internal(**body: Any) -> dict[str, Any]:
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    return to_internal_request({"model": "auto", "max_tokens": 100, **body})


# --- requests --------------------------------------------------------------------------------


def test_system_prompts_in_both_places() -> None:
    out = internal(system="Be brief.", messages=[
        {"role": "system", "content": [{"type": "text", "text": "Use tools."}]},
        {"role": "user", "content": "hi"}])
    assert out["messages"] == [{"role": "system", "content": "Be brief."},
                               {"role": "system", "content": "Use tools."},
                               {"role": "user", "content": "hi"}]
    blocks = internal(system=[{"type": "text", "text": "A"},
                              {"type": "text", "text": "B", "cache_control": CACHE}])
    assert blocks["messages"][0] == {"role": "system", "content": [
        {"type": "text", "text": "A"}, {"type": "text", "text": "B", "cache_control": CACHE}]}


def test_user_content_blocks() -> None:
    out = internal(messages=[{"role": "user", "content": [
        {"type": "text", "text": "look", "cache_control": CACHE},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AA"}},
        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
        {"type": "document", "title": "spec.pdf",
         "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                        "data": "plain doc"}}]}])
    assert out["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "look", "cache_control": CACHE},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AA"}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE",
                                  "filename": "spec.pdf"}},
        {"type": "text", "text": "plain doc"}]}]


def test_what_has_no_openai_form_is_left_out_with_a_debug_log(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="routeyard.api.anthropic"):
        out = internal(
            messages=[{"role": "user", "content": [
                {"type": "image", "source": {"type": "file", "file_id": "file_1"}},
                {"type": "search_result", "source": "s", "title": "t", "content": []},
                {"type": "text", "text": "hi"}]}],
            tools=[{"type": "bash_20250124", "name": "bash"}],
            thinking={"type": "adaptive"}, output_config={"effort": "high"},
            context_management={"edits": []}, service_tier="auto")
    assert out == {"model": "auto", "max_tokens": 100,
                   "messages": [{"role": "user", "content": "hi"}]}
    logged = caplog.text
    for fragment in ("messages[0].content[0].source", "search_result", "tools[0]",
                     "adaptive", "context_management, output_config, service_tier"):
        assert fragment in logged


def test_assistant_turns_and_tool_results() -> None:
    out = internal(messages=[
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "plan", "signature": "sig-1"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "text", "text": "Calling."},
            {"type": "tool_use", "id": "toolu_1", "name": "shot", "input": {"n": 1}},
            {"type": "tool_use", "id": "toolu_2", "name": "shot", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "cache_control": CACHE,
             "content": [{"type": "text", "text": "took it"},
                         {"type": "image", "source": {"type": "url", "url": "https://x/i.png"}}]},
            {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True,
             "content": "lens cap on"},
            {"type": "text", "text": "and?"}]}])
    assert out["messages"][1:] == [
        {"role": "assistant", "content": "Calling.",
         "tool_calls": [
             {"id": "toolu_1", "type": "function",
              "function": {"name": "shot", "arguments": '{"n":1}'}},
             {"id": "toolu_2", "type": "function", "function": {"name": "shot",
                                                                "arguments": "{}"}}],
         "thinking_blocks": [{"type": "thinking", "thinking": "plan", "signature": "sig-1"},
                             {"type": "redacted_thinking", "data": "opaque"}]},
        {"role": "tool", "tool_call_id": "toolu_1",
         "content": [{"type": "text", "text": "took it", "cache_control": CACHE}]},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: lens cap on"},
        {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://x/i.png"}},
            {"type": "text", "text": "and?"}]},
    ]


@pytest.mark.parametrize(("thinking", "effort"), [
    ({"type": "enabled", "budget_tokens": 1024}, "low"),
    ({"type": "enabled", "budget_tokens": 4095}, "low"),
    ({"type": "enabled", "budget_tokens": 4096}, "medium"),
    ({"type": "enabled", "budget_tokens": 31999}, "high"),
    ({"type": "disabled"}, None),
    ({"type": "adaptive"}, None),
])
def test_thinking_budgets_become_reasoning_efforts(thinking: dict[str, Any],
                                                   effort: str | None) -> None:
    assert internal(thinking=thinking).get("reasoning_effort") == effort


def test_sampling_stream_and_metadata() -> None:
    out = internal(stream=True, temperature=0.5, top_p=0.9, top_k=40, stop_sequences=["X"],
                   metadata={"user_id": "u-1"})
    assert out == {"model": "auto", "max_tokens": 100,
                   "messages": [{"role": "user", "content": "hi"}], "stream": True,
                   "stream_options": {"include_usage": True}, "temperature": 0.5, "top_p": 0.9,
                   "top_k": 40, "stop": ["X"], "user": "u-1", "metadata": {"user_id": "u-1"}}
    counted = to_internal_request({"model": "auto", "messages": [{"role": "user",
                                                                  "content": "hi"}]},
                                  count_only=True)
    assert "max_tokens" not in counted


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": [{"role": "assistant", "content": [{"type": "thinking"}]}]},
     "messages[0].content[0].thinking"),
    ({"messages": [{"role": "assistant", "content": [
        {"type": "tool_use", "name": "f", "input": {}}]}]}, "messages[0].content[0].id"),
    ({"messages": [{"role": "user", "content": [
        {"type": "document", "source": "x"}]}]}, "messages[0].content[0].source"),
    ({"tools": [{"name": "", "input_schema": {}}]}, "tools[0].name"),
    ({"tools": [{"name": "f", "input_schema": {}, "description": 3}]}, "tools[0].description"),
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"tool_choice": {"type": "tool"}}, "tool_choice.name"),
    ({"top_k": 1.5}, "top_k"),
    ({"thinking": "on"}, "thinking"),
    ({"metadata": []}, "metadata"),
])
def test_bad_fields_name_their_place(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        internal(**body)
    assert caught.value.param == param and caught.value.message.startswith(param + ": ")


def test_what_survives_the_trip_to_an_anthropic_backend() -> None:
    """Anthropic → internal → Anthropic (the provider's translation, used when a plugin edited
    the body): thinking with signatures, tool use and results, cache_control everywhere."""
    system = [{"type": "text", "text": "Rules.", "cache_control": CACHE}]
    tools = [{"name": "f", "description": "F.", "input_schema": {"type": "object"},
              "cache_control": CACHE}]
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "go", "cache_control": CACHE}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "t", "signature": "sig"},
            {"type": "redacted_thinking", "data": "r"},
            {"type": "text", "text": "ok"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": [1, 2]}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "done"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "AA"}}]},
    ]
    body = internal(system=system, tools=tools, messages=messages, stop_sequences=["Z"],
                    metadata={"user_id": "u"})
    back = to_anthropic_request(body, "claude-x")
    assert back["system"] == system and back["tools"] == tools
    assert back["messages"][:2] == messages[:2]
    assert back["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1",
         "content": [{"type": "text", "text": "done"}]},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "AA"}}]}
    assert (back["stop_sequences"], back["metadata"]) == (["Z"], {"user_id": "u"})


def test_count_input_tokens_counts_tools_and_tool_calls() -> None:
    plain = count_input_tokens(internal())
    with_call = count_input_tokens(internal(messages=[
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "lookup", "input": {"q": "weather"}}]}]))
    with_tools = count_input_tokens(internal(tools=[
        {"name": "lookup", "input_schema": {"type": "object"}}]))
    assert plain == 3 + 3 + 1
    assert with_call > plain + 3 and with_tools > plain + 5


# --- answers ---------------------------------------------------------------------------------


def answer(message: dict[str, Any], finish: str = "stop", **usage: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "choices": [{"index": 0, "message": message,
                                             "finish_reason": finish}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 5, **usage}}


@pytest.mark.parametrize(("finish", "reason"), [
    ("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"),
    ("content_filter", "refusal"), (None, "end_turn"), ("something_new", "end_turn")])
def test_stop_reasons(finish: str | None, reason: str) -> None:
    message = to_anthropic_message(answer({"content": "x"}, finish),  # type: ignore[arg-type]
                                   model="m", id_="msg_1")
    assert message["stop_reason"] == reason and message["stop_sequence"] is None


def test_an_answer_as_an_anthropic_message() -> None:
    message = to_anthropic_message(answer({
        "role": "assistant", "content": None, "refusal": "I cannot.",
        "reasoning_content": "thought",
        "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{bad"}}]},
        "tool_calls", prompt_tokens_details={"cached_tokens": 30},
        cache_creation_input_tokens=10), model="claude-x", id_="msg_9")
    tool = message["content"][2]
    assert tool["id"].startswith("toolu_") and tool["input"] == {"_raw_arguments": "{bad"}
    assert message["content"][:2] == [
        {"type": "thinking", "thinking": "thought", "signature": ""},
        {"type": "text", "text": "I cannot."}]
    assert message["usage"] == {"input_tokens": 10, "output_tokens": 5,
                                "cache_creation_input_tokens": 10,
                                "cache_read_input_tokens": 30}
    assert anthropic_usage(None)["input_tokens"] == 0


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None,
          usage: dict[str, Any] | None = None) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "chatcmpl-1", "choices": choices, **({"usage": usage} if usage else {})}


def accumulate(chunks: list[dict[str, Any]]) -> tuple[list[str], Any]:
    """The events for `chunks`, and the message the anthropic SDK builds from them."""
    encoder = AnthropicEventStream("claude-x", "req_0123")
    frames = [f for c in chunks for f in encoder.feed(c)] + encoder.finish()
    snapshot, buffers, names = None, {}, []
    for frame in frames:
        name_line, data_line = frame.decode().strip().split("\n")
        names.append(name_line.removeprefix("event: "))
        event = orjson.loads(data_line.removeprefix("data: "))
        if event["type"] != "ping":
            snapshot = accumulate_event(event=event, current_snapshot=snapshot,  # type: ignore
                                        json_bufs=buffers)
    return names, snapshot


def test_every_kind_of_block_streams_into_the_sdks_message() -> None:
    names, message = accumulate([
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "think "}), chunk({"reasoning_content": "hard"}),
        chunk({"thinking_blocks": [{"type": "thinking", "thinking": "think hard",
                                    "signature": "sig-A"}]}),
        chunk({"thinking_blocks": [{"type": "redacted_thinking", "data": "R"}]}),
        chunk({"thinking_blocks": [{"type": "thinking", "thinking": "whole block",
                                    "signature": "sig-B"}]}),
        chunk({"content": "Hel"}), chunk({"content": "lo"}),
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {
            "name": "f", "arguments": '{"a"'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ': 1}'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_2", "function": {
            "name": "g", "arguments": "{}"}}]}),
        chunk({}, "tool_calls"),
        chunk(usage={"prompt_tokens": 40, "completion_tokens": 9,
                     "prompt_tokens_details": {"cached_tokens": 8}}),
    ])
    assert names[:2] == ["message_start", "ping"] and names[-2:] == ["message_delta",
                                                                     "message_stop"]
    assert names.count("content_block_start") == names.count("content_block_stop") == 6
    assert [b.to_dict() for b in message.content] == [
        {"type": "thinking", "thinking": "think hard", "signature": "sig-A"},
        {"type": "redacted_thinking", "data": "R"},
        {"type": "thinking", "thinking": "whole block", "signature": "sig-B"},
        {"type": "text", "text": "Hello"},
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
        {"type": "tool_use", "id": "call_2", "name": "g", "input": {}}]
    assert message.id == "msg_0123" and message.model == "claude-x"
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens,
            message.usage.output_tokens) == (32, 8, 9)


def test_an_empty_stream_is_still_a_whole_message() -> None:
    names, message = accumulate([])
    assert names == ["message_start", "ping", "message_delta", "message_stop"]
    assert message.content == [] and message.stop_reason == "end_turn"


# --- the Anthropic provider --------------------------------------------------------------------


def test_the_provider_streams_thinking_blocks_and_stop_sequences() -> None:
    translator = StreamTranslator("claude-x", created=1)
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 3}}},
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "thinking_delta", "thinking": "a"}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "thinking_delta", "thinking": "b"}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "signature_delta", "signature": "SIG"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1,
         "content_block": {"type": "redacted_thinking", "data": "D"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "stop_sequence",
                                            "stop_sequence": "END"},
         "usage": {"output_tokens": 2}},
        {"type": "message_stop"},
    ]
    chunks = [orjson.loads(c) for e in events for c in translator.feed(e)]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[1:5] == [
        {"reasoning_content": "a"}, {"reasoning_content": "b"},
        {"thinking_blocks": [{"type": "thinking", "thinking": "ab", "signature": "SIG"}]},
        {"thinking_blocks": [{"type": "redacted_thinking", "data": "D"}]}]
    last = chunks[-2]["choices"][0]
    assert (last["finish_reason"], last["stop_reason"]) == ("stop", "END")


def test_forwarded_headers_merge_with_the_endpoints() -> None:
    endpoint = {"anthropic-version": "2023-06-01", "Anthropic-Beta": "a,b", "x-api-key": "k"}
    merged = with_forwarded(endpoint, {"anthropic-version": "2024-01-01",
                                       "anthropic-beta": "b, c"})
    assert merged == {"anthropic-version": "2024-01-01", "Anthropic-Beta": "a,b,c",
                      "x-api-key": "k"}
    assert endpoint["Anthropic-Beta"] == "a,b"  # the endpoint's own dict is never edited


def test_native_bodies_go_out_as_written() -> None:
    provider = AnthropicProvider.__new__(AnthropicProvider)  # request_body needs no session
    target = EndpointTarget("http://x/v1", "claude-upstream")
    native = {"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [],
              "context_management": {"edits": []}}
    body = WithNative({"model": "claude-sonnet-4-5", "messages": []}, native=native,
                      protocol="anthropic")
    assert provider.request_body(target, body, stream=False) == {**native,
                                                                  "model": "claude-upstream"}
    streamed = provider.request_body(target, body, stream=True)
    assert streamed["stream"] is True and "stream" not in native
    # A copy (a plugin's edit) is a plain dict: translated, so unknown fields are gone.
    edited = provider.request_body(target, dict(body), stream=False)
    assert "context_management" not in edited and edited["max_tokens"] == 4096
