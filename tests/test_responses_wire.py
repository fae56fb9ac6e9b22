"""The Responses translation alone: requests → chat bodies, answers and chunks → Responses
objects and events, each checked against the openai SDK's own types (strict validation)."""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from routeyard.api.responses_render import (
    ResponseEvents,
    answer_message,
    response_from_completion,
)
from routeyard.api.responses_wire import Turn, translate_request
from routeyard.catalog import build_config
from routeyard.config import ConfigError
from routeyard.errors import InvalidRequest

EVENT = TypeAdapter(ResponseStreamEvent)


def turn(**request: Any) -> Turn:
    return translate_request({"model": "auto", "input": "hi", **request})


def events_of(raw: bytes) -> list[Any]:
    """SSE frames → SDK event objects, strictly validated; event names match their types."""
    events = []
    for block in raw.decode().strip().split("\n\n"):
        event_line, data_line = block.split("\n")
        data = orjson.loads(data_line.removeprefix("data: "))
        assert event_line == f"event: {data['type']}"
        events.append(EVENT.validate_python(data))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    return events


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_input_items_become_chat_messages() -> None:
    t = translate_request({"model": "auto", "instructions": "Be brief.", "input": [
        {"role": "developer", "content": "Rules."},
        {"role": "user", "content": [{"type": "input_text", "text": "Look:"},
                                     {"type": "input_image", "image_url": "https://x/y.png"}]},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "Let me check.", "annotations": []}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{\"a\":1}"},
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        {"type": "function_call_output", "call_id": "c2",
         "output": [{"type": "input_text", "text": "two"}]},
        {"type": "reasoning", "summary": [], "encrypted_content": "opaque"},
        {"role": "user", "content": "Thanks."}]})
    assert t.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Rules."},
        {"role": "user", "content": [{"type": "text", "text": "Look:"},
                                     {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
        # The calls join the assistant's text: one assistant turn, as chat has it.
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{\"a\":1}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "tool", "tool_call_id": "c2", "content": "two"},
        {"role": "user", "content": "Thanks."}]
    assert t.messages == t.body["messages"][1:]  # the turn, without its instructions
    assert [item["type"] for item in t.input_items] == [
        "message", "message", "message", "function_call", "function_call",
        "function_call_output", "function_call_output", "reasoning", "message"]
    assert len({item["id"] for item in t.input_items}) == 9
    assert t.input_items[0]["content"] == [{"type": "input_text", "text": "Rules."}]
    assert t.input_items[0]["role"] == "developer"  # listed as the client sent it


def test_history_goes_between_instructions_and_the_turn() -> None:
    history = [{"role": "user", "content": "hi"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "c9", "type": "function", "function": {"name": "f", "arguments": ""}}]}]
    t = translate_request({"model": "auto", "instructions": "New rules.", "input": [
        {"type": "function_call_output", "call_id": "c9", "output": "done"}]}, history)
    assert t.body["messages"] == [{"role": "system", "content": "New rules."}, *history,
                                  {"role": "tool", "tool_call_id": "c9", "content": "done"}]
    with pytest.raises(InvalidRequest, match="call_id 'c8'"):
        translate_request({"model": "auto", "input": [
            {"type": "function_call_output", "call_id": "c8", "output": "x"}]}, history)


def test_tools_the_backend_cannot_run_are_left_out(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "routeyard.api.responses")
    function = {"type": "function", "name": "f", "parameters": {"type": "object"},
                "strict": True}
    t = turn(tools=[function, {"type": "web_search"}, {"type": "local_shell"}],
             tool_choice="required", parallel_tool_calls=True, include=["x"], verbosity="low")
    assert t.body["tools"] == [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object"}, "strict": True}}]
    assert t.body["tool_choice"] == "required" and t.body["parallel_tool_calls"] is True
    assert "include" not in t.body and "verbosity" not in t.body
    assert "tools[1] (web_search)" in caplog.text and "include" in caplog.text
    assert t.echo["tools"] == [function, {"type": "web_search"}, {"type": "local_shell"}]
    # No function tool left: no tools, and no tool_choice or parallel_tool_calls either.
    bare = turn(tools=[{"type": "web_search"}], tool_choice={"type": "web_search"},
                parallel_tool_calls=False)
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(bare.body)
    allowed = turn(tools=[function, {**function, "name": "g"}], tool_choice={
        "type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "g"}]})
    assert [t["function"]["name"] for t in allowed.body["tools"]] == ["g"]
    assert allowed.body["tool_choice"] == "required"


def test_the_other_fields() -> None:
    t = turn(text={"format": {"type": "json_object"}}, reasoning={"effort": "high"},
             max_output_tokens=50, temperature=0, top_p=1, user="u", metadata={"k": "v"},
             stream=True, store=False)
    assert {k: v for k, v in t.body.items() if k != "messages"} == {
        "model": "auto", "response_format": {"type": "json_object"},
        "reasoning_effort": "high", "max_tokens": 50, "temperature": 0, "top_p": 1,
        "user": "u", "metadata": {"k": "v"}, "stream": True}
    assert t.stream and not t.store and t.input_items == []  # nothing to keep
    assert t.echo["reasoning"] == {"effort": "high", "summary": None}
    assert t.echo["text"] == {"format": {"type": "json_object"}}


def test_a_whole_answer_is_an_sdk_response() -> None:
    t = turn(instructions="x", tools=[{"type": "function", "name": "f"}])
    completion = {"choices": [{"finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "Calling.", "reasoning_content": "Should I?",
        "tool_calls": [{"id": "c1", "type": "function",
                        "function": {"name": "f", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8,
                  "prompt_tokens_details": {"cached_tokens": 2},
                  "completion_tokens_details": {"reasoning_tokens": 1}}}
    response = Response.model_validate(response_from_completion(t, completion, "m1"))
    assert [o.type for o in response.output] == ["reasoning", "message", "function_call"]
    assert response.output_text == "Calling." and response.status == "completed"
    assert response.usage is not None and response.usage.input_tokens_details.cached_tokens == 2
    assert response.usage.output_tokens_details.reasoning_tokens == 1
    assert response.instructions == "x" and response.id == t.response_id
    assert answer_message(completion)["reasoning_content"] == "Should I?"

    cut = {"choices": [{"finish_reason": "length",
                        "message": {"role": "assistant", "content": "Half"}}]}
    truncated = Response.model_validate(response_from_completion(t, cut, "m1"))
    assert truncated.status == "incomplete" and truncated.completed_at is None
    assert truncated.incomplete_details is not None
    assert truncated.incomplete_details.reason == "max_output_tokens"
    refused = {"choices": [{"message": {"role": "assistant", "content": None,
                                        "refusal": "No."}}]}
    content = Response.model_validate(response_from_completion(t, refused, "m1")).output[0]
    assert content.type == "message" and content.content[0].type == "refusal"


def test_a_stream_becomes_sdk_events() -> None:
    events = ResponseEvents(turn(), "m1")
    frames = [events.opening()]
    for delta in [{"role": "assistant", "content": ""}, {"reasoning_content": "Hm"},
                  {"reasoning": "m."}, {"content": "Hel"}, {"content": "lo"},
                  {"tool_calls": [{"index": 0, "id": "c1", "type": "function",
                                   "function": {"name": "f", "arguments": ""}}]},
                  {"tool_calls": [{"index": 1, "id": "c2", "type": "function",
                                   "function": {"name": "g", "arguments": "{"}}]},
                  {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]},
                  {"tool_calls": [{"index": 1, "function": {"arguments": "}"}}]},
                  # A server that reuses index 0 for a third call, with its own id.
                  {"tool_calls": [{"index": 0, "id": "c3", "type": "function",
                                   "function": {"name": "h", "arguments": "[]"}}]}]:
        frames.append(events.feed(chunk(delta)))
    frames.append(events.feed(chunk({}, "tool_calls")))
    closing, response = events.finish({"prompt_tokens": 4, "completion_tokens": 9})
    frames += [closing, events.terminal(response)]
    parsed = events_of(b"".join(frames))
    assert [e.type for e in parsed][:6] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.reasoning_text.delta",
        "response.reasoning_text.delta"]
    final = parsed[-1]
    assert final.type == "response.completed"
    output = final.response.output
    assert [(o.type, getattr(o, "call_id", None)) for o in output] == [
        ("reasoning", None), ("message", None), ("function_call", "c1"),
        ("function_call", "c2"), ("function_call", "c3")]
    assert output[0].content[0].text == "Hmm." and final.response.output_text == "Hello"
    assert [o.arguments for o in output[2:]] == ["{}", "{}", "[]"]
    assert final.response.usage.total_tokens == 13
    added = {e.item.id for e in parsed if e.type == "response.output_item.added"}
    done = {e.item.id for e in parsed if e.type == "response.output_item.done"}
    assert added == done == {o.id for o in output}
    assert events.message() == {
        "role": "assistant", "content": "Hello", "reasoning_content": "Hmm.",
        "tool_calls": [{"id": c, "type": "function", "function": {"name": n, "arguments": a}}
                       for c, n, a in (("c1", "f", "{}"), ("c2", "g", "{}"),
                                       ("c3", "h", "[]"))]}


def test_an_empty_or_cut_stream() -> None:
    events = ResponseEvents(turn(), "m1")
    opening = events.opening()
    closing, response = events.finish(None)
    parsed = events_of(opening + closing + events.terminal(response))
    assert parsed[-1].response.output_text == "" and len(parsed[-1].response.output) == 1
    assert events.message() == {"role": "assistant", "content": ""}

    cut = ResponseEvents(turn(), "m1")
    raw = cut.opening() + cut.feed(chunk({"content": "Par"}, None))
    raw += cut.feed(chunk({}, "length"))
    closing, response = cut.finish(None)
    parsed = events_of(raw + closing + cut.terminal(response))
    assert parsed[-1].type == "response.incomplete"
    assert parsed[-1].response.incomplete_details.reason == "max_output_tokens"

    broken = ResponseEvents(turn(), "m1")
    raw = broken.opening() + broken.feed(chunk({"content": "Par"}))
    parsed = events_of(raw + broken.failed("the backend stream broke", "upstream_error",
                                           "stream_interrupted"))
    assert [e.type for e in parsed][-2:] == ["error", "response.failed"]
    assert parsed[-1].response.output[0].status == "incomplete"
    assert parsed[-1].response.error.message == "the backend stream broke"


def test_the_responses_config_section() -> None:
    models = [{"name": "m", "endpoints": [{"base_url": "http://127.0.0.1:9/v1"}]}]
    assert build_config({"models": models}).responses.ttl_s == 30 * 24 * 3600
    assert build_config({"models": models, "responses": {"ttl_s": 60}}).responses.ttl_s == 60
    for bad, problem in (({"ttl_s": 0}, "responses.ttl_s"), ({"ttl": 5}, "responses.ttl")):
        with pytest.raises(ConfigError, match=re.escape(problem)):
            build_config({"models": models, "responses": bad})
