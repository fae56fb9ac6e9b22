"""Start the backend simulator as a real subprocess: `with start_simulator(...) as sim:`."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

_READY = "routeyard-simulator listening on "


@dataclass
class SimulatorProcess:
    """A running simulator: `.url` is the server root, `.base_url` the OpenAI base (`/v1`)."""

    process: subprocess.Popen[str]
    url: str

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stats(self) -> dict[str, Any]:
        """`GET /_sim/stats`: {"requests": {model: n}, "outcomes": {model: {outcome: n}}}."""
        return _check(httpx.get(self.url + "/_sim/stats")).json()

    def reset(self) -> None:
        _check(httpx.post(self.url + "/_sim/reset"))

    def set_profile(self, model: str, **updates: Any) -> dict[str, Any]:
        """Merge `updates` into a model's profile, e.g. `set_profile("m", error_5xx_rate=1.0)`."""
        return _check(httpx.put(f"{self.url}/_sim/profiles/{model}", json=updates)).json()

    def kill(self) -> None:
        """SIGKILL the backend, as a crash would: no graceful shutdown, sockets just close."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=5)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()


def _check(response: httpx.Response) -> httpx.Response:
    response.raise_for_status()
    return response


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Parse a whole Anthropic-style SSE body into (event name, data) pairs."""
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def _drain(stream: object) -> None:
    # Keeps the stdout pipe empty after the ready line so the child can never block on it.
    with contextlib.suppress(ValueError, OSError):
        for _ in stream:  # type: ignore[attr-defined]
            pass


@contextlib.contextmanager
def start_simulator(*cli_args: str, timeout: float = 15.0) -> Iterator[SimulatorProcess]:
    """Run `python -m routeyard.simulator --port 0 *cli_args` until the block exits."""
    command = [sys.executable, "-m", "routeyard.simulator", "--port", "0", *cli_args]
    with tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        sim = SimulatorProcess(process, "")
        try:
            sim.url = _wait_ready(process, stderr, timeout)
            threading.Thread(target=_drain, args=(process.stdout,), daemon=True).start()
            yield sim
        finally:
            sim.stop()
            if process.stdout is not None:
                process.stdout.close()


def _wait_ready(process: subprocess.Popen[str], stderr: object, timeout: float) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while (remaining := deadline - time.monotonic()) > 0:
            if not selector.select(remaining):
                continue
            line = process.stdout.readline()
            if line.startswith(_READY):
                return line[len(_READY) :].strip()
            if not line and process.poll() is not None:
                break
    process.kill()
    process.wait()
    stderr.seek(0)  # type: ignore[attr-defined]
    output = stderr.read()  # type: ignore[attr-defined]
    raise RuntimeError(f"simulator did not start (exit {process.returncode}):\n{output[-4000:]}")
