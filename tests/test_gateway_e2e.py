"""End to end: the real openai SDK → `routeyard serve` → a simulator process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator

SECRET = "sk-never-show-this-1234"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", "small", "--model", "large", "--model", "tiny",
                         "--model", "nousage", "--ttft-ms", "0", "--tpot-ms", "0",
                         "--output-tokens", "12") as process:
        yield process


def gateway_config(sim: SimulatorProcess) -> dict[str, Any]:
    endpoint = {"base_url": sim.base_url, "api_key": SECRET}
    return {
        "models": [
            {"name": "small", "pricing": {"input_per_mtok": 0.15, "output_per_mtok": 0.6},
             "endpoints": [endpoint]},
            {"name": "large", "pricing": {"input_per_mtok": 2.5, "output_per_mtok": 10},
             "context_window": 100000, "endpoints": [endpoint]},
            {"name": "tiny", "context_window": 64, "endpoints": [endpoint]},
            {"name": "nousage", "endpoints": [endpoint]},
        ],
        "aliases": ["auto", "smart"],
        "decisions": [
            {"name": "hard", "priority": 5, "when": {"keywords_any": ["prove"]},
             "candidates": ["large"], "fallback": ["small"]},
            {"name": "short-first", "when": {"keywords_any": ["tiny please"]},
             "candidates": ["tiny", "small"]},
        ],
        "default": {"name": "everyday", "candidates": ["small"], "fallback": ["large"]},
        "pool": {"health_check": {"interval_s": 0}},
    }


@pytest.fixture(scope="module")
def gateway(sim: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RouterProcess]:
    with start_router(gateway_config(sim), tmp_path_factory.mktemp("gw")) as process:
        yield process


@pytest.fixture
def client(gateway: RouterProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0)


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_sync_non_streaming_routes_and_sets_headers(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=ask("hello"))
    completion = raw.parse()
    assert raw.headers["x-routeyard-model"] == "small"
    assert raw.headers["x-routeyard-decision"] == "everyday"
    assert raw.headers["x-routeyard-request-id"].startswith("req_")
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens > 0

    raw = client.chat.completions.with_raw_response.create(
        model="smart", messages=ask("Please prove that 2+2=4"))
    assert raw.headers["x-routeyard-model"] == "large"
    assert raw.headers["x-routeyard-decision"] == "hard"


def test_standard_parameters_pass_through(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="small", messages=ask("hello"), max_tokens=3, temperature=0.2, top_p=0.9,
        stop=["zzz"], seed=7, user="u1", presence_penalty=0.1)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 3


async def test_async_streaming_with_and_without_usage(gateway: RouterProcess) -> None:
    client = openai.AsyncOpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0)
    stream = await client.chat.completions.create(
        model="auto", messages=ask("hello"), stream=True,
        stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0

    stream = await client.chat.completions.create(model="auto", messages=ask("hi"), stream=True)
    chunks = [chunk async for chunk in stream]
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    await client.close()


def test_sync_streaming_headers(client: openai.OpenAI) -> None:
    with client.chat.completions.with_streaming_response.create(
            model="auto", messages=ask("prove it"), stream=True) as response:
        assert response.headers["x-routeyard-model"] == "large"
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = list(response.parse())
    assert any(c.choices and c.choices[0].delta.content for c in chunks)


def test_usage_computed_when_backend_omits_it(client: openai.OpenAI, sim: SimulatorProcess
                                             ) -> None:
    httpx.put(f"{sim.url}/_sim/profiles/nousage", json={"omit_usage": True}).raise_for_status()
    completion = client.chat.completions.create(model="nousage", messages=ask("count me"))
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    chunks = list(client.chat.completions.create(
        model="nousage", messages=ask("count me"), stream=True,
        stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt5", messages=ask("hi"))
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "model_not_found"
    assert error["param"] == "model"


def test_context_window_never_exceeded(client: openai.OpenAI, sim: SimulatorProcess) -> None:
    httpx.post(f"{sim.url}/_sim/reset").raise_for_status()
    long_prompt = "tiny please " + "word " * 300
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=ask(long_prompt))
    assert raw.headers["x-routeyard-model"] == "small"  # tiny's 64-token window is skipped
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=ask("tiny please"))
    assert raw.headers["x-routeyard-model"] == "tiny"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tiny", messages=ask(long_prompt))
    assert caught.value.code == "context_length_exceeded"
    stats = httpx.get(f"{sim.url}/_sim/stats").json()
    assert stats["requests"].get("tiny", 0) == 1  # only the short prompt reached it


def test_models_listing_has_aliases_and_no_secrets(gateway: RouterProcess) -> None:
    response = httpx.get(f"{gateway.base_url}/models")
    assert response.status_code == 200
    ids = [m["id"] for m in response.json()["data"]]
    assert ids[:2] == ["auto", "smart"]
    assert {"small", "large", "tiny", "nousage"} <= set(ids)
    assert SECRET not in response.text and "127.0.0.1" not in response.text
    assert SECRET not in "".join(gateway.output)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"", 400, "empty"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"model": "auto"}', 400, "messages"),
        (b'{"model": "auto", "messages": "hello"}', 400, "messages"),
        (b'{"model": "auto", "messages": []}', 400, "messages"),
        (b'{"model": 42, "messages": [{"role": "user", "content": "x"}]}', 400, "model"),
        (b'{"model": "auto", "messages": [{"role": "wizard", "content": "x"}]}', 400, "role"),
        (b'{"model": "auto", "stream": "yes", "messages": [{"role": "user", "content": "x"}]}',
         400, "stream"),
        (b'{"model": "auto", "max_tokens": "ten", "messages": [{"role": "user", "content": "x"}]}',
         400, "max_tokens"),
        (b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}', 404, "nope"),
    ],
)
def test_bad_input_gets_openai_errors(gateway: RouterProcess, body: bytes, status: int,
                                      needle: str) -> None:
    response = httpx.post(f"{gateway.base_url}/chat/completions", content=body,
                          headers={"content-type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert needle in error["message"]
    assert "Traceback" not in response.text


def test_huge_body_is_413(gateway: RouterProcess) -> None:
    big = b'{"model": "auto", "messages": [{"role": "user", "content": "' + b"x" * (65 << 20)
    big += b'"}]}'
    response = httpx.post(f"{gateway.base_url}/chat/completions", content=big,
                          headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_unknown_path_and_method(gateway: RouterProcess) -> None:
    response = httpx.get(f"{gateway.base_url}/nothing-here")
    assert response.status_code == 404 and "error" in response.json()
    response = httpx.get(f"{gateway.base_url}/chat/completions")
    assert response.status_code == 405 and "error" in response.json()


def test_health_ready_and_metrics(gateway: RouterProcess, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="auto", messages=ask("warm"))
    for _ in client.chat.completions.create(model="auto", messages=ask("warm"), stream=True):
        pass  # a stream: its time to first token is measured
    assert httpx.get(f"{gateway.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    text = httpx.get(f"{gateway.url}/metrics").text
    for name in ("routeyard_requests_total", "routeyard_request_duration_seconds_bucket",
                 "routeyard_time_to_first_token_seconds_bucket",
                 "routeyard_upstream_duration_seconds_bucket", "routeyard_tokens_total",
                 "routeyard_cost_dollars_total", "routeyard_errors_total",
                 "routeyard_endpoint_up"):
        assert name in text, name
    assert 'routeyard_requests_total{decision="everyday",model="small",status="ok"}' in text


def test_time_per_output_token_and_signal_latency_are_measured(
        gateway: RouterProcess, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="auto", messages=ask("tell me a story"),
                                            stream=True)
    chunks = [c for c in stream if c.choices and c.choices[0].delta.content]
    assert len(chunks) > 1
    families = {sample.labels["family"]: sample.value
                for sample in _samples(gateway, "routeyard_signal_duration_seconds_count")}
    assert families and all(count >= 1 for count in families.values())
    tpot = _samples(gateway, "routeyard_time_per_output_token_seconds_count")
    assert next(s.value for s in tpot if s.labels["model"] == "small") >= 1


def _samples(gateway: RouterProcess, name: str) -> list[Any]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{gateway.url}/metrics").text
    return [sample for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == name]


def test_dry_run_over_http(gateway: RouterProcess) -> None:
    response = httpx.post(f"{gateway.base_url}/route", json={"prompt": "please prove this"})
    assert response.status_code == 200
    plan = response.json()
    assert {"signals", "decision", "model", "reason"} <= set(plan)
    assert plan["decision"] == "hard" and plan["model"] == "large"
    assert "keyword:@hard 'prove'" in plan["reason"]
    bad = httpx.post(f"{gateway.base_url}/route", json={"prompt": 3})
    assert bad.status_code == 400


def test_decision_log_records_requests(gateway: RouterProcess, client: openai.OpenAI,
                                       tmp_path: Path) -> None:
    import sqlite3
    import time

    raw = client.chat.completions.with_raw_response.create(model="auto", messages=ask("log me"))
    request_id = raw.headers["x-routeyard-request-id"]
    config_path = Path(gateway.process.args[-1])  # type: ignore[index]
    db = config_path.parent / "state.db"
    deadline = time.monotonic() + 5
    row = None
    while row is None and time.monotonic() < deadline:
        time.sleep(0.2)
        with sqlite3.connect(db) as connection:
            row = connection.execute(
                "SELECT decision, model, status, prompt_tokens, completion_tokens, cost_usd "
                "FROM decisions WHERE request_id = ?", (request_id,)).fetchone()
    assert row is not None
    decision, model, status, prompt_tokens, completion_tokens, cost = row
    assert (decision, model, status) == ("everyday", "small", "ok")
    assert prompt_tokens > 0 and completion_tokens > 0 and cost > 0
