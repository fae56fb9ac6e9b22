"""POST /v1/embeddings end to end: the openai SDK against `routeyard serve` and simulator
subprocesses. Routing by name, alias and model_routes; failover between embedding models;
the decision log and metrics; bad input as clean 4xx errors in OpenAI's schema."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator

from routeyard.catalog import build_config
from routeyard.errors import ContextTooLong, Forbidden, InvalidRequest, ModelNotFound
from routeyard.router import Router
from routeyard.state import DecisionRecord, MemoryStore, SQLiteStore
from routeyard.tokens import count_text_tokens

PRICE = 0.10  # $ per million input tokens of embed-a


def sim_config(tmp: Path) -> str:
    path = tmp / "sim.yaml"
    path.write_text(yaml.safe_dump({"models": {
        "embed-a": {},  # an embedding model by its name
        "vectors": {"embedding": True},  # by its profile
        "quiet-embed": {"omit_usage": True},
        "chat-m": {"output_tokens_mean": 5},
    }}))
    return str(path)


def endpoint(sim: SimulatorProcess, upstream: str | None = None) -> list[dict[str, Any]]:
    return [{"base_url": sim.base_url, **({"upstream_model": upstream} if upstream else {})}]


def router_config(sim: SimulatorProcess, **extra: Any) -> dict[str, Any]:
    return {
        "models": [
            {"name": "chat", "endpoints": endpoint(sim, "chat-m")},
            {"name": "embed-a", "kind": "embedding", "endpoints": endpoint(sim),
             "pricing": {"input_per_mtok": PRICE}},
            {"name": "vectors", "kind": "embedding", "endpoints": endpoint(sim)},
            {"name": "quiet", "kind": "embedding", "endpoints": endpoint(sim, "quiet-embed")},
            {"name": "tiny", "kind": "embedding", "context_window": 8,
             "endpoints": endpoint(sim, "embed-a")},
        ],
        "default": {"candidates": ["chat"]},
        "model_routes": [{"match": "text-embedding-*"}],
        "pool": {"health_check": {"interval_s": 0}},
        **extra,
    }


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    with start_simulator("--config", sim_config(tmp_path_factory.mktemp("sim"))) as process:
        yield process


@pytest.fixture(scope="module")
def gateway(sim: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RouterProcess]:
    with start_router(router_config(sim), tmp_path_factory.mktemp("router")) as process:
        yield process


@pytest.fixture
def client(gateway: RouterProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key="k", max_retries=0)


def cosine(a: list[float], b: list[float]) -> float:
    va, vb = np.asarray(a), np.asarray(b)
    return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))


def test_single_batch_base64_and_dimensions(client: openai.OpenAI) -> None:
    raw = client.embeddings.with_raw_response.create(model="embed-a", input="hello world")
    assert raw.headers["x-routeyard-model"] == "embed-a"
    assert raw.headers["x-routeyard-decision"] == "embeddings"
    assert raw.headers["x-routeyard-request-id"].startswith("req_")
    one = raw.parse()  # the SDK asked for base64 (its default) and decoded it
    assert one.object == "list" and one.model == "embed-a" and len(one.data) == 1
    vector = one.data[0].embedding
    assert len(vector) == 256 and abs(np.linalg.norm(vector) - 1) < 1e-5
    assert one.usage.prompt_tokens > 0 and one.usage.total_tokens == one.usage.prompt_tokens

    batch = client.embeddings.create(model="embed-a", input=["hello world", "b", "c"],
                                     encoding_format="float")
    assert [d.index for d in batch.data] == [0, 1, 2]
    assert np.allclose(batch.data[0].embedding, vector)  # deterministic, float or base64

    encoded = client.embeddings.create(model="embed-a", input="hello world",
                                       encoding_format="base64")
    raw_vector = encoded.data[0].embedding
    assert isinstance(raw_vector, str)  # asked for explicitly: the string, as OpenAI sends it
    assert np.allclose(np.frombuffer(base64.b64decode(raw_vector), "<f4"), vector)

    short = client.embeddings.create(model="embed-a", input="hello world", dimensions=64)
    assert len(short.data[0].embedding) == 64
    tokens = client.embeddings.create(model="embed-a", input=[[1, 2, 3], [1, 2, 4]])
    assert len(tokens.data) == 2 and tokens.usage.prompt_tokens == 6


def test_similar_texts_are_closer_than_unrelated_ones(client: openai.OpenAI) -> None:
    texts = ["The cat sat on the mat.", "A cat was sitting on the mat.",
             "Quarterly revenue rose twelve percent on strong cloud sales."]
    data = client.embeddings.create(model="vectors", input=texts).data
    similar, unrelated = cosine(data[0].embedding, data[1].embedding), \
        cosine(data[0].embedding, data[2].embedding)
    assert similar > 0.4 and abs(unrelated) < 0.2 and similar > unrelated + 0.3


def test_aliases_and_model_routes_go_to_the_embedding_models(client: openai.OpenAI) -> None:
    for name in ("auto", "text-embedding-3-small"):
        raw = client.embeddings.with_raw_response.create(model=name, input="hello")
        assert raw.headers["x-routeyard-model"] == "embed-a"  # the first in config order
        assert raw.headers["x-routeyard-decision"] == "embeddings"


def test_usage_is_counted_when_the_backend_sends_none(client: openai.OpenAI) -> None:
    texts = ["counted by the router", "twice"]
    reply = client.embeddings.create(model="quiet", input=texts)
    expected = sum(count_text_tokens(t) for t in texts)
    assert reply.usage.prompt_tokens == expected == reply.usage.total_tokens


def test_decision_log_and_metrics(client: openai.OpenAI, gateway: RouterProcess) -> None:
    text = "a record of this request " * 20
    raw = client.embeddings.with_raw_response.create(model="embed-a", input=text)
    tokens = raw.parse().usage.prompt_tokens
    record = _decision(gateway, raw.headers["x-routeyard-request-id"])
    assert record.decision == "embeddings" and record.model == "embed-a"
    assert record.status == "ok" and record.stream is False
    assert record.prompt_tokens == tokens and record.completion_tokens == 0
    assert record.cost_usd == pytest.approx(tokens * PRICE / 1e6)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(
                   httpx.get(f"{gateway.url}/metrics").text) for s in family.samples}
    requests = ("routeyard_requests_total",
                (("decision", "embeddings"), ("model", "embed-a"), ("status", "ok")))
    assert samples[requests] >= 1
    assert samples[("routeyard_tokens_total", (("kind", "prompt"), ("model", "embed-a")))] \
        >= tokens


def _decision(gateway: RouterProcess, request_id: str) -> DecisionRecord:
    """The gateway's decision record, read from its own SQLite file once it is flushed."""
    async def read() -> DecisionRecord | None:
        store = SQLiteStore(Path(gateway_state(gateway)))
        await store.start()
        try:
            return await store.get_decision(request_id)
        finally:
            await store.close()

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = asyncio.run(read())
        if found is not None:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no decision record for {request_id}")


def gateway_state(gateway: RouterProcess) -> str:
    config = next(arg for arg in gateway.process.args if str(arg).endswith(".yaml"))
    return yaml.safe_load(Path(config).read_text())["state"]["path"]


def test_input_too_long_for_a_model_is_left_out_or_refused(client: openai.OpenAI) -> None:
    long = "many words here " * 10
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="tiny", input=long)
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.body["param"] == "input"  # type: ignore[index]
    assert client.embeddings.create(model="tiny", input="short").data


@pytest.mark.parametrize(("body", "param"), [
    ({"input": 5}, "input"),
    ({"input": []}, "input"),
    ({"input": ""}, "input[0]"),
    ({"input": ["ok", 3]}, "input[1]"),
    ({"input": [[1, 2], "mixed"]}, "input[1]"),
    ({"input": [[1, -2]]}, "input[0]"),
    ({"input": "x", "encoding_format": "hex"}, "encoding_format"),
    ({"input": "x", "dimensions": 0}, "dimensions"),
    ({"input": "x", "dimensions": "64"}, "dimensions"),
    ({"input": "x", "user": 7}, "user"),
    ({"model": 3, "input": "x"}, "model"),
    ({"model": "", "input": "x"}, "model"),
])
def test_wrong_types_are_400s_naming_the_field(gateway: RouterProcess, body: dict[str, Any],
                                               param: str) -> None:
    reply = httpx.post(f"{gateway.base_url}/embeddings", json={"model": "embed-a", **body})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert "x-routeyard-request-id" not in reply.headers  # refused before routing


def test_models_of_the_wrong_kind_and_unknown_models(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="chat", input="x")
    assert caught.value.code == "model_not_supported" and "chat model" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="embed-a",
                                       messages=[{"role": "user", "content": "x"}])
    assert caught.value.code == "model_not_supported" and "embedding" in caught.value.message
    with pytest.raises(openai.NotFoundError) as missing:
        client.embeddings.create(model="no-such-model", input="x")
    assert missing.value.code == "model_not_found"


@pytest.mark.parametrize(("raw", "code"), [
    (b"not json", "invalid_request"), (b"[1, 2]", "invalid_request"), (b"", "invalid_request"),
    (b'{"model": "embed-a", "input": ' + b"[" * 200 + b"]" * 200 + b"}", "json_too_deep")])
def test_malformed_bodies_are_400s(gateway: RouterProcess, raw: bytes, code: str) -> None:
    reply = httpx.post(f"{gateway.base_url}/embeddings", content=raw,
                       headers={"content-type": "application/json"})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == code


def test_failover_between_embedding_models(tmp_path: Path) -> None:
    with start_simulator("--model", "embed-a") as first, \
            start_simulator("--model", "embed-b") as second:
        config = {
            "models": [
                {"name": "chat", "endpoints": endpoint(second, "embed-b")},
                {"name": "embed-a", "kind": "embedding", "endpoints": endpoint(first)},
                {"name": "embed-b", "kind": "embedding", "endpoints": endpoint(second)},
            ],
            "default": {"candidates": ["chat"]},
            "pool": {"health_check": {"interval_s": 0}, "retry": {"max_retries": 0}},
        }
        with start_router(config, tmp_path) as gateway:
            client = openai.OpenAI(base_url=gateway.base_url, api_key="k", max_retries=0)
            raw = client.embeddings.with_raw_response.create(model="auto", input="hi")
            assert raw.headers["x-routeyard-model"] == "embed-a"
            first.kill()
            raw = client.embeddings.with_raw_response.create(model="auto", input="hi")
            assert raw.headers["x-routeyard-model"] == "embed-b"
            assert raw.parse().model == "embed-b" and len(raw.parse().data[0].embedding) == 256
            # A named model has no other to fail over to: a 502 with the decision headers.
            failed = httpx.post(f"{gateway.base_url}/embeddings",
                                json={"model": "embed-a", "input": "hi"})
            assert failed.status_code == 502, failed.text
            assert failed.json()["error"]["code"] == "upstream_failed"
            assert failed.headers["x-routeyard-decision"] == "embeddings"
            record = _decision(gateway, failed.headers["x-routeyard-request-id"])
            assert record.status == "upstream_failed" and record.model is None


EP = [{"base_url": "http://127.0.0.1:9/v1"}]


async def test_library_call_and_routing_refusals(sim: SimulatorProcess) -> None:
    async with Router(build_config(router_config(sim)), store=MemoryStore()) as router:
        answer = await router.embed({"model": "auto", "input": ["one", "two"]})
        assert answer.model == "embed-a" and len(answer.response["data"]) == 2
        assert answer.plan.decision == "embeddings"
        assert [m.name for m in answer.plan.models] == ["embed-a", "vectors", "quiet", "tiny"]
        with pytest.raises(InvalidRequest, match="input"):
            await router.embed({"model": "auto", "input": {"text": "x"}})
        with pytest.raises(ContextTooLong):
            await router.embed({"model": "tiny", "input": "word " * 50})
    # No embedding model: an alias is a 404 that says what to configure.
    chat_only = {"models": [{"name": "chat", "endpoints": EP}],
                 "pool": {"health_check": {"interval_s": 0}}}
    async with Router(build_config(chat_only), store=MemoryStore()) as router:
        with pytest.raises(ModelNotFound, match="kind: embedding") as caught:
            await router.embed({"model": "auto", "input": "x"})
        assert caught.value.code == "no_embedding_model"
    # Names refused where the router must route every request; aliases still work.
    closed = {**router_config(sim), "allow_direct_models": False}
    async with Router(build_config(closed), store=MemoryStore()) as router:
        with pytest.raises(Forbidden):
            await router.embed({"model": "embed-a", "input": "x"})
        assert (await router.embed({"model": "auto", "input": "x"})).model == "embed-a"
