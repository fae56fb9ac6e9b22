"""Time-to-first-token timeouts: a model (or endpoint) with `ttft_timeout_ms` that sends no first
byte in time is left for the next endpoint or model before the client sees anything. The slow
backend is the simulator with a 2 s `ttft_ms`; the clients are the openai SDK against
`routeyard serve`, and a Router in process where the attempt log is read."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator

from routeyard import Router
from routeyard.catalog import build_config
from routeyard.metrics import Metrics
from routeyard.pool import Pool
from routeyard.serving.request import validate_chat_request
from routeyard.state import MemoryStore

SLOW_TTFT_MS = 2000
BOUND_MS = 200


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", "slow", "--model", "fast", "--ttft-ms", "0",
                         "--tpot-ms", "1", "--output-tokens", "8") as process:
        process.set_profile("slow", ttft_ms=SLOW_TTFT_MS)
        yield process


@pytest.fixture(autouse=True)
def fresh_stats(sim: SimulatorProcess) -> None:
    sim.reset()


def ttft_config(base_url: str) -> dict[str, Any]:
    def endpoint(upstream: str, **extra: Any) -> dict[str, Any]:
        return {"base_url": base_url, "upstream_model": upstream, **extra}

    def decision(name: str, candidates: list[str], fallback: list[str]) -> dict[str, Any]:
        return {"name": name, "when": {"keywords_any": [name]}, "candidates": candidates,
                "fallback": fallback}

    return {
        "models": [
            {"name": "slow", "ttft_timeout_ms": BOUND_MS, "endpoints": [endpoint("slow")]},
            {"name": "fast", "endpoints": [endpoint("fast")]},
            # The endpoint's bound wins over its model's, either way.
            {"name": "patient", "ttft_timeout_ms": BOUND_MS,
             "endpoints": [endpoint("slow", ttft_timeout_ms=10_000)]},
            {"name": "impatient", "ttft_timeout_ms": 10_000,
             "endpoints": [endpoint("slow", ttft_timeout_ms=BOUND_MS)]},
            # Two endpoints of one model: the slow one is tried first (it weighs more).
            {"name": "duo", "ttft_timeout_ms": BOUND_MS,
             "endpoints": [endpoint("slow", name="duo-slow", weight=10),
                           endpoint("fast", name="duo-fast")]},
        ],
        "decisions": [decision("override", ["patient"], ["fast"]),
                      decision("endpointbound", ["impatient"], ["fast"]),
                      decision("duo", ["duo"], []),
                      decision("doomed", ["slow"], ["impatient"])],
        "default": {"candidates": ["slow", "fast"]},
        "pool": {"retry": {"max_retries": 2, "backoff_base_s": 0.01},
                 "breaker": {"failure_threshold": 1000},
                 "health_check": {"interval_s": 0}},
    }


@pytest.fixture(scope="module")
def gateway(sim: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RouterProcess]:
    with start_router(ttft_config(sim.base_url), tmp_path_factory.mktemp("ttft")) as process:
        yield process


@pytest.fixture
def client(gateway: RouterProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def ttft_timeouts(gateway: RouterProcess) -> float:
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    found = re.search(r'routeyard_errors_total\{kind="upstream_ttft_timeout"\} (\S+)', text)
    return float(found[1]) if found else 0.0


def requests_to(sim: SimulatorProcess) -> dict[str, int]:
    return {model: n for model, n in sim.stats()["requests"].items() if n}


def test_a_whole_answer_fails_over_to_the_fast_model(client: openai.OpenAI,
                                                     gateway: RouterProcess,
                                                     sim: SimulatorProcess) -> None:
    before = ttft_timeouts(gateway)
    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=user("hi"))
    elapsed = time.monotonic() - started
    answer = raw.parse()
    assert raw.headers["x-routeyard-model"] == "fast"
    assert answer.choices[0].message.content and answer.choices[0].finish_reason
    assert elapsed < SLOW_TTFT_MS / 1000 / 2  # the slow backend was not waited for
    # Not retried on the slow endpoint (max_retries is 2): one attempt, then the next model.
    assert requests_to(sim) == {"slow": 1, "fast": 1}
    assert ttft_timeouts(gateway) == before + 1
    assert any(f"no first byte within {BOUND_MS} ms" in line for line in gateway.output)


def test_a_stream_fails_over_before_its_first_byte(client: openai.OpenAI,
                                                   gateway: RouterProcess,
                                                   sim: SimulatorProcess) -> None:
    before = ttft_timeouts(gateway)
    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=user("hi"), stream=True)
    assert raw.headers["x-routeyard-model"] == "fast"
    chunks = list(raw.parse())
    elapsed = time.monotonic() - started
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices == [] or chunks[-1].choices[0].finish_reason
    assert elapsed < SLOW_TTFT_MS / 1000 / 2
    assert requests_to(sim) == {"slow": 1, "fast": 1}
    assert ttft_timeouts(gateway) == before + 1


@pytest.mark.parametrize("stream", [False, True])
def test_the_endpoint_bound_wins_over_the_model_bound(client: openai.OpenAI,
                                                      sim: SimulatorProcess,
                                                      stream: bool) -> None:
    sim.set_profile("slow", ttft_ms=600)  # under the endpoint's 10 s, over the model's 200 ms
    try:
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=user("override"), stream=stream)
        assert raw.headers["x-routeyard-model"] == "patient"
        _ = list(raw.parse()) if stream else raw.parse()
        impatient = client.chat.completions.with_raw_response.create(
            model="auto", messages=user("endpointbound"), stream=stream)
        assert impatient.headers["x-routeyard-model"] == "fast"
        _ = list(impatient.parse()) if stream else impatient.parse()
    finally:
        sim.set_profile("slow", ttft_ms=SLOW_TTFT_MS)


def test_the_next_endpoint_of_the_same_model_is_tried(client: openai.OpenAI,
                                                      sim: SimulatorProcess) -> None:
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=user("duo"))
    assert raw.headers["x-routeyard-model"] == "duo"
    assert raw.parse().choices[0].message.content
    assert requests_to(sim) == {"slow": 1, "fast": 1}


@pytest.mark.parametrize("stream", [False, True])
def test_every_model_too_slow_is_a_504(client: openai.OpenAI, stream: bool) -> None:
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="auto", messages=user("doomed"), stream=stream)
    assert time.monotonic() - started < SLOW_TTFT_MS / 1000
    assert caught.value.status_code == 504
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "upstream_timeout"
    assert f"no first byte within {BOUND_MS} ms" in caught.value.body["message"]


async def test_the_attempt_log_and_the_breaker_see_the_timeout(sim: SimulatorProcess) -> None:
    config = build_config({**ttft_config(sim.base_url),
                           "pool": {"breaker": {"failure_threshold": 2, "cooldown_s": 60},
                                    "health_check": {"interval_s": 0}}})
    async with Router(config, store=MemoryStore()) as router:
        slow = router.pool.models["slow"].endpoints[0]
        for streamed in (False, True):
            body = validate_chat_request({"model": "auto", "messages": user("hi"),
                                          "stream": streamed})
            if streamed:
                relay = await router.open_stream(body)
                served = relay.served
                async for _ in relay.frames():
                    pass
            else:
                served = (await router.complete(body)).served
            assert served is not None
            assert [(a.model, a.outcome) for a in served.attempts] == \
                [("slow", "ttft_timeout"), ("fast", "ok")]
        # Two timeouts opened the breaker: the slow model is no longer even tried.
        assert slow.breaker.state == "open"
        served = (await router.complete(validate_chat_request(
            {"model": "auto", "messages": user("hi")}))).served
        assert served is not None
        assert [(a.model, a.outcome) for a in served.attempts] == \
            [("slow", "skipped:unavailable"), ("fast", "ok")]
        assert slow.outstanding == 0


def test_targets_carry_the_bound_in_seconds() -> None:
    pool = Pool(build_config(ttft_config("http://127.0.0.1:9/v1")), Metrics())
    bounds = {e.name: e.target.ttft_timeout_s for e in pool.endpoints()}
    assert bounds == {"slow#0": 0.2, "fast#0": None, "patient#0": 10.0, "impatient#0": 0.2,
                      "duo-slow": 0.2, "duo-fast": 0.2}
