"""Anthropic adapter: OpenAI request → Anthropic Messages request."""

from __future__ import annotations

from typing import Any

import pytest

from routeyard.pool.providers.anthropic import (
    DEFAULT_MAX_TOKENS,
    EFFORT_BUDGETS,
    TranslationError,
    anthropic_headers,
    to_anthropic_request,
)
from routeyard.pool.providers.base import EndpointTarget

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


