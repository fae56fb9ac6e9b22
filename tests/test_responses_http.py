"""The /v1/responses surface end to end: the real openai SDK against `routeyard serve`, with the
simulator or a scripted backend that records what Routeyard sent upstream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
from routerproc import RouterProcess, start_router
from scripted_backend import Reply, ScriptedBackend, scripted_backend
from simproc import SimulatorProcess, start_simulator
from stores import REDIS_URL, needs_redis, unique_prefix

WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Weather of a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"]}}
AUTH = {"authorization": "Bearer k"}  # the key `client()` uses: the owner of its responses
CAPABLE = {"tools": True, "reasoning": True, "structured_output": True, "vision": True}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", "m1", "--ttft-ms", "0", "--tpot-ms", "0",
                         "--output-tokens", "8") as process:
        yield process


def config(base_url: str, **extra: Any) -> dict[str, Any]:
    return {"models": [{"name": "m1", "endpoints": [{"base_url": base_url}],
                        "capabilities": CAPABLE}],
            "pool": {"health_check": {"interval_s": 0}}, **extra}


@pytest.fixture
def scripted(tmp_path: Path) -> Iterator[tuple[ScriptedBackend, RouterProcess]]:
    with scripted_backend() as backend, start_router(config(backend.url), tmp_path) as gateway:
        yield backend, gateway


@pytest.fixture(scope="module")
def gateway(sim: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RouterProcess]:
    with start_router(config(sim.base_url), tmp_path_factory.mktemp("gw")) as process:
        yield process


def client(gateway: RouterProcess, key: str = "k") -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)


def _streamed(oai: openai.OpenAI, **request: Any) -> tuple[Any, list[Any]]:
    """(the final response, every event) of a `responses.stream`."""
    with oai.responses.stream(**request) as stream:
        events = list(stream)
        return stream.get_final_response(), events


def _created_stream(oai: openai.OpenAI, **request: Any) -> tuple[Any, list[Any]]:
    """The same through `create(stream=True)`: the response is the completed event's."""
    events = list(oai.responses.create(stream=True, **request))
    completed = [e for e in events if e.type == "response.completed"]
    assert len(completed) == 1 and events[-1] is completed[0]
    return completed[0].response, events


def _whole(oai: openai.OpenAI, **request: Any) -> tuple[Any, list[Any]]:
    return oai.responses.create(**request), []


@pytest.mark.parametrize("mode", ["whole", "streamed"])
def test_a_three_turn_chain_sends_the_whole_conversation(
        scripted: tuple[ScriptedBackend, RouterProcess], mode: str) -> None:
    backend, gateway = scripted
    oai = client(gateway)
    first_call, other_call = (_whole, _whole) if mode == "whole" else (_streamed, _created_stream)
    backend.replies += [Reply(content="Hello there.", reasoning="They greet me."),
                        Reply(tool_calls=[("call_1", "get_weather", '{"city": "Paris"}')]),
                        Reply(content="It is sunny in Paris.")]

    one, _ = first_call(oai, model="auto", instructions="Be brief.", input="Hi!")
    assert one.id.startswith("resp_") and one.object == "response" and one.status == "completed"
    assert one.output_text == "Hello there." and one.instructions == "Be brief."
    assert [item.type for item in one.output] == ["reasoning", "message"]
    assert one.output[0].content[0].text == "They greet me."
    assert one.output[1].content[0].annotations == []
    assert one.usage is not None and one.usage.input_tokens == 11 and one.usage.total_tokens == 18
    assert one.model == "m1"

    two, events = other_call(oai, model="auto", previous_response_id=one.id,
                             input=[{"role": "user", "content": "Weather in Paris?"}],
                             tools=[WEATHER_TOOL])
    assert two.previous_response_id == one.id and two.output_text == ""
    (call,) = two.output
    assert (call.type, call.call_id, call.name, call.arguments) == (
        "function_call", "call_1", "get_weather", '{"city": "Paris"}')
    if events:
        assert [e.type for e in events if "argument" not in e.type] == [
            "response.created", "response.in_progress", "response.output_item.added",
            "response.output_item.done", "response.completed"]
        assert [e.sequence_number for e in events] == list(range(len(events)))
        deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
        assert "".join(deltas) == '{"city": "Paris"}' and len(deltas) > 1

    three, _ = first_call(oai, model="auto", previous_response_id=two.id,
                          instructions="Answer in one line.", tools=[WEATHER_TOOL],
                          input=[{"type": "function_call_output", "call_id": "call_1",
                                  "output": '{"sky": "sunny"}'}])
    assert three.output_text == "It is sunny in Paris."

    sent = backend.received[2]
    assert sent["messages"] == [
        # Instructions are the turn's own: "Be brief." is not carried over (as OpenAI).
        {"role": "system", "content": "Answer in one line."},
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello there.", "reasoning_content": "They greet me."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "sunny"}'},
    ]
    assert sent["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather of a city",
        "parameters": WEATHER_TOOL["parameters"]}}]
    assert sent.get("stream", False) is (mode == "streamed")
    # Each turn was stored whole: a retrieved response is the one the client got.
    again = oai.responses.retrieve(two.id)
    assert again.output[0].call_id == "call_1" and again.id == two.id


def test_retrieve_input_items_and_delete(gateway: RouterProcess) -> None:
    oai = client(gateway)
    created = oai.responses.create(model="m1", input=[
        {"role": "developer", "content": "Be kind."},
        {"role": "user", "content": [{"type": "input_text", "text": "First."}]},
        {"type": "message", "role": "user", "content": "Second."}])
    fetched = oai.responses.retrieve(created.id)
    assert fetched.id == created.id and fetched.output_text == created.output_text != ""
    assert fetched.usage == created.usage and fetched.status == "completed"

    items = oai.responses.input_items.list(created.id)  # newest first, as OpenAI
    assert [i.content[0].text for i in items.data] == ["Second.", "First.", "Be kind."]
    assert [i.role for i in items.data] == ["user", "user", "developer"]
    assert all(i.id.startswith("msg_") for i in items.data) and items.has_more is False

    page = oai.responses.input_items.list(created.id, order="asc", limit=2)
    assert [i.content[0].text for i in page.data] == ["Be kind.", "First."]
    assert page.has_more is True
    every = list(oai.responses.input_items.list(created.id, order="asc", limit=1))
    assert [i.content[0].text for i in every] == ["Be kind.", "First.", "Second."]
    raw = httpx.get(f"{gateway.base_url}/responses/{created.id}/input_items",
                    params={"after": items.data[0].id}, headers=AUTH)
    assert raw.json()["first_id"] == items.data[1].id and raw.json()["last_id"] == items.data[2].id

    assert oai.responses.delete(created.id) is None  # the SDK's return for {"deleted": true}
    deleted = httpx.delete(f"{gateway.base_url}/responses/{created.id}", headers=AUTH)
    assert deleted.status_code == 404  # already gone
    for call in (lambda: oai.responses.retrieve(created.id),
                 lambda: oai.responses.input_items.list(created.id),
                 lambda: oai.responses.delete(created.id)):
        with pytest.raises(openai.NotFoundError) as caught:
            call()
        assert caught.value.body["code"] == "response_not_found"  # type: ignore[index]


def test_the_delete_answer_is_openais(gateway: RouterProcess) -> None:
    oai = client(gateway)
    created = oai.responses.create(model="m1", input="hi")
    answer = httpx.delete(f"{gateway.base_url}/responses/{created.id}", headers=AUTH)
    assert answer.status_code == 200
    assert answer.json() == {"id": created.id, "object": "response", "deleted": True}


def test_store_false_keeps_nothing(gateway: RouterProcess) -> None:
    oai = client(gateway)
    unstored = oai.responses.create(model="m1", input="hi", store=False)
    assert unstored.output_text and unstored.store is False  # type: ignore[attr-defined]
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(unstored.id)
    with pytest.raises(openai.NotFoundError) as caught:
        oai.responses.create(model="m1", input="more", previous_response_id=unstored.id)
    assert caught.value.body["code"] == "previous_response_not_found"  # type: ignore[index]
    assert caught.value.body["param"] == "previous_response_id"  # type: ignore[index]
    # A stored response may still be continued without storing the new turn.
    stored = oai.responses.create(model="m1", input="hi")
    follow = oai.responses.create(model="m1", input="more", previous_response_id=stored.id,
                                  store=False)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(follow.id)


def test_a_response_is_visible_only_to_its_owner(sim: SimulatorProcess, tmp_path: Path) -> None:
    with start_router(config(sim.base_url, server={"api_keys": ["k1", "k2"]}),
                      tmp_path) as gateway:
        owner, other = client(gateway, "k1"), client(gateway, "k2")
        created = owner.responses.create(model="m1", input="secret plans")
        attempts = {
            "retrieve": lambda: other.responses.retrieve(created.id),
            "input_items": lambda: other.responses.input_items.list(created.id),
            "delete": lambda: other.responses.delete(created.id),
            "previous_response_id": lambda: other.responses.create(
                model="m1", input="and?", previous_response_id=created.id),
            "streamed previous_response_id": lambda: list(other.responses.create(
                model="m1", input="and?", previous_response_id=created.id, stream=True)),
        }
        for name, attempt in attempts.items():
            with pytest.raises(openai.NotFoundError) as caught:  # 404, never 403
                attempt()
            assert "not found" in caught.value.message, name
        with pytest.raises(openai.AuthenticationError):
            client(gateway, "k3").responses.retrieve(created.id)
        # The owner still has it, and can continue it.
        assert owner.responses.retrieve(created.id).id == created.id
        follow = owner.responses.create(model="m1", input="and?", previous_response_id=created.id)
        assert follow.previous_response_id == created.id


def test_a_codex_like_request(scripted: tuple[ScriptedBackend, RouterProcess]) -> None:
    """As the Codex CLI sends it: streamed, no Authorization header, developer and user
    messages, store false with encrypted reasoning asked for, and tools of many types."""
    backend, gateway = scripted
    tools = [
        {"type": "function", "name": "shell", "description": "Run a command", "strict": False,
         "parameters": {"type": "object", "properties": {
             "command": {"type": "array", "items": {"type": "string"}}}}},
        {"type": "function", "name": "update_plan", "parameters": {"type": "object"}},
        {"type": "function", "name": "view_image", "parameters": {"type": "object"}},
        {"type": "function", "name": "mcp__docs__search", "parameters": {"type": "object"}},
        {"type": "web_search"},
        {"type": "local_shell"},
        {"type": "custom", "name": "apply_patch", "description": "Patch files",
         "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
        {"type": "namespace", "name": "github", "description": "GitHub",
         "tools": [{"type": "function", "name": "open_pr", "parameters": {"type": "object"}}]},
        {"type": "image_generation"},
    ]
    body = {
        "model": "auto", "instructions": "You are Codex.", "stream": True, "store": False,
        "input": [
            {"type": "message", "role": "developer",
             "content": [{"type": "input_text", "text": "<permissions>none</permissions>"}]},
            {"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": "<environment_context/>"},
                         {"type": "input_text", "text": "List the files."}]},
            {"type": "reasoning", "id": "rs_1", "summary": [],
             "encrypted_content": "gAAAA..."},
        ],
        "tools": tools, "tool_choice": "auto", "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "include": ["reasoning.encrypted_content"], "prompt_cache_key": "session-1",
        "text": {"verbosity": "low"},
    }
    backend.replies.append(Reply(tool_calls=[("call_7", "shell", '{"command": ["ls"]}')]))
    with httpx.stream("POST", f"{gateway.base_url}/responses", json=body, timeout=30) as raw:
        assert raw.status_code == 200
        assert raw.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in raw.iter_lines() if line.startswith("data: ")]
    assert events[-1]["type"] == "response.completed"
    output = events[-1]["response"]["output"]
    assert [(o["type"], o["call_id"], o["name"]) for o in output] == [
        ("function_call", "call_7", "shell")]

    (sent,) = backend.received
    assert [t["function"]["name"] for t in sent["tools"]] == [
        "shell", "update_plan", "view_image", "mcp__docs__search"]
    assert sent["parallel_tool_calls"] is False and sent["tool_choice"] == "auto"
    assert sent["reasoning_effort"] == "medium"
    assert sent["messages"] == [
        {"role": "system", "content": "You are Codex."},
        {"role": "system", "content": "<permissions>none</permissions>"},
        {"role": "user", "content": [{"type": "text", "text": "<environment_context/>"},
                                     {"type": "text", "text": "List the files."}]}]
    for dropped in ("include", "prompt_cache_key", "store", "reasoning", "text", "input",
                    "instructions", "verbosity"):
        assert dropped not in sent
    missing = httpx.get(f"{gateway.base_url}/responses/{events[-1]['response']['id']}")
    assert missing.status_code == 404  # store: false


def test_a_broken_stream_ends_failed(scripted: tuple[ScriptedBackend, RouterProcess]) -> None:
    backend, gateway = scripted
    oai = client(gateway)
    backend.replies.append(Reply(content="This answer will not finish.", break_after=3))
    with oai.responses.stream(model="auto", input="hi") as stream:
        events = list(stream)
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            stream.get_final_response()
    assert [e.type for e in events][-2:] == ["error", "response.failed"]
    failed = events[-1].response
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.code == "server_error" and "broke" in failed.error.message
    assert events[-2].code == "stream_interrupted"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    with pytest.raises(openai.NotFoundError):  # a failed stream is not stored
        oai.responses.retrieve(failed.id)


def test_structured_output_and_parameters_reach_the_backend(
        scripted: tuple[ScriptedBackend, RouterProcess]) -> None:
    backend, gateway = scripted
    oai = client(gateway)
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
              "additionalProperties": False}
    backend.replies.append(Reply(content='{"n": 3}'))
    response = oai.responses.create(
        model="auto", input=[{"role": "user", "content": [
            {"type": "input_text", "text": "Count the cats."},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=",
             "detail": "low"}]}],
        text={"format": {"type": "json_schema", "name": "count", "schema": schema,
                         "strict": True}},
        max_output_tokens=64, temperature=0.2, top_p=0.9, user="u-1",
        metadata={"team": "cats"}, tool_choice={"type": "function", "name": "get_weather"},
        tools=[WEATHER_TOOL])
    assert json.loads(response.output_text) == {"n": 3}
    assert response.text is not None and response.text.format.type == "json_schema"
    assert response.max_output_tokens == 64 and response.metadata == {"team": "cats"}
    (sent,) = backend.received
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "count", "schema": schema, "strict": True}}
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"], sent["user"]) == (
        64, 0.2, 0.9, "u-1")
    assert sent["metadata"] == {"team": "cats"}
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["messages"][0]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}


@needs_redis
def test_a_chain_on_redis(sim: SimulatorProcess, tmp_path: Path) -> None:
    with unique_prefix("responses") as prefix:
        state = {"backend": "redis", "redis_url": REDIS_URL, "key_prefix": prefix}
        with start_router(config(sim.base_url, state=state, responses={"ttl_s": 3600}),
                          tmp_path) as gateway:
            oai = client(gateway)
            one = oai.responses.create(model="m1", input="hi")
            two, _ = _streamed(oai, model="m1", input="more", previous_response_id=one.id)
            assert two.previous_response_id == one.id
            items = oai.responses.input_items.list(two.id)
            assert [i.content[0].text for i in items.data] == ["more"]
            keys = redis.Redis.from_url(REDIS_URL)
            try:
                ttl_ms = keys.pttl(f"{prefix}:kv:response:{two.id}")
                assert 3_500_000 < ttl_ms <= 3_600_000  # responses.ttl_s
                oai.responses.delete(one.id)
                assert not keys.exists(f"{prefix}:kv:response:{one.id}")
            finally:
                keys.close()
            with pytest.raises(openai.NotFoundError):
                oai.responses.create(model="m1", input="x", previous_response_id=one.id)
