"""Graceful shutdown with LLM streams (issue 10, bug 3): unready at once, streams finish within
the drain window, and a stream still open at its end gets an SSE error event, never a silent cut.

Before the fix, `serve` hard-coded uvicorn's 10 s window and streams still running after it
were cancelled mid-body: the openai SDK reported a connection error.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator

from routeyard.config.schema import ServerConfig

MESSAGES: Any = [{"role": "user", "content": "tell me a long story"}]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    # 20 ms a token: a 300-token answer streams for ~6 s.
    with start_simulator("--model", "slow", "--ttft-ms", "0", "--tpot-ms", "20",
                         "--output-tokens", "300") as process:
        yield process


def config(sim: SimulatorProcess, **server: Any) -> dict[str, Any]:
    return {"server": server,
            "models": [{"name": "slow", "endpoints": [{"base_url": sim.base_url}]}],
            "pool": {"health_check": {"interval_s": 0}}}


def client(gateway: RouterProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key="k", max_retries=0, timeout=60)


def exits_after_the_signal(gateway: RouterProcess, timeout: float = 30) -> bool:
    """uvicorn re-raises the signal it shut down for, once it is done: -SIGTERM is clean."""
    return gateway.process.wait(timeout=timeout) in (0, -signal.SIGTERM)


def test_default_window_suits_llm_streams() -> None:
    assert ServerConfig().shutdown_grace_s >= 120


def test_a_stream_open_past_the_window_ends_with_an_error_event(sim: SimulatorProcess,
                                                                 tmp_path: Path) -> None:
    with start_router(config(sim, shutdown_grace_s=1.0), tmp_path) as gateway:
        stream = client(gateway).chat.completions.create(
            model="slow", messages=MESSAGES, stream=True, max_tokens=300)
        received = []
        with pytest.raises(openai.APIError) as caught:
            for chunk in stream:
                received.append(chunk)
                if len(received) == 3:
                    gateway.process.send_signal(signal.SIGTERM)
        assert not isinstance(caught.value, openai.APIConnectionError)
        assert "shutting down" in caught.value.message
        assert 3 <= len(received) < 250  # cut part-way, after the window
        assert exits_after_the_signal(gateway)


def test_a_stream_that_ends_within_the_window_completes(sim: SimulatorProcess,
                                                         tmp_path: Path) -> None:
    with start_router(config(sim, shutdown_grace_s=60.0), tmp_path) as gateway:
        stream = client(gateway).chat.completions.create(
            model="slow", messages=MESSAGES, stream=True, max_tokens=60)
        finish = None
        for index, chunk in enumerate(stream):
            if index == 2:
                gateway.process.send_signal(signal.SIGTERM)
            if chunk.choices and chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
        assert finish == "length"
        assert exits_after_the_signal(gateway)


def test_readyz_turns_unready_as_soon_as_draining_starts(sim: SimulatorProcess,
                                                         tmp_path: Path) -> None:
    with start_router(config(sim, drain_delay_s=3.0, shutdown_grace_s=5.0), tmp_path
                      ) as gateway, httpx.Client(timeout=10) as http:
        assert http.get(f"{gateway.url}/readyz").status_code == 200
        gateway.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 2.5
        status = 200
        while status == 200 and time.monotonic() < deadline:
            response = http.get(f"{gateway.url}/readyz")
            status = response.status_code
        assert status == 503 and response.json()["status"] == "draining"
        # Still serving during the delay, so requests a load balancer sends meanwhile succeed.
        answer = http.post(f"{gateway.base_url}/chat/completions",
                           json={"model": "slow", "messages": MESSAGES, "max_tokens": 2})
        assert answer.status_code == 200
        assert exits_after_the_signal(gateway)


def test_streams_started_on_other_threads_are_all_cut(sim: SimulatorProcess,
                                                      tmp_path: Path) -> None:
    errors: list[BaseException] = []
    started = threading.Barrier(4)

    def consume(gateway: RouterProcess) -> None:
        stream = client(gateway).chat.completions.create(
            model="slow", messages=MESSAGES, stream=True, max_tokens=300)
        try:
            for index, _ in enumerate(stream):
                if index == 1:
                    started.wait(timeout=10)
        except openai.APIError as error:
            errors.append(error)

    with start_router(config(sim, shutdown_grace_s=0.5), tmp_path) as gateway:
        threads = [threading.Thread(target=consume, args=(gateway,)) for _ in range(3)]
        for thread in threads:
            thread.start()
        started.wait(timeout=10)
        gateway.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=30)
        assert len(errors) == 3
        assert all(not isinstance(e, openai.APIConnectionError) for e in errors)
        assert exits_after_the_signal(gateway)
