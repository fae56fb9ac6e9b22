"""Bad input on /v1/responses: a clean 4xx in OpenAI's error schema, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from routerproc import RouterProcess, start_router
from simproc import start_simulator

USER = {"role": "user", "content": "hi"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    with start_simulator("--model", "m1", "--ttft-ms", "0", "--tpot-ms", "0") as sim:
        config = {"models": [{"name": "m1", "endpoints": [{"base_url": sim.base_url}],
                              "capabilities": {"tools": True}}],
                  "pool": {"health_check": {"interval_s": 0}}}
        with start_router(config, tmp_path_factory.mktemp("gw")) as process:
            yield process


def _deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = {"a": value}
    return value


# (case, body, expected status, expected param; None: any)
CASES: list[tuple[str, Any, int, str | None]] = [
    ("not an object", ["model", "m1"], 400, None),
    ("no model", {"input": "hi"}, 400, "model"),
    ("model not a string", {"model": 5, "input": "hi"}, 400, "model"),
    ("no input", {"model": "m1"}, 400, "input"),
    ("input a number", {"model": "m1", "input": 42}, 400, "input"),
    ("empty input", {"model": "m1", "input": []}, 400, "input"),
    ("item not an object", {"model": "m1", "input": ["hi"]}, 400, "input[0]"),
    ("item of unknown type", {"model": "m1", "input": [{"type": "banana"}]}, 400,
     "input[0].type"),
    ("item type not a string", {"model": "m1", "input": [{"type": 7}]}, 400, "input[0].type"),
    ("message role", {"model": "m1", "input": [{"role": "robot", "content": "x"}]}, 400,
     "input[0].role"),
    ("message without content", {"model": "m1", "input": [{"role": "user"}]}, 400,
     "input[0].content"),
    ("content a number", {"model": "m1", "input": [{"role": "user", "content": 3}]}, 400,
     "input[0].content"),
    ("content part of unknown type", {"model": "m1", "input": [
        {"role": "user", "content": [{"type": "input_video", "url": "x"}]}]}, 400,
     "input[0].content[0].type"),
    ("text part without text", {"model": "m1", "input": [
        {"role": "user", "content": [{"type": "input_text"}]}]}, 400,
     "input[0].content[0].text"),
    ("image by file id", {"model": "m1", "input": [
        {"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]}, 400,
     "input[0].content[0].file_id"),
    ("function_call_output without a call", {"model": "m1", "input": [
        USER, {"type": "function_call_output", "call_id": "call_x", "output": "42"}]}, 400,
     "input[1].call_id"),
    ("function_call without a name", {"model": "m1", "input": [
        {"type": "function_call", "call_id": "c", "arguments": "{}"}]}, 400, "input[0].name"),
    ("function_call_output of a number", {"model": "m1", "input": [
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c", "output": 42}]}, 400,
     "input[1].output"),
    ("item_reference", {"model": "m1", "input": [{"type": "item_reference", "id": "msg_1"}]},
     400, "input[0]"),
    ("tools not a list", {"model": "m1", "input": "hi", "tools": {"type": "function"}}, 400,
     "tools"),
    ("function tool without a name", {"model": "m1", "input": "hi",
                                      "tools": [{"type": "function"}]}, 400, "tools[0].name"),
    ("tool parameters a string", {"model": "m1", "input": "hi", "tools": [
        {"type": "function", "name": "f", "parameters": "{}"}]}, 400, "tools[0].parameters"),
    ("tool_choice unknown", {"model": "m1", "input": "hi", "tool_choice": "always"}, 400,
     "tool_choice"),
    ("temperature a string", {"model": "m1", "input": "hi", "temperature": "hot"}, 400,
     "temperature"),
    ("max_output_tokens zero", {"model": "m1", "input": "hi", "max_output_tokens": 0}, 400,
     "max_output_tokens"),
    ("max_output_tokens true", {"model": "m1", "input": "hi", "max_output_tokens": True}, 400,
     "max_output_tokens"),
    ("stream a string", {"model": "m1", "input": "hi", "stream": "yes"}, 400, "stream"),
    ("store a number", {"model": "m1", "input": "hi", "store": 1}, 400, "store"),
    ("instructions a list", {"model": "m1", "input": "hi", "instructions": ["x"]}, 400,
     "instructions"),
    ("metadata a list", {"model": "m1", "input": "hi", "metadata": ["x"]}, 400, "metadata"),
    ("text format unknown", {"model": "m1", "input": "hi",
                             "text": {"format": {"type": "yaml"}}}, 400, "text.format.type"),
    ("json_schema without schema", {"model": "m1", "input": "hi", "text": {
        "format": {"type": "json_schema", "name": "x"}}}, 400, "text.format.schema"),
    ("reasoning effort a number", {"model": "m1", "input": "hi", "reasoning": {"effort": 3}},
     400, "reasoning.effort"),
    ("background", {"model": "m1", "input": "hi", "background": True}, 400, "background"),
    ("conversation", {"model": "m1", "input": "hi", "conversation": "conv_1"}, 400,
     "conversation"),
    ("previous_response_id a number", {"model": "m1", "input": "hi",
                                       "previous_response_id": 5}, 400, "previous_response_id"),
    ("unknown previous_response_id", {"model": "m1", "input": "hi",
                                      "previous_response_id": "resp_nope"}, 404,
     "previous_response_id"),
    ("foreign previous_response_id", {"model": "m1", "input": "hi",
                                      "previous_response_id": "x" * 5000}, 404,
     "previous_response_id"),
    ("unknown model", {"model": "nope", "input": "hi"}, 404, "model"),
    ("deep JSON", {"model": "m1", "input": "hi", "metadata": _deep(300)}, 400, None),
]


@pytest.mark.parametrize(("body", "status", "param"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_requests_get_a_clean_error(gateway: RouterProcess, body: Any, status: int,
                                        param: str | None) -> None:
    answer = httpx.post(f"{gateway.base_url}/responses", json=body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    if param is not None:
        assert error["param"] == param, error
    assert "x-routeyard-decision" not in answer.headers  # refused before routing


@pytest.mark.parametrize("raw", [b"", b"{not json", b'{"model": "m1", "input": "hi"', b"null",
                                 b"[" * 10_000 + b"]" * 10_000])
def test_malformed_bodies(gateway: RouterProcess, raw: bytes) -> None:
    answer = httpx.post(f"{gateway.base_url}/responses", content=raw,
                        headers={"content-type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["type"] == "invalid_request_error"


def test_the_sdk_raises_the_errors(gateway: RouterProcess) -> None:
    oai = openai.OpenAI(base_url=gateway.base_url, api_key="k", max_retries=0)
    with pytest.raises(openai.NotFoundError) as missing:
        oai.responses.create(model="m1", input="hi", previous_response_id="resp_missing")
    assert missing.value.body == {  # type: ignore[comparison-overlap]
        "message": "Previous response with id 'resp_missing' not found.",
        "type": "invalid_request_error", "param": "previous_response_id",
        "code": "previous_response_not_found"}
    with pytest.raises(openai.BadRequestError) as bad:
        oai.responses.create(model="m1", input=[{"role": "user", "content": 5}])  # type: ignore[list-item]
    assert bad.value.body["param"] == "input[0].content"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):  # streamed: refused before the stream opens
        oai.responses.create(model="m1", input=[{"type": "function_call_output",
                                                 "call_id": "c", "output": "x"}], stream=True)


@pytest.mark.parametrize(("query", "param"), [({"limit": "0"}, "limit"),
                                              ({"limit": "many"}, "limit"),
                                              ({"limit": "101"}, "limit"),
                                              ({"order": "sideways"}, "order"),
                                              ({"after": "msg_unknown"}, "after")])
def test_bad_input_items_queries(gateway: RouterProcess, query: dict[str, str],
                                 param: str) -> None:
    created = httpx.post(f"{gateway.base_url}/responses", json={"model": "m1", "input": "hi"})
    assert created.status_code == 200, created.text
    answer = httpx.get(f"{gateway.base_url}/responses/{created.json()['id']}/input_items",
                       params=query)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == param


@pytest.mark.parametrize("path", ["/responses/resp_missing", "/responses/whatever",
                                  "/responses/resp_missing/input_items"])
def test_unknown_ids_are_404(gateway: RouterProcess, path: str) -> None:
    for method in ("GET", "DELETE") if "input_items" not in path else ("GET",):
        answer = httpx.request(method, f"{gateway.base_url}{path}")
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "response_not_found"


def test_no_request_logged_a_traceback(gateway: RouterProcess) -> None:
    # Runs after the cases above (same module-scoped server): none of them was a 500.
    log = "".join(gateway.output)
    assert "Traceback" not in log and "unhandled error" not in log, log[-3000:]
