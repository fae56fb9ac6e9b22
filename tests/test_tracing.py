"""OpenTelemetry traces of the request path.

In process, through the SDK's in-memory exporter: the openai SDK calls the app (its ASGI
transport) and a real simulator process answers. Checked: one SERVER span per request that
continues the caller's `traceparent`; a child span per stage (validation, signals and one per
learned family, decision, selection, each plugin, each upstream attempt, the stream relay);
the GenAI and `routeyard.*` attributes; the attempt's context reaching the backend as its
`traceparent`; failover attempts marked as errors; sampling; and nothing at all when off.

Then out of process (`test_spans_reach_a_real_otlp_http_receiver`): `routeyard serve` exports
over OTLP/HTTP to a receiver process that decodes the protobuf payload.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from routerproc import start_router
from simproc import SimulatorProcess, start_simulator

from routeyard import Router, tracing
from routeyard.api import create_app
from routeyard.config import ConfigError, build_config

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
SAMPLED_PARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
PYTHON = [{"role": "user", "content": "Write a python function that reverses a list."}]
FAILOVER = [{"role": "user", "content": "failover please"}]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", "large", "--model", "small", "--ttft-ms", "2",
                         "--tpot-ms", "0", "--output-tokens", "12") as process:
        yield process


def _config(sim: SimulatorProcess, **tracing_: Any) -> dict[str, Any]:
    return {
        "models": [
            {"name": "large", "pricing": {"input_per_mtok": 3.0, "output_per_mtok": 15.0},
             "endpoints": [{"base_url": sim.base_url}]},
            {"name": "small", "pricing": {"input_per_mtok": 0.1, "output_per_mtok": 0.4},
             "endpoints": [{"base_url": sim.base_url}]},
            {"name": "broken", "endpoints": [{"base_url": "http://127.0.0.1:9/v1"}]},
        ],
        "signals": {"keyword": {"sets": {"code": {"regex": [r"\bpython\b"]},
                                         "failover": {"regex": [r"\bfailover\b"]}}},
                    "context_length": {"bands": {"short": {"max_tokens": 300}}},
                    "language": {}},
        "decisions": [
            {"name": "coding", "rules": {"all": ["keyword:code", "context_length:short",
                                                 "language:en"]},
             "candidates": ["small", "large"],
             "plugins": [{"type": "system_prompt", "text": "Answer with code."}]},
            {"name": "failing", "rules": "keyword:failover", "candidates": ["broken", "small"]},
        ],
        "default": {"name": "everyday", "candidates": ["large"]},
        "state": {"backend": "memory"},
        "pool": {"health_check": {"interval_s": 0}, "retry": {"max_retries": 0}},
        "tracing": {"enabled": True, **tracing_},
    }


@pytest.fixture
async def traced(sim: SimulatorProcess) -> AsyncIterator[tuple[openai.AsyncOpenAI,
                                                                InMemorySpanExporter]]:
    """An openai client on an in-process router whose spans go to an in-memory exporter."""
    exporter = InMemorySpanExporter()
    async with _client(_config(sim), exporter) as client:
        yield client, exporter


class _client:
    def __init__(self, config: dict[str, Any], exporter: InMemorySpanExporter | None) -> None:
        self.router = Router(build_config(config), span_exporter=exporter)

    async def __aenter__(self) -> openai.AsyncOpenAI:
        await self.router.start()
        transport = httpx.ASGITransport(app=create_app(self.router))
        self.http = httpx.AsyncClient(transport=transport, base_url="http://router")
        return openai.AsyncOpenAI(base_url="http://router/v1", api_key="unused",
                                  http_client=self.http, max_retries=0)

    async def __aexit__(self, *_: object) -> None:
        await self.http.aclose()
        await self.router.close()


def by_name(spans: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


def root_of(spans: tuple[ReadableSpan, ...]) -> ReadableSpan:
    [root] = [s for s in spans if s.kind == SpanKind.SERVER]
    return root


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


async def test_a_request_is_one_trace_with_a_span_per_stage(
        traced: tuple[openai.AsyncOpenAI, InMemorySpanExporter],
        sim: SimulatorProcess) -> None:
    client, exporter = traced
    sim.reset()
    reply = await client.chat.completions.with_raw_response.create(
        model="auto", messages=PYTHON, extra_headers={"traceparent": SAMPLED_PARENT})
    completion = reply.parse()
    spans = exporter.get_finished_spans()
    names = by_name(spans)
    for stage in ("routeyard.validate", "routeyard.signals", "routeyard.signal.language",
                  "routeyard.decision", "routeyard.selection",
                  "routeyard.plugin.system_prompt", "chat small"):
        assert stage in names, (stage, sorted(names))
    # A span per learned family only: a regex or a token count is not worth one.
    assert "routeyard.signal.keyword" not in names
    assert "routeyard.signal.context_length" not in names
    root = root_of(spans)
    # One trace, continuing the caller's: the root's parent is the caller's span.
    assert {f"{s.context.trace_id:032x}" for s in spans} == {TRACE_ID}
    assert root.parent is not None and f"{root.parent.span_id:016x}" == PARENT_ID
    # The tree: stages under the root, families under the signals, the attempt under the root.
    root_id = root.context.span_id
    for stage in ("routeyard.validate", "routeyard.signals", "routeyard.decision",
                  "routeyard.selection", "routeyard.plugin.system_prompt", "chat small"):
        assert names[stage].parent.span_id == root_id, stage
    assert names["routeyard.signal.language"].parent.span_id == \
        names["routeyard.signals"].context.span_id
    # GenAI and routeyard attributes, as the answer and its headers say.
    attributes = root.attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "auto"
    assert attributes["gen_ai.response.model"] == "small"
    assert attributes["gen_ai.usage.input_tokens"] == completion.usage.prompt_tokens
    assert attributes["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens
    assert attributes["routeyard.decision"] == "coding" == reply.headers["x-routeyard-decision"]
    assert {"context_length:short", "keyword:code", "language:en"} <= set(
        attributes["routeyard.signals"])
    assert attributes["routeyard.cache"] == "none"
    assert attributes["routeyard.request_id"] == reply.headers["x-routeyard-request-id"]
    assert attributes["routeyard.cost_usd"] > 0
    assert attributes["http.response.status_code"] == 200
    assert root.status.status_code != StatusCode.ERROR
    assert names["routeyard.decision"].attributes["routeyard.decision"] == "coding"
    assert names["routeyard.selection"].attributes["routeyard.model"] == "small"
    attempt = names["chat small"]
    assert attempt.kind == SpanKind.CLIENT
    assert attempt.attributes["gen_ai.provider.name"] == "openai"
    assert attempt.attributes["server.address"] == "127.0.0.1"
    # The backend got the attempt's context as its traceparent.
    assert f"00-{TRACE_ID}-{hex_ids(attempt)[1]}-01" in sim.stats()["traceparents"]


async def test_a_stream_has_its_relay_span_and_ends_the_request_with_it(
        traced: tuple[openai.AsyncOpenAI, InMemorySpanExporter]) -> None:
    client, exporter = traced
    stream = await client.chat.completions.create(model="auto", messages=PYTHON, stream=True,
                                                  stream_options={"include_usage": True})
    usage = None
    async for chunk in stream:
        usage = chunk.usage or usage
    spans = exporter.get_finished_spans()
    names = by_name(spans)
    root = root_of(spans)
    relay = names["routeyard.stream"]
    assert relay.parent.span_id == root.context.span_id
    assert relay.attributes["routeyard.chunks"] > 1
    assert relay.attributes["routeyard.status"] == "ok"
    assert relay.end_time <= root.end_time  # the request ends when its stream does
    assert root.attributes["routeyard.stream"] is True
    assert usage is not None and root.attributes["gen_ai.usage.output_tokens"] == \
        usage.completion_tokens
    assert names["chat small"].parent.span_id == root.context.span_id


async def test_a_failed_attempt_is_an_error_span_before_the_one_that_answered(
        traced: tuple[openai.AsyncOpenAI, InMemorySpanExporter]) -> None:
    client, exporter = traced
    await client.chat.completions.create(model="auto", messages=FAILOVER)
    spans = exporter.get_finished_spans()
    attempts = sorted((s for s in spans if s.kind == SpanKind.CLIENT),
                      key=lambda s: s.start_time)
    assert [s.name for s in attempts] == ["chat broken", "chat small"]
    assert attempts[0].status.status_code == StatusCode.ERROR
    assert attempts[0].attributes["error.type"] == "connect"
    assert attempts[1].status.status_code != StatusCode.ERROR
    assert root_of(spans).attributes["gen_ai.response.model"] == "small"


async def test_bad_input_and_unknown_models_end_their_span_with_the_status(
        traced: tuple[openai.AsyncOpenAI, InMemorySpanExporter]) -> None:
    client, exporter = traced
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="no-such-model", messages=PYTHON)
    root = root_of(exporter.get_finished_spans())
    assert root.attributes["http.response.status_code"] == 404
    exporter.clear()
    answer = await client._client.post(  # type: ignore[attr-defined]
        "/v1/chat/completions", content=b'{"model": "auto", "messages": [', headers={
            "content-type": "application/json"})
    assert answer.status_code == 400
    spans = exporter.get_finished_spans()
    assert root_of(spans).attributes["http.response.status_code"] == 400
    validate = by_name(spans)["routeyard.validate"]
    assert validate.status.status_code == StatusCode.ERROR
    assert [event.name for event in validate.events] == ["exception"]


async def test_every_surface_opens_its_request_span(
        traced: tuple[openai.AsyncOpenAI, InMemorySpanExporter]) -> None:
    """Messages (the anthropic SDK), Responses and legacy completions: one SERVER span each,
    annotated by the accounting like chat's."""
    client, exporter = traced
    # The anthropic SDK speaks through httpx2, with its own ASGI transport.
    app = client._client._transport.app  # type: ignore[attr-defined]
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app),
                                  base_url="http://router") as http:
        messages = anthropic.AsyncAnthropic(base_url="http://router", api_key="unused",
                                            http_client=http, max_retries=0)
        await messages.messages.create(model="auto", max_tokens=50, messages=PYTHON)
    await client.responses.create(model="auto", input=PYTHON[0]["content"])
    await client.completions.create(model="auto", prompt=PYTHON[0]["content"])
    roots = sorted((s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER),
                   key=lambda s: s.start_time)
    assert [(r.name, r.attributes["routeyard.surface"]) for r in roots] == [
        ("POST /v1/messages", "messages"), ("POST /v1/responses", "responses"),
        ("POST /v1/completions", "completions")]
    for root in roots:
        assert root.attributes["routeyard.decision"] == "coding"
        assert root.attributes["gen_ai.usage.output_tokens"] > 0
        assert root.attributes["http.response.status_code"] == 200


async def test_an_unsampled_trace_records_nothing_but_a_sampled_caller_is_followed(
        sim: SimulatorProcess) -> None:
    exporter = InMemorySpanExporter()
    sim.reset()
    async with _client(_config(sim, sample_ratio=0.0), exporter) as client:
        await client.chat.completions.create(model="auto", messages=PYTHON)
        assert exporter.get_finished_spans() == ()
        assert sim.stats()["traceparents"] == []  # a new trace, not sampled: nothing sent
        # A caller's unsampled trace is continued, unrecorded: the backend gets its trace id
        # with the sampled bit off, so that it does not start a trace of its own.
        await client.chat.completions.create(
            model="auto", messages=PYTHON,
            extra_headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"})
        assert exporter.get_finished_spans() == ()
        [continued] = sim.stats()["traceparents"]
        version, trace_id, _, flags = continued.split("-")
        assert (version, trace_id) == ("00", TRACE_ID) and int(flags, 16) & 1 == 0
        await client.chat.completions.create(model="auto", messages=PYTHON,
                                             extra_headers={"traceparent": SAMPLED_PARENT})
        assert {f"{s.context.trace_id:032x}" for s in exporter.get_finished_spans()} == \
            {TRACE_ID}


async def test_a_sample_ratio_keeps_about_that_share(sim: SimulatorProcess) -> None:
    exporter = InMemorySpanExporter()
    async with _client(_config(sim, sample_ratio=0.5), exporter) as client:
        for _ in range(60):
            await client.chat.completions.create(model="auto", messages=PYTHON)
    kept = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert 10 <= len(kept) <= 50  # binomial(60, 0.5): outside this, p < 1e-6


async def test_off_by_default_nothing_is_traced_or_propagated(sim: SimulatorProcess) -> None:
    config = _config(sim)
    del config["tracing"]
    sim.reset()
    async with _client(config, None) as client:
        await client.chat.completions.create(model="auto", messages=PYTHON,
                                             extra_headers={"traceparent": SAMPLED_PARENT})
        assert not tracing.enabled()
    assert sim.stats()["traceparents"] == []


async def test_a_closed_router_stops_tracing(sim: SimulatorProcess) -> None:
    async with _client(_config(sim), InMemorySpanExporter()):
        assert tracing.enabled()
    assert not tracing.enabled()


@pytest.mark.parametrize(("settings", "problem"), [
    ({"endpoint": "collector:4318"}, "http://"),
    ({"sample_ratio": 1.5}, "sample_ratio"),
    ({"exporter": "zipkin"}, "exporter"),
])
def test_tracing_settings_are_checked(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        build_config({"models": [{"name": "m", "endpoints": [
            {"base_url": "http://127.0.0.1:9/v1"}]}], "tracing": settings})
    assert problem in str(error.value)


# -- a real OTLP/HTTP receiver -------------------------------------------------------------


def _start_receiver() -> tuple[subprocess.Popen[str], str, queue.Queue[dict[str, Any]]]:
    receiver = subprocess.Popen([sys.executable, str(Path(__file__).with_name(
        "otlp_receiver.py"))], stdout=subprocess.PIPE, text=True)
    assert receiver.stdout is not None
    url = receiver.stdout.readline().split(" on ")[-1].strip()
    spans: queue.Queue[dict[str, Any]] = queue.Queue()

    def pump() -> None:
        assert receiver.stdout is not None
        for line in receiver.stdout:
            if line.startswith("span "):
                spans.put(json.loads(line[5:]))

    threading.Thread(target=pump, daemon=True).start()
    return receiver, url, spans


def test_spans_reach_a_real_otlp_http_receiver(sim: SimulatorProcess, tmp_path: Path) -> None:
    receiver, url, received = _start_receiver()
    try:
        config = _config(sim, endpoint=f"{url}/v1/traces",
                         resource_attributes={"deployment.environment": "test"})
        del config["state"]
        # Export batches every 100 ms rather than the SDK's default 5 s.
        with start_router(config, tmp_path, env={"OTEL_BSP_SCHEDULE_DELAY": "100"}) as router:
            client = openai.OpenAI(base_url=router.base_url, api_key="unused", max_retries=0)
            reply = client.chat.completions.with_raw_response.create(
                model="auto", messages=PYTHON, extra_headers={"traceparent": SAMPLED_PARENT})
            spans: list[dict[str, Any]] = []
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not any(
                    s["kind"] == "SERVER" for s in spans):
                try:
                    spans.append(received.get(timeout=0.5))
                except queue.Empty:
                    continue
            time.sleep(0.3)  # the rest of the batch
            while not received.empty():
                spans.append(received.get())
    finally:
        receiver.terminate()
        receiver.wait(5)
    [root] = [s for s in spans if s["kind"] == "SERVER"]
    assert root["trace_id"] == TRACE_ID and root["parent_span_id"] == PARENT_ID
    assert root["attributes"]["routeyard.decision"] == "coding"
    assert root["attributes"]["routeyard.request_id"] == \
        reply.headers["x-routeyard-request-id"]
    assert root["attributes"]["gen_ai.usage.output_tokens"] == \
        reply.parse().usage.completion_tokens
    assert root["resource"]["service.name"] == "routeyard"
    assert root["resource"]["deployment.environment"] == "test"
    names = {s["name"] for s in spans}
    assert {"routeyard.signals", "routeyard.decision", "routeyard.selection",
            "chat small"} <= names, names
    [attempt] = [s for s in spans if s["kind"] == "CLIENT"]
    assert attempt["parent_span_id"] == root["span_id"]
    assert f"00-{TRACE_ID}-{attempt['span_id']}-01" in sim.stats()["traceparents"]
