"""Capability-aware routing over HTTP: the openai SDK against `routeyard serve` and the simulator.
An image, tools, a JSON schema or a reasoning effort go only to models that declare them; a
prompt plus max_tokens only to a window that holds both; the rest is a 400 naming what is
missing, and the decision log and /v1/route say which models were skipped and why."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator

MODELS = ("plain", "eye", "hands", "strict", "thinker", "narrow")
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
SCHEMA = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    args = [arg for name in MODELS for arg in ("--model", name)]
    with start_simulator(*args, "--ttft-ms", "0", "--output-tokens", "5") as process:
        yield process


def capable_config(base_url: str) -> dict[str, Any]:
    endpoint = [{"base_url": base_url}]

    def model(name: str, window: int = 100_000, **capabilities: bool) -> dict[str, Any]:
        return {"name": name, "context_window": window, "capabilities": capabilities,
                "endpoints": endpoint}

    return {
        "models": [model("plain"), model("eye", vision=True), model("hands", tools=True),
                   model("strict", structured_output=True), model("thinker", reasoning=True),
                   model("narrow", 400)],
        "decisions": [
            # Text only: nothing here serves images, tools, schemas or reasoning.
            {"name": "text-only", "when": {"keywords_any": ["textonly"]},
             "candidates": ["plain"], "fallback": ["narrow"]},
            {"name": "window", "when": {"keywords_any": ["window"]},
             "candidates": ["narrow", "plain"]},
        ],
        # `plain` is preferred (static: the first that can serve).
        "default": {"name": "everything",
                    "candidates": ["plain", "eye", "hands", "strict", "thinker"]},
        "pool": {"health_check": {"interval_s": 0}},
    }


@pytest.fixture(scope="module")
def gateway(sim: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RouterProcess]:
    with start_router(capable_config(sim.base_url), tmp_path_factory.mktemp("caps")) as process:
        yield process


@pytest.fixture
def client(gateway: RouterProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0)


def user(content: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": content}]


def decision_detail(gateway: RouterProcess, request_id: str) -> dict[str, Any] | None:
    """The decision record's `detail`, once the router's SQLite writer has flushed it."""
    import json

    db = Path(gateway.process.args[-1]).parent / "state.db"  # type: ignore[index]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.1)
        with sqlite3.connect(db) as connection:
            row = connection.execute("SELECT detail FROM decisions WHERE request_id = ?",
                                     (request_id,)).fetchone()
        if row is not None:
            return json.loads(row[0]) if row[0] is not None else None
    raise AssertionError(f"no decision record for {request_id}")


def test_an_image_goes_to_the_vision_model_though_text_is_preferred(
        client: openai.OpenAI, gateway: RouterProcess) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=user([{"type": "text", "text": "what is this?"}, IMAGE]))
    assert raw.headers["x-routeyard-model"] == "eye"
    answer = raw.parse()
    assert answer.choices[0].message.content
    assert decision_detail(gateway, raw.headers["x-routeyard-request-id"])["skipped"] == [
        {"model": "plain", "reason": "no vision"}, {"model": "hands", "reason": "no vision"},
        {"model": "strict", "reason": "no vision"}, {"model": "thinker", "reason": "no vision"}]
    # Without an image `plain` answers, and the record skipped nothing.
    plain = client.chat.completions.with_raw_response.create(model="auto", messages=user("hi"))
    assert plain.headers["x-routeyard-model"] == "plain"
    assert "skipped" not in decision_detail(gateway, plain.headers["x-routeyard-request-id"])


def test_an_image_streams_from_the_vision_model(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", stream=True, messages=user([IMAGE, {"type": "text", "text": "describe"}]))
    assert raw.headers["x-routeyard-model"] == "eye"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
    assert text


@pytest.mark.parametrize("extra, model", [
    ({"tools": [TOOL]}, "hands"),
    ({"tools": [TOOL], "tool_choice": "none"}, "hands"),
    ({"response_format": SCHEMA}, "strict"),
    ({"reasoning_effort": "low"}, "thinker"),
    # Look-alikes that need nothing: the preferred model answers.
    ({"tools": []}, "plain"),
    ({"response_format": {"type": "json_object"}}, "plain"),
    ({"reasoning_effort": None}, "plain"),
])
def test_each_capability_picks_a_model_that_has_it(
        client: openai.OpenAI, extra: dict[str, Any], model: str) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=user("look this up"), **extra)
    assert raw.headers["x-routeyard-model"] == model
    assert raw.parse().choices


@pytest.mark.parametrize("extra, capability, param", [
    ({"messages": user([{"type": "text", "text": "textonly"}, IMAGE])}, "vision", "messages"),
    ({"tools": [TOOL]}, "tools", "tools"),
    ({"response_format": SCHEMA}, "structured_output", "response_format"),
    ({"reasoning_effort": "high"}, "reasoning", "reasoning_effort"),
])
def test_a_decision_with_no_capable_model_is_a_400_naming_the_capability(
        client: openai.OpenAI, sim: SimulatorProcess, extra: dict[str, Any], capability: str,
        param: str) -> None:
    sim.reset()
    request = {"messages": user("textonly please"), **extra}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="auto", **request)
    error = caught.value
    assert error.status_code == 400 and error.code == "capability_missing"
    assert error.param == param
    assert isinstance(error.body, dict)
    assert error.body["message"].startswith(
        f"no model of decision 'text-only' supports {capability} (")
    assert f"skipped plain (no {capability}), narrow (no {capability})" in error.body["message"]
    assert not any(sim.stats()["requests"].values())  # no backend was called
    # Streaming gets the same 400 before any stream starts.
    with pytest.raises(openai.BadRequestError) as streamed:
        client.chat.completions.create(model="auto", stream=True, **request)
    assert streamed.value.code == "capability_missing"


def test_a_named_model_without_the_capability_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="plain", messages=user([IMAGE]))
    assert caught.value.code == "capability_missing"
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["message"] == \
        "the model 'plain' does not support vision (images in the request)."
    raw = client.chat.completions.with_raw_response.create(model="eye", messages=user([IMAGE]))
    assert raw.headers["x-routeyard-model"] == "eye"


def test_prompt_plus_max_tokens_beyond_a_small_window_skips_it(
        client: openai.OpenAI, gateway: RouterProcess) -> None:
    short = client.chat.completions.with_raw_response.create(
        model="auto", messages=user("window"), max_tokens=100)
    assert short.headers["x-routeyard-model"] == "narrow"
    long = client.chat.completions.with_raw_response.create(
        model="auto", messages=user("window"), max_tokens=500)
    assert long.headers["x-routeyard-model"] == "plain"
    (skipped,) = decision_detail(gateway, long.headers["x-routeyard-request-id"])["skipped"]
    assert skipped["model"] == "narrow"
    assert skipped["reason"].startswith("context window 400 < ")
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="narrow", messages=user("hi"),
                                       max_completion_tokens=1000)
    assert caught.value.code == "context_length_exceeded"


def test_the_dry_run_lists_the_skipped_candidates(gateway: RouterProcess) -> None:
    plan = httpx.post(f"{gateway.base_url}/route", json={
        "model": "auto", "messages": user([IMAGE]), "tools": [TOOL]}, timeout=10)
    assert plan.status_code == 400
    assert plan.json()["error"]["code"] == "capability_missing"
    plan = httpx.post(f"{gateway.base_url}/route", json={
        "model": "auto", "messages": user("hi"), "response_format": SCHEMA}, timeout=10).json()
    assert plan["model"] == "strict" and plan["fallback"] == []
    assert plan["skipped"] == [{"model": "plain", "reason": "no structured_output"},
                               {"model": "eye", "reason": "no structured_output"},
                               {"model": "hands", "reason": "no structured_output"},
                               {"model": "thinker", "reason": "no structured_output"}]
    plain = httpx.post(f"{gateway.base_url}/route", json={"prompt": "hi"}, timeout=10).json()
    assert plain["skipped"] == []


@pytest.mark.parametrize("content", [
    [{"type": "image_url"}],  # no url
    [{"type": "image_url", "image_url": "not-an-object"}],
    [{"type": "input_image"}, {"type": "text"}],
])
def test_malformed_image_parts_are_a_clean_400_on_a_text_only_decision(
        gateway: RouterProcess, content: list[Any]) -> None:
    response = httpx.post(f"{gateway.base_url}/chat/completions", timeout=10, json={
        "model": "auto", "messages": user([{"type": "text", "text": "textonly"}, *content])})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "capability_missing"


@pytest.mark.parametrize("extra", [
    {"max_tokens": 0}, {"max_tokens": True}, {"max_tokens": "many"}, {"tools": "all"},
    {"tools": [TOOL] * 2, "max_completion_tokens": -1},
])
def test_bad_need_fields_are_a_400_not_a_500(gateway: RouterProcess,
                                             extra: dict[str, Any]) -> None:
    response = httpx.post(f"{gateway.base_url}/chat/completions", timeout=10, json={
        "model": "auto", "messages": user("hi"), **extra})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
