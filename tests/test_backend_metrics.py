"""Backends' own load metrics (routeyard/pool/backend_metrics.py): parsing real-looking vLLM,
SGLang and TGI expositions, staleness, the in-flight formula and saturation, and scraping real
servers (the simulator process, a server without metrics, a dead port, garbage) in-process."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from aiohttp import web
from simproc import SimulatorProcess, start_simulator

from routeyard.catalog import build_config
from routeyard.config.loader import ConfigError
from routeyard.metrics import Metrics
from routeyard.pool import Pool
from routeyard.pool.backend_metrics import (
    SATURATED_PENALTY,
    BackendLoad,
    default_metrics_url,
    parse_exposition,
    read_model,
)
from routeyard.selection import make_algorithm

VLLM_V1 = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="llama"} 5.0
vllm:num_requests_running{engine="1",model_name="llama"} 2.0
vllm:num_requests_running{engine="0",model_name="other"} 9.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="llama"} 3.0
vllm:num_requests_waiting{engine="1",model_name="llama"} 0.0
# HELP vllm:num_requests_waiting_by_reason Waiting requests by reason.
# TYPE vllm:num_requests_waiting_by_reason gauge
vllm:num_requests_waiting_by_reason{engine="0",model_name="llama",reason="capacity"} 40.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="llama"} 0.61
vllm:kv_cache_usage_perc{engine="1",model_name="llama"} 0.25
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="llama"} 0.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="llama"} 12.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="llama"} 12.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="llama"} 3.5
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="llama"} 8128.0
"""

VLLM_V0 = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="/models/llama-2-7b"} 4.0
# TYPE vllm:num_requests_swapped gauge
vllm:num_requests_swapped{model_name="/models/llama-2-7b"} 0.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="/models/llama-2-7b"} 1.0
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="/models/llama-2-7b"} 0.99
"""

SGLANG = """\
# HELP sglang:token_usage The token usage
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.28
# HELP sglang:num_running_reqs The number of running requests
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="meta-llama/Llama-3.1-8B-Instruct"} 8.0
# HELP sglang:num_queue_reqs The number of requests in the waiting queue
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="meta-llama/Llama-3.1-8B-Instruct"} 4.0
# HELP sglang:cache_hit_rate The cache hit rate
# TYPE sglang:cache_hit_rate gauge
sglang:cache_hit_rate{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0075
"""

TGI = """\
# TYPE tgi_queue_size gauge
tgi_queue_size 6
# TYPE tgi_batch_current_size gauge
tgi_batch_current_size 16
# TYPE tgi_batch_current_max_tokens gauge
tgi_batch_current_max_tokens 20480
# TYPE tgi_request_count counter
tgi_request_count 1200
"""


# -- parsing -------------------------------------------------------------------------------------

def test_vllm_v1_sums_engines_of_its_model_and_ignores_by_reason() -> None:
    reading = read_model(parse_exposition(VLLM_V1), "llama")
    assert reading is not None and reading.kind == "vllm"
    # Two data-parallel engines: counts add up; KV usage is the fuller engine's.
    assert (reading.waiting, reading.running, reading.kv_usage) == (3.0, 7.0, 0.61)
    other = read_model(parse_exposition(VLLM_V1), "other", "vllm")
    assert other is not None and (other.waiting, other.running, other.kv_usage) == (0, 9.0, None)
    assert read_model(parse_exposition(VLLM_V1), "absent") is None


def test_vllm_v0_cache_name_sglang_and_tgi() -> None:
    v0 = read_model(parse_exposition(VLLM_V0), "/models/llama-2-7b")
    assert v0 is not None and (v0.waiting, v0.running, v0.kv_usage) == (1.0, 4.0, 0.99)
    sglang = read_model(parse_exposition(SGLANG), "meta-llama/Llama-3.1-8B-Instruct")
    assert sglang is not None and sglang.kind == "sglang"
    assert (sglang.waiting, sglang.running, sglang.kv_usage) == (4.0, 8.0, 0.28)
    # TGI has no model label (one model per server) and no KV-usage fraction.
    tgi = read_model(parse_exposition(TGI), "whatever-the-endpoint-calls-it")
    assert tgi is not None and (tgi.kind, tgi.waiting, tgi.running, tgi.kv_usage) == (
        "tgi", 6.0, 16.0, None)
    # A kind that is named explicitly reads only its own names.
    assert read_model(parse_exposition(SGLANG), "meta-llama/Llama-3.1-8B-Instruct",
                      "vllm") is None


def test_expositions_without_load_gauges_read_as_nothing() -> None:
    assert read_model(parse_exposition(""), "m") is None
    assert read_model(parse_exposition("# TYPE process_cpu_seconds_total counter\n"
                                       "process_cpu_seconds_total 3.5\n"), "m") is None


def test_default_metrics_url_is_the_servers_root() -> None:
    assert default_metrics_url("http://10.0.0.1:8000/v1") == "http://10.0.0.1:8000/metrics"
    assert default_metrics_url("https://h.example/prefix/v1") == "https://h.example/metrics"


# -- the formula, staleness, saturation ----------------------------------------------------------

def reading(waiting: float, running: float, kv: float | None = None, *, at: float = 100.0,
            outstanding: int = 0, saturated: bool = False) -> BackendLoad:
    return BackendLoad(waiting, running, kv, at, at + 15.0, outstanding, saturated)


def test_in_flight_is_the_backends_queue_plus_what_we_sent_since() -> None:
    load = reading(3, 4, 0.5, outstanding=2)
    assert load.in_flight(2, now=101) == 7.5  # 3 + 4, KV usage as the tie-breaker
    assert load.in_flight(5, now=101) == 10.5  # 3 more of ours since the scrape
    assert load.in_flight(0, now=101) == 7.5  # ours that finished were counted by the backend
    assert load.in_flight(2, now=116) == 2  # stale after 3 intervals: our own count
    assert reading(9, 1, 1.0, saturated=True).in_flight(0, 101) == 11 + SATURATED_PENALTY


def pool_of(endpoints: list[dict[str, Any]], **backend_metrics: Any) -> Pool:
    config = build_config({"models": [{"name": "m", "endpoints": endpoints}],
                           "default": {"candidates": ["m"]},
                           "pool": {"backend_metrics": backend_metrics,
                                    "health_check": {"interval_s": 0}}})
    return Pool(config, Metrics())


def test_endpoint_order_uses_fresh_readings_and_puts_saturated_ones_last() -> None:
    pool = pool_of([{"name": n, "base_url": "http://127.0.0.1:9/v1"} for n in "abc"])
    a, b, c = pool.models["m"].endpoints
    now = time.monotonic()
    a.backend_load = reading(10, 20, at=now)
    b.backend_load = reading(0, 1, at=now)
    c.outstanding = 5  # not scraped: its own count
    assert [e.name for e in pool.models["m"].endpoints_in_order()] == ["b", "c", "a"]
    b.backend_load = reading(0, 1, 1.0, at=now, saturated=True)
    assert [e.name for e in pool.models["m"].endpoints_in_order()] == ["c", "a", "b"]
    a.backend_load = reading(10, 20, at=now - 60)  # stale: a counts as idle again
    assert [e.name for e in pool.models["m"].endpoints_in_order()] == ["a", "c", "b"]


def test_load_aware_selection_reads_the_backends_queue() -> None:
    dead = [{"base_url": "http://127.0.0.1:9/v1"}]
    config = build_config({"models": [{"name": n, "endpoints": dead} for n in ("a", "b")],
                           "default": {"candidates": ["a", "b"], "algorithm": "load_aware"}})
    pool = Pool(config, Metrics())
    a, b = pool.models["a"], pool.models["b"]
    algo = make_algorithm("load_aware")
    now = time.monotonic()
    b.endpoints[0].outstanding = 2  # Routeyard's own count: 2
    a.endpoints[0].backend_load = reading(1, 4, 0.3, at=now)  # the backend's: 5.3
    chosen = algo.select([a, b], 10)
    assert chosen is not None and chosen.model == "b"
    a.endpoints[0].backend_load = reading(1, 0, 0.3, at=now)  # 1.3
    assert algo.select([a, b], 10).model == "a"  # type: ignore[union-attr]
    a.endpoints[0].backend_load = reading(1, 0, 1.0, at=now, saturated=True)
    assert algo.select([a, b], 10).model == "b"  # type: ignore[union-attr]
    a.endpoints[0].backend_load = reading(9, 9, at=now - 60)  # stale: its own count, 0
    assert algo.select([a, b], 10).model == "a"  # type: ignore[union-attr]


def test_endpoint_metrics_config_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"metrics\.url: .*must start with http"):
        pool_of([{"base_url": "http://127.0.0.1:9/v1", "metrics": {"url": "ftp://x/metrics"}}])
    with pytest.raises(ConfigError, match=r"metrics\.kind"):
        pool_of([{"base_url": "http://127.0.0.1:9/v1", "metrics": {"kind": "ollama"}}])


# -- scraping real servers -----------------------------------------------------------------------

def hold_request(base_url: str, model: str, *, fault: str | None = None,
                 content: str = "hi") -> socket.socket:
    """Send a chat request and never read the answer: it stays in flight on the backend until
    the socket is closed."""
    url = urlsplit(base_url)
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": content}]})
    extra = f"x-sim-fault: {fault}\r\n" if fault else ""
    sock = socket.create_connection((url.hostname, url.port))
    sock.sendall((f"POST {url.path}/chat/completions HTTP/1.1\r\nHost: {url.netloc}\r\n"
                  f"content-type: application/json\r\ncontent-length: {len(body)}\r\n{extra}"
                  f"\r\n{body}").encode())
    return sock


@contextmanager
def held(sockets: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def sim_load(sim: SimulatorProcess, model: str) -> dict[str, float]:
    samples = parse_exposition(httpx.get(sim.url + "/metrics", timeout=5).text)
    found = read_model(samples, model, "vllm")
    assert found is not None
    return {"waiting": found.waiting, "running": found.running, "kv": found.kv_usage or 0.0}


def wait_for(condition: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


async def test_scraping_the_simulator_reads_its_queue_and_saturation(tmp_path: Any) -> None:
    profile = {"models": {"q": {"prefill_ms_per_1k_tokens": 4_000_000, "kv_cache_tokens": 40},
                          "idle": {}}}
    path = tmp_path / "sim.json"
    path.write_text(json.dumps(profile))
    with start_simulator("--config", str(path)) as sim:
        # Three prompts of a few tokens, ~20 s of prefill each: one prefills, two queue.
        with held([hold_request(sim.base_url, "q", content=f"prompt {i}") for i in range(3)]):
            wait_for(lambda: sim_load(sim, "q")["waiting"] == 2, "two requests queue")
            assert sim_load(sim, "q")["running"] == 1
            assert sim_load(sim, "q")["kv"] == 1.0  # their tokens exceed 40
            pool = pool_of([{"name": "q", "base_url": sim.base_url, "upstream_model": "q"},
                            {"name": "idle", "base_url": sim.base_url, "upstream_model": "idle"}],
                           enabled=True, interval_s=60)
            await pool.start()
            try:
                await pool.scrape_backend_metrics()
                q, idle = pool.models["m"].endpoints
                assert q.backend_load is not None and idle.backend_load is not None
                assert (q.backend_load.waiting, q.backend_load.running) == (2, 1)
                assert q.backend_load.saturated  # KV full and requests waiting
                assert (idle.backend_load.running, idle.backend_load.saturated) == (0, False)
                assert [e.name for e in pool.models["m"].endpoints_in_order()] == ["idle", "q"]
            finally:
                await pool.close()
        wait_for(lambda: sim_load(sim, "q")["running"] == 0, "the held requests end")
        assert sim_load(sim, "q") == {"waiting": 0, "running": 0, "kv": 0.0}


@asynccontextmanager
async def serving(handler: Any) -> AsyncIterator[str]:
    """A small real HTTP server answering every path with `handler`; yields its root URL."""
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_failed_scrapes_never_fail_and_readings_go_stale(
        caplog: pytest.LogCaptureFixture) -> None:
    state = {"body": VLLM_V0, "status": 200}

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=state["body"], status=state["status"])

    async def no_metrics(request: web.Request) -> web.Response:  # Ollama: no /metrics
        return web.Response(text="404 page not found", status=404)

    caplog.set_level(logging.WARNING, "routeyard.pool")
    async with serving(metrics) as good, serving(no_metrics) as ollama:
        pool = pool_of([
            {"name": "vllm", "base_url": f"{good}/v1", "upstream_model": "/models/llama-2-7b"},
            {"name": "ollama", "base_url": f"{ollama}/v1"},
            {"name": "dead", "base_url": "http://127.0.0.1:9/v1"},
            {"name": "off", "base_url": f"{good}/v1", "metrics": {"enabled": False}},
        ], enabled=True, interval_s=0.05, timeout_s=1)
        vllm, ollama_ep, dead, off = pool.models["m"].endpoints
        await pool.start()
        try:
            await pool.scrape_backend_metrics()
            assert vllm.backend_load is not None and vllm.backend_load.saturated
            assert ollama_ep.backend_load is None and dead.backend_load is None
            assert off.backend_load is None
            assert ollama_ep.in_flight() == 0 and dead.load() == 1.0  # their own counts
            state["body"] = 'vllm:num_requests_running{model_name="/models/llama-2-7b" 4\n'
            await pool.scrape_backend_metrics()
            await asyncio.sleep(0.2)  # more than 3 intervals of failed scrapes
            assert vllm.backend_load is not None  # the last reading is kept but is stale:
            assert vllm.in_flight() == 0 and not vllm.backend_load.is_fresh(time.monotonic())
            state["body"], state["status"] = VLLM_V0, 503
            await pool.scrape_backend_metrics()
            state["status"] = 200
            await pool.scrape_backend_metrics()
            assert vllm.in_flight() == pytest.approx(5.99 + SATURATED_PENALTY)  # fresh again
        finally:
            await pool.close()
        assert pool._scraper is None
    messages = [r.getMessage() for r in caplog.records]
    # Each problem is logged once, however many scrapes fail.
    assert sum("answered HTTP 404" in m for m in messages) == 1
    assert sum("ollama" in m for m in messages) == 1
    assert sum("dead: " in m and "could not be read" in m for m in messages) == 1
    assert sum("unreadable metrics" in m for m in messages) == 1
    assert any("vllm are readable again" in m for m in messages)
