"""Fuzzing every endpoint (issue 13), at the test suite's size: ~1,500 schemathesis cases from
the OpenAPI description and every hand-made body of bench/fuzz_bodies.py (deep nesting,
invalid UTF-8, huge numbers, duplicate keys, lone surrogates, truncated bodies, ...) against a
real `routeyard serve` over the simulator. No 5xx, every 4xx in its surface's error schema
(OpenAI's; Anthropic's on /v1/messages), every answer as the description says, and nothing
in the router's log. The full run (10,000+ cases) is `python bench/fuzz.py`; its figures are in
docs/reliability.md.

Then the crashes the fuzzing found, as plain regression cases, and a property test of the
Anthropic adapter over the chat bodies the edge accepts (it used to raise on some).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routeyard.api import create_app
from routeyard.api.openapi import openapi_document
from routeyard.catalog import build_config
from routeyard.errors import InvalidRequest
from routeyard.pool.providers.anthropic import TranslationError, to_anthropic_request
from routeyard.router import Router
from routeyard.serving.capabilities import Needs
from routeyard.serving.request import validate_chat_request

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import fuzz  # bench/fuzz.py: the fuzzer itself
import fuzz_bodies

SCHEMATHESIS_CASES = 1_500


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fuzz.Served]:
    with fuzz.fuzz_target(tmp_path_factory.mktemp("fuzz")) as running:
        yield running


def _explain(tally: fuzz.Tally) -> str:
    return "\n".join(f"{f.endpoint} [{f.source}] {f.status}: {f.problem}\n  {f.request[:600]}"
                     for f in tally.findings[:10])


def test_the_description_covers_every_route() -> None:
    config = build_config({"models": [{"name": "m", "endpoints": [
        {"base_url": "http://127.0.0.1:9/v1"}]}], "state": {"backend": "memory"}})
    app = create_app(Router(config)).app  # type: ignore[attr-defined]
    served = {(method.lower(), route.path) for route in app.routes for method in route.methods
              if not route.path.startswith("/admin")  # the admin API documents itself
              and (method != "HEAD" or route.path == "/")}
    document = openapi_document()
    described = {(method, path) for path, item in document["paths"].items()
                 for method in item if method != "parameters"}
    assert served == described, (served - described, described - served)
    assert document["openapi"] == "3.1.0"
    orjson.dumps(document)  # plain JSON


@pytest.mark.parametrize("keys", [[], ["k1"]])
async def test_openapi_json_is_served_with_the_auth_of_v1_models(keys: list[str]) -> None:
    """`GET /openapi.json` is the description, and needs what `/v1/models` needs: nothing
    without keys; with `server.api_keys`, a key (Bearer or x-api-key), else a 401 in
    OpenAI's schema."""
    import routeyard

    config = build_config({"models": [{"name": "m", "endpoints": [
        {"base_url": "http://127.0.0.1:9/v1"}]}], "state": {"backend": "memory"},
        "server": {"api_keys": keys} if keys else {},
        "pool": {"health_check": {"interval_s": 0}}})
    router = Router(config)
    transport = httpx.ASGITransport(app=create_app(router))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
            for headers in ({}, {"authorization": "Bearer k1"}, {"x-api-key": "k1"},
                            {"authorization": "Bearer wrong"}):
                answer = await client.get("/openapi.json", headers=headers)
                models = await client.get("/v1/models", headers=headers)
                assert answer.status_code == models.status_code, headers
                if not keys or "k1" in (headers.get("x-api-key"),
                                        headers.get("authorization", "")[7:]):
                    assert answer.status_code == 200, headers
                    assert answer.headers["content-type"] == "application/json"
                    assert answer.json() == openapi_document()
                    assert answer.json()["info"]["version"] == routeyard.__version__
                else:
                    assert answer.status_code == 401, headers
                    assert answer.json()["error"]["type"] == "authentication_error"
            assert (await client.post("/openapi.json")).status_code == (405 if not keys
                                                                         else 401)
    finally:
        await router.close()


def test_schemathesis_cases_get_no_5xx_and_errors_in_their_schema(served: fuzz.Served) -> None:
    tally = fuzz.Tally()
    fuzz.run_schemathesis(served.url, SCHEMATHESIS_CASES, seed=13, tally=tally,
                          log=lambda *_: None)
    assert tally.by_source["schemathesis"] >= SCHEMATHESIS_CASES
    assert len(tally.cases) >= 16  # every operation got cases
    assert tally.server_errors == 0, _explain(tally)
    assert not tally.findings, _explain(tally)
    # Valid bodies got through to the backends and back, on every routed surface.
    for endpoint in ("POST /v1/chat/completions", "POST /v1/messages", "POST /v1/responses",
                     "POST /v1/completions", "POST /v1/embeddings"):
        assert tally.statuses[endpoint]["200"] > 0, (endpoint, tally.statuses[endpoint])
    assert served.log_problems() == []


def test_hand_made_bodies_get_no_5xx_and_errors_in_their_schema(served: fuzz.Served) -> None:
    tally = fuzz.Tally()
    fuzz.run_raw(served.url, fuzz.ALL_RAW, seed=0, tally=tally)
    assert tally.by_source["raw"] == len(fuzz_bodies.all_cases()) > 8_000
    assert tally.server_errors == 0, _explain(tally)
    assert not tally.findings, _explain(tally)
    # Only bad framing and header bytes are refused by the HTTP parser, before the app.
    assert {line.split(":")[0] for line in tally.http_parser} <= {
        "framing", "header_bytes", "content_type"}
    assert served.log_problems() == []


U = [{"role": "user", "content": "hi"}]
# The crashes fuzzing found (500s before the fix), each now a 400 naming the field. The model
# is an Anthropic-protocol one, whose adapter read these fields unchecked; the first crashed
# on every model (capabilities.py hashing the part's type).
FOUND: list[tuple[dict[str, Any], str]] = [
    ({"model": "sim-small", "messages": [{"role": "user", "content": [{"type": []}]}]},
     "messages[0].content[0].type"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url",
                                                 "image_url": {"url": 5}}]}]},
     "messages[0].content[0].image_url.url"),
    ({"messages": U, "thinking": {"type": "enabled", "budget_tokens": "x"}},
     "thinking.budget_tokens"),
    ({"messages": U, "tools": [{"type": "function", "function": {"name": "f"}}],
      "tool_choice": []}, "tool_choice"),
    ({"messages": U, "tools": [{"type": "function", "function": "f"}]}, "tools[0].function"),
    ({"messages": [*U, {"role": "assistant", "content": [{"type": "text", "text": 5}]}]},
     "messages[1].content[0].text"),
    ({"messages": [{"role": "system", "content": [{"type": "text", "text": 5}]}, *U]},
     "messages[0].content[0].text"),
    ({"messages": [*U, {"role": "assistant", "content": None, "tool_calls": ["x"]}]},
     "messages[1].tool_calls[0]"),
    ({"messages": [{"role": "user", "content": [{"type": "file", "file": "x"}]}]},
     "messages[0].content[0].file"),
    ({"messages": [{"role": "user", "content": [{"type": "file",
                                                 "file": {"file_data": 5}}]}]},
     "messages[0].content[0].file.file_data"),
]


@pytest.mark.parametrize(("body", "param"), FOUND, ids=[param for _, param in FOUND])
def test_found_crashes_are_400s_naming_the_field(served: fuzz.Served, body: dict[str, Any],
                                                 param: str) -> None:
    response = httpx.post(f"{served.url}/v1/chat/completions", timeout=30,
                          json={"model": "sim-claude", "max_tokens": 4, **body})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


@pytest.mark.parametrize("body", [b"[]", b"null", b"[{}]", b'"a prompt"'])
def test_the_dry_run_refuses_a_body_that_is_not_an_object(served: fuzz.Served,
                                                          body: bytes) -> None:
    # It used to route any non-object body as if it were a prompt.
    response = httpx.post(f"{served.url}/v1/route", content=body, timeout=30)
    assert response.status_code == 400, response.text
    assert "JSON object" in response.json()["error"]["message"]


@pytest.mark.parametrize(("messages", "status"), [
    ([{"role": "user", "content": []}], 400),
    ([{"role": "user", "content": ""}], 400),
    ([*U, {"role": "assistant", "content": []}, *U], 400),
    ([*U, {"role": "assistant", "content": ""}], 200),  # a final assistant turn may be empty
])
def test_empty_messages_content_is_anthropics_400(served: fuzz.Served,
                                                  messages: list[Any], status: int) -> None:
    # An empty user turn used to translate to no message at all: OpenAI-protocol backends
    # then refused an empty `messages`, with a 400 that blamed the backend.
    response = httpx.post(f"{served.url}/v1/messages", timeout=30, json={
        "model": "sim-small", "max_tokens": 4, "messages": messages})
    assert response.status_code == status, response.text
    if status == 400:
        error = response.json()
        assert error["type"] == "error"
        assert "non-empty content" in error["error"]["message"]


# -- the Anthropic adapter over every chat body the edge accepts -------------------------------

_TEXT = st.one_of(st.sampled_from(["", " ", "a ", "data:image/png;base64,AA", "data:x",
                                   "http://x", "auto", "none", "required", "enabled", "{}"]),
                  st.text(max_size=4))
_ANY = st.one_of(st.none(), st.booleans(), st.integers(-2, 5000), st.floats(-3, 3), _TEXT,
                 st.just({}), st.just([]), st.just([1]))


def _mostly(right: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually the right kind of value, sometimes anything: bodies the edge accepts, near
    the ones it refuses."""
    return st.sampled_from(range(12)).flatmap(lambda draw: _ANY if draw == 5 else right)


_PART = st.fixed_dictionaries(
    {"type": _mostly(st.sampled_from(["text", "image_url", "file", "refusal", "x"]))},
    optional={"text": _mostly(_TEXT), "refusal": _mostly(_TEXT),
              "cache_control": st.just({"type": "ephemeral"}),
              "image_url": _mostly(st.one_of(_TEXT, st.fixed_dictionaries(
                  {"url": _mostly(_TEXT)}))),
              "file": _mostly(st.fixed_dictionaries({}, optional={
                  "file_data": _mostly(_TEXT)}))})
_CALL = _mostly(st.fixed_dictionaries(
    {"function": _mostly(st.fixed_dictionaries({"name": _mostly(_TEXT)}, optional={
        "arguments": _mostly(st.one_of(_TEXT, st.just({"a": 1})))}))},
    optional={"id": _mostly(_TEXT), "type": _mostly(_TEXT)}))
_MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "function"])},
    optional={"content": _mostly(st.one_of(st.none(), _TEXT, st.lists(_PART, max_size=3))),
              "tool_calls": _mostly(st.lists(_CALL, max_size=2)),
              "tool_call_id": _mostly(_TEXT),
              "thinking_blocks": _mostly(st.lists(st.dictionaries(
                  st.sampled_from(["type", "thinking", "signature", "data"]), _ANY)))})
_TOOL = _mostly(st.fixed_dictionaries({}, optional={
    "type": _mostly(st.sampled_from(["function", "custom"])),
    "function": _mostly(st.fixed_dictionaries({"name": _mostly(_TEXT)}, optional={
        "parameters": _mostly(st.one_of(st.none(), st.just({"type": "object"}))),
        "description": _mostly(st.one_of(st.none(), _TEXT))}))}))
_BODY = st.fixed_dictionaries(
    {"model": st.just("m"), "messages": st.lists(_MESSAGE, min_size=1, max_size=4)},
    optional={"tools": _mostly(st.lists(_TOOL, max_size=2)),
              "tool_choice": _mostly(st.one_of(_TEXT, st.fixed_dictionaries(
                  {"type": _mostly(_TEXT)}, optional={"function": _mostly(
                      st.fixed_dictionaries({"name": _mostly(_TEXT)}))}))),
              "thinking": _mostly(st.fixed_dictionaries(
                  {"type": _mostly(_TEXT)}, optional={
                      "budget_tokens": _mostly(st.integers(-5, 100_000))})),
              "parallel_tool_calls": _mostly(st.booleans()),
              "reasoning_effort": _mostly(_TEXT), "temperature": _mostly(st.floats(-1, 3)),
              "top_p": _mostly(st.floats(0, 1)), "top_k": _ANY,
              "stop": _mostly(st.one_of(_TEXT, st.lists(_TEXT, max_size=2))),
              "max_tokens": _mostly(st.integers(1, 5000)),
              "max_completion_tokens": _mostly(st.integers(1, 5000)),
              "user": _mostly(_TEXT),
              "response_format": _mostly(st.one_of(st.none(), st.just({"type": "text"})))})


@settings(max_examples=3_000, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(_BODY)
def test_a_body_the_edge_accepts_never_crashes_the_anthropic_adapter(body: dict[str, Any]
                                                                      ) -> None:
    """Either the edge refuses the body (400), or the adapter translates it or refuses it as
    untranslatable (a 400 too): never another exception, which would be a 500."""
    try:
        validate_chat_request(body)
    except InvalidRequest:
        return
    Needs.of(body)
    with contextlib.suppress(TranslationError):
        to_anthropic_request(body, "claude")
