"""Active health checks: with no traffic at all, a dead backend is taken out of rotation and a
revived one is put back. Real processes: the gateway, and a simulator that is SIGKILLed and
then started again on the same port."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from routerproc import RouterProcess, start_router
from simproc import start_simulator

DEADLINE_S = 20.0  # generous: the checks run every 0.2 s, this only bounds a hung test


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def ready(gateway: RouterProcess) -> bool:
    response = httpx.get(f"{gateway.url}/readyz", timeout=10)
    assert response.status_code == (200 if response.json()["available_endpoints"] else 503)
    return response.status_code == 200


def endpoint_up(gateway: RouterProcess) -> str:
    lines = [line for line in httpx.get(f"{gateway.url}/metrics", timeout=10).text.splitlines()
             if line.startswith('routeyard_endpoint_up{endpoint="only"')]
    assert len(lines) == 1, lines
    return lines[0].rsplit(" ", 1)[1]


def test_dead_backend_leaves_rotation_and_returns_without_traffic(tmp_path: Path) -> None:
    with start_simulator("--model", "m") as sim:
        port = urlsplit(sim.url).port
        assert port is not None
        cfg = {"models": [{"name": "m", "endpoints": [{"name": "only",
                                                       "base_url": sim.base_url}]}],
               "default": {"candidates": ["m"]},
               "pool": {"health_check": {"interval_s": 0.2, "timeout_s": 2},
                        "breaker": {"failure_threshold": 1, "cooldown_s": 600}}}
        with start_router(cfg, tmp_path) as gateway:
            assert ready(gateway) and endpoint_up(gateway) == "1.0"
            sim.kill()
            # No chat request is sent, so the breaker cannot be what takes it out.
            wait_until(lambda: not ready(gateway), "the dead endpoint is unavailable")
            assert endpoint_up(gateway) == "0.0"
            # "--port" given twice: the last one wins, so the new backend takes the old port.
            with start_simulator("--model", "m", "--port", str(port)) as revived:
                assert revived.url == sim.url
                wait_until(lambda: ready(gateway), "the revived endpoint is available")
                assert endpoint_up(gateway) == "1.0"
                assert revived.stats()["requests"] == {"m": 0}  # probes only, no completions
