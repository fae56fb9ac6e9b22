"""Failover: killed backends, 5xx and 429 storms, disconnects, hangs — through real processes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator

MODELS = ("good", "bad", "limited", "dropper", "hanger", "other")


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    args = [arg for name in MODELS for arg in ("--model", name)]
    with start_simulator(*args, "--ttft-ms", "0", "--tpot-ms", "1", "--output-tokens", "8"
                         ) as process:
        yield process


@pytest.fixture(autouse=True)
def fresh_stats(sim: SimulatorProcess) -> None:
    httpx.post(f"{sim.url}/_sim/reset").raise_for_status()
    for name in MODELS:
        httpx.put(f"{sim.url}/_sim/profiles/{name}",
                  json={"error_429_rate": 0, "error_5xx_rate": 0}).raise_for_status()


def endpoint(url: str, upstream: str, *, fault: str | None = None, weight: float = 1.0
             ) -> dict[str, Any]:
    spec: dict[str, Any] = {"base_url": url, "upstream_model": upstream, "weight": weight,
                            "name": f"{upstream}-endpoint-{url.rsplit(':', 1)[-1]}"}
    if fault:
        spec["headers"] = {"x-sim-fault": fault}
    return spec


def config(models: dict[str, list[dict[str, Any]]], *, fallback: list[str] | None = None,
           pool: dict[str, Any] | None = None) -> dict[str, Any]:
    names = list(models)
    base_pool = {"retry": {"max_retries": 2, "backoff_base_s": 0.01},
                 "breaker": {"failure_threshold": 3, "cooldown_s": 60},
                 "timeouts": {"per_try_s": 5, "total_s": 20},
                 "health_check": {"interval_s": 0}}
    return {
        "models": [{"name": name, "endpoints": eps} for name, eps in models.items()],
        "default": {"candidates": [names[0]], "fallback": fallback or []},
        "pool": {**base_pool, **(pool or {})},
    }


def stats(sim: SimulatorProcess) -> dict[str, int]:
    return httpx.get(f"{sim.url}/_sim/stats").json()["requests"]


def client_for(gateway: RouterProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key="k", max_retries=0, timeout=30)


MESSAGES = [{"role": "user", "content": "hello there"}]


def test_killed_backend_fails_over_to_next_endpoint_and_model(tmp_path: Path) -> None:
    with start_simulator("--model", "good", "--model", "other", "--ttft-ms", "0") as a, \
         start_simulator("--model", "good", "--model", "other", "--ttft-ms", "0") as b:
        cfg = config({"m": [endpoint(a.base_url, "good"), endpoint(b.base_url, "good")],
                      "only-a": [endpoint(a.base_url, "other")],
                      "on-b": [endpoint(b.base_url, "other")]})
        cfg["decisions"] = [{"name": "a-first", "when": {"keywords_any": ["via a"]},
                             "candidates": ["only-a"], "fallback": ["on-b"]}]
        with start_router(cfg, tmp_path) as gateway:
            client = client_for(gateway)
            a.kill()
            for _ in range(6):
                assert client.chat.completions.create(model="m", messages=MESSAGES).choices
                chunks = list(client.chat.completions.create(
                    model="m", messages=MESSAGES, stream=True))
                assert chunks[-1].choices[0].finish_reason in ("stop", "length")
            raw = client.chat.completions.with_raw_response.create(
                model="auto", messages=[{"role": "user", "content": "go via a"}])
            assert raw.headers["x-routeyard-model"] == "on-b"
            assert raw.parse().choices[0].message.content


def test_5xx_storm_retries_then_fails_over_and_breaker_opens(
        sim: SimulatorProcess, tmp_path: Path) -> None:
    # The failing endpoint is heavily weighted, so it is always tried first while available.
    cfg = config({"m": [endpoint(sim.base_url, "bad", fault="503", weight=100),
                        endpoint(sim.base_url, "good")]})
    with start_router(cfg, tmp_path) as gateway:
        client = client_for(gateway)
        raw = client.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
        assert raw.parse().choices[0].message.content
        counts = stats(sim)
        assert counts.get("bad") == 3  # first try plus max_retries=2
        assert counts.get("good") == 1
        for _ in range(5):  # the breaker is open now: the bad endpoint is skipped
            client.chat.completions.create(model="m", messages=MESSAGES)
        counts = stats(sim)
        assert counts.get("bad") == 3 and counts.get("good") == 6
        metrics = httpx.get(f"{gateway.url}/metrics").text
        assert 'routeyard_errors_total{kind="upstream_status:503"} 3.0' in metrics
        assert 'routeyard_endpoint_up{endpoint="bad-endpoint-' in metrics
        assert '",model="m"} 0.0' in metrics


def test_every_endpoint_failing_gives_502_in_openai_schema(
        sim: SimulatorProcess, tmp_path: Path) -> None:
    cfg = config({"m": [endpoint(sim.base_url, "bad", fault="500")]},
                 pool={"retry": {"max_retries": 1, "backoff_base_s": 0.01}})
    with start_router(cfg, tmp_path) as gateway:
        with pytest.raises(openai.APIStatusError) as caught:
            client_for(gateway).chat.completions.create(model="m", messages=MESSAGES)
        assert caught.value.status_code == 502
        assert isinstance(caught.value.body, dict)
        assert caught.value.body["code"] == "upstream_failed"
        assert caught.value.response.headers["x-routeyard-request-id"].startswith("req_")


def test_429_storm_honours_retry_after_then_falls_back(
        sim: SimulatorProcess, tmp_path: Path) -> None:
    httpx.put(f"{sim.url}/_sim/profiles/limited",
              json={"error_429_rate": 1.0, "retry_after_s": 0.4}).raise_for_status()
    cfg = config({"m": [endpoint(sim.base_url, "limited")],
                  "backup": [endpoint(sim.base_url, "good")]},
                 fallback=["backup"], pool={"retry": {"max_retries": 1, "backoff_base_s": 0.01}})
    with start_router(cfg, tmp_path) as gateway:
        started = time.monotonic()
        raw = client_for(gateway).chat.completions.with_raw_response.create(
            model="auto", messages=MESSAGES)
        elapsed = time.monotonic() - started
        assert raw.headers["x-routeyard-model"] == "backup"
        assert elapsed >= 0.4  # waited for retry-after before the one retry
        assert stats(sim).get("limited") == 2


def endpoint_up(gateway: RouterProcess, name_start: str) -> str:
    """The `routeyard_endpoint_up` value of the one endpoint whose name starts so."""
    lines = [line for line in httpx.get(f"{gateway.url}/metrics").text.splitlines()
             if line.startswith(f'routeyard_endpoint_up{{endpoint="{name_start}')]
    assert len(lines) == 1, lines
    return lines[0].rsplit(" ", 1)[1]


@pytest.mark.parametrize(("status", "stream"), [(400, False), (422, True)])
def test_backend_4xx_reaches_the_client_without_failover(
        sim: SimulatorProcess, tmp_path: Path, status: int, stream: bool) -> None:
    # The refusing endpoint is tried first; a healthy endpoint and a fallback model stand by,
    # and one failure would open the breaker.
    cfg = config({"m": [endpoint(sim.base_url, "bad", fault=str(status), weight=100),
                        endpoint(sim.base_url, "good")],
                  "backup": [endpoint(sim.base_url, "other")]},
                 fallback=["backup"], pool={"breaker": {"failure_threshold": 1, "cooldown_s": 60}})
    with start_router(cfg, tmp_path) as gateway:
        client = client_for(gateway)
        for sent in (1, 2):  # the second request finds the endpoint still in rotation
            with pytest.raises(openai.APIStatusError) as caught:
                client.chat.completions.create(model="auto", messages=MESSAGES, stream=stream)
            assert caught.value.status_code == status
            error = caught.value.response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}
            assert error["type"] == "invalid_request_error"
            assert error["code"] == "upstream_rejected"
            assert f"simulated {status}: the backend rejected the request" in error["message"]
            counts = stats(sim)
            assert counts.get("bad") == sent  # no retry of the same endpoint
            assert counts.get("good", 0) == 0 and counts.get("other", 0) == 0  # no failover
        assert endpoint_up(gateway, "bad-endpoint-") == "1.0"  # the breaker stayed closed
        assert httpx.get(f"{gateway.url}/readyz").json()["available_endpoints"] == 3


def test_429_everywhere_is_429_to_the_client(sim: SimulatorProcess, tmp_path: Path) -> None:
    cfg = config({"m": [endpoint(sim.base_url, "limited", fault="429")]},
                 pool={"retry": {"max_retries": 0}})
    with start_router(cfg, tmp_path) as gateway, pytest.raises(openai.RateLimitError):
        client_for(gateway).chat.completions.create(model="m", messages=MESSAGES)


@pytest.mark.parametrize("stream", [False, True])
def test_disconnect_before_first_byte_fails_over(
        sim: SimulatorProcess, tmp_path: Path, stream: bool) -> None:
    cfg = config({"m": [endpoint(sim.base_url, "dropper", fault="disconnect_first", weight=100),
                        endpoint(sim.base_url, "good")]},
                 pool={"retry": {"max_retries": 0}})
    with start_router(cfg, tmp_path) as gateway:
        client = client_for(gateway)
        if stream:
            chunks = list(client.chat.completions.create(model="m", messages=MESSAGES,
                                                         stream=True))
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            assert client.chat.completions.create(model="m", messages=MESSAGES).choices
        counts = stats(sim)
        assert counts.get("dropper") == 1 and counts.get("good") == 1


def test_disconnect_after_first_byte_raises_in_the_sdk(
        sim: SimulatorProcess, tmp_path: Path) -> None:
    cfg = config({"m": [endpoint(sim.base_url, "dropper", fault="disconnect")],
                  "backup": [endpoint(sim.base_url, "good")]}, fallback=["backup"])
    with start_router(cfg, tmp_path) as gateway:
        client = client_for(gateway)
        received: list[str] = []
        with pytest.raises(openai.APIError) as caught:
            for chunk in client.chat.completions.create(model="auto", messages=MESSAGES,
                                                        stream=True):
                if chunk.choices and chunk.choices[0].delta.content:
                    received.append(chunk.choices[0].delta.content)
        assert received, "some content arrived before the break"
        assert "stream broke" in str(caught.value)
        # No silent switch to the fallback once bytes reached the client.
        assert stats(sim).get("good", 0) == 0
        metrics = httpx.get(f"{gateway.url}/metrics").text
        assert 'status="stream_broken"' in metrics


def test_hang_past_the_per_try_timeout_fails_over(sim: SimulatorProcess, tmp_path: Path) -> None:
    cfg = config({"m": [endpoint(sim.base_url, "hanger", fault="hang")],
                  "backup": [endpoint(sim.base_url, "good")]}, fallback=["backup"],
                 pool={"retry": {"max_retries": 0},
                       "timeouts": {"per_try_s": 0.5, "total_s": 10}})
    with start_router(cfg, tmp_path) as gateway:
        client = client_for(gateway)
        for stream in (False, True):
            started = time.monotonic()
            raw = client.chat.completions.with_raw_response.create(
                model="auto", messages=MESSAGES, stream=stream)
            assert raw.headers["x-routeyard-model"] == "backup"
            assert 0.5 <= time.monotonic() - started < 3


def test_hang_with_no_fallback_is_504(sim: SimulatorProcess, tmp_path: Path) -> None:
    cfg = config({"m": [endpoint(sim.base_url, "hanger", fault="hang")]},
                 pool={"retry": {"max_retries": 1, "backoff_base_s": 0.01},
                       "timeouts": {"per_try_s": 0.3, "total_s": 5}})
    with start_router(cfg, tmp_path) as gateway:
        with pytest.raises(openai.APIStatusError) as caught:
            client_for(gateway).chat.completions.create(model="m", messages=MESSAGES)
        assert caught.value.status_code == 504


def test_other_candidates_are_tried_before_failing(sim: SimulatorProcess, tmp_path: Path) -> None:
    cfg = config({"first": [endpoint(sim.base_url, "bad", fault="503")],
                  "second": [endpoint(sim.base_url, "good")]},
                 pool={"retry": {"max_retries": 0}})
    cfg["default"]["candidates"] = ["first", "second"]
    with start_router(cfg, tmp_path) as gateway:
        raw = client_for(gateway).chat.completions.with_raw_response.create(
            model="auto", messages=MESSAGES)
        assert raw.headers["x-routeyard-model"] == "second"
        assert stats(sim).get("bad") == 1
