"""Config reload under load: file changes and SIGHUP swap the config; no request fails; a bad
config is refused and the old one stays."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", "a", "--model", "b", "--ttft-ms", "2", "--tpot-ms", "1",
                         "--output-tokens", "10") as process:
        yield process


def config(sim: SimulatorProcess, target: str, *, watch: float = 0.2) -> dict[str, Any]:
    return {
        "server": {"watch_config_s": watch},
        "models": [{"name": name, "endpoints": [{"base_url": sim.base_url}]}
                   for name in ("a", "b")],
        "default": {"candidates": [target]},
        "pool": {"health_check": {"interval_s": 0}},
    }


class Load:
    """Requests in a loop from two threads (plain and streaming) while configs change."""

    def __init__(self, gateway: RouterProcess) -> None:
        self.url = f"{gateway.base_url}/chat/completions"
        self.models: list[str] = []
        self.failures: list[str] = []
        self.running = True
        self.threads = [threading.Thread(target=self._loop, args=(s,)) for s in (False, True)]

    def _loop(self, stream: bool) -> None:
        body = {"model": "auto", "stream": stream,
                "messages": [{"role": "user", "content": "hello"}]}
        with httpx.Client(timeout=10) as client:
            while self.running:
                try:
                    response = client.post(self.url, json=body)
                    text = response.text
                except httpx.HTTPError as error:
                    self.failures.append(repr(error))
                    continue
                if response.status_code != 200 or (stream and "[DONE]" not in text):
                    self.failures.append(f"{response.status_code}: {text[:200]}")
                else:
                    self.models.append(response.headers["x-routeyard-model"])

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.running = False
        for thread in self.threads:
            thread.join(timeout=10)

    def wait_for(self, model: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        seen = len(self.models)
        while time.monotonic() < deadline:
            if model in self.models[seen:]:
                return
            time.sleep(0.05)
        raise AssertionError(f"never served by {model}; last: {self.models[-5:]}")


def write(path: Path, data: dict[str, Any] | str) -> None:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))


def test_file_change_reloads_under_load_without_failures(sim: SimulatorProcess,
                                                          tmp_path: Path) -> None:
    with start_router(config(sim, "a"), tmp_path) as gateway:
        path = tmp_path / "routeyard.yaml"
        with Load(gateway) as load:
            load.wait_for("a")
            state = yaml.safe_load(path.read_text())["state"]
            write(path, {**config(sim, "b"), "state": state})
            load.wait_for("b")
            # A broken config is refused; traffic keeps flowing on the old one.
            write(path, "models: [ {name: broken\n")
            time.sleep(1.0)
            bad = {**config(sim, "a"), "state": state}
            bad["default"]["candidates"] = ["nope"]
            write(path, bad)
            time.sleep(1.0)
            served_after = load.models[-20:]
            write(path, {**config(sim, "a"), "state": state})
            load.wait_for("a")
        assert load.failures == []
        assert served_after and set(served_after) == {"b"}
        output = "".join(gateway.output)
        assert "config reload refused" in output
        assert "default.candidates[0]: unknown model 'nope'" in output


def test_sighup_reloads(sim: SimulatorProcess, tmp_path: Path) -> None:
    with start_router(config(sim, "a", watch=0), tmp_path) as gateway:
        path = tmp_path / "routeyard.yaml"
        state = yaml.safe_load(path.read_text())["state"]
        write(path, {**config(sim, "b", watch=0), "state": state})
        time.sleep(0.5)  # no file watch: nothing changes yet
        body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
        url = f"{gateway.base_url}/chat/completions"
        assert httpx.post(url, json=body).headers["x-routeyard-model"] == "a"
        gateway.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        model = "a"
        while model != "b" and time.monotonic() < deadline:
            time.sleep(0.1)
            model = httpx.post(url, json=body).headers["x-routeyard-model"]
        assert model == "b"
