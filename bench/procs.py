"""Processes the gateway benchmark starts and watches: simulator, routeyard, LiteLLM proxy.

Every start function is a context manager that stops its process on exit, including on
Ctrl-C and errors, so a benchmark run never leaves servers behind.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from paths import shared_dir

_SIM_READY = "routeyard-simulator listening on "
_ROUTER_READY = "routeyard listening on "


@dataclass
class Target:
    """One thing a load generator can hit: an OpenAI base URL plus what to send it."""

    name: str
    base_url: str  # .../v1
    model: str  # the model name clients send
    pid: int
    headers: dict[str, str] = field(default_factory=dict)
    version: str = ""

    @property
    def chat_url(self) -> str:
        return self.base_url + "/chat/completions"


# -- /proc readings ----------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """VmRSS of one process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            kids += [int(p) for p in (task / "children").read_text().split()]
    return kids


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its live descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{current}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
            todo += _children(current)
    return total


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"nproc": os.cpu_count(), "cpu_model": cpu, "python": sys.version.split()[0],
            "kernel": os.uname().release}


# -- starting processes --------------------------------------------------------------------------


def _stop(process: subprocess.Popen[str], timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _pump(process: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    # Reads stdout to the end in a thread: the ready line is found, and the pipe never fills.
    with contextlib.suppress(ValueError, OSError):
        for line in process.stdout or ():
            lines.put(line)
    lines.put("")  # end of output


def _wait_for_line(process: subprocess.Popen[str], prefix: str, timeout: float) -> str:
    """Wait for a stdout line starting with `prefix`; return the rest of that line."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(process, lines), daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            break
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
        if not line:
            break
        seen.append(line)
    raise RuntimeError(f"{process.args!r} did not start:\n{''.join(seen)[-4000:]}")


@contextlib.contextmanager
def _server(command: list[str], ready: str, env: dict[str, str] | None = None,
            timeout: float = 30.0, cwd: Path | None = None
            ) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, cwd=cwd,
    )
    try:
        url = _wait_for_line(process, ready, timeout)
        yield process, url
    finally:
        _stop(process)


@contextlib.contextmanager
def start_simulator(config: dict[str, Any], tmp: Path) -> Iterator[tuple[str, int]]:
    """The OpenAI-compatible simulator on a free port; yields (root URL, pid)."""
    path = tmp / "simulator.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "routeyard.simulator", "--port", "0", "--config", str(path)]
    with _server(command, _SIM_READY) as (process, url):
        yield url, process.pid


@contextlib.contextmanager
def start_routeyard(config: dict[str, Any], tmp: Path, workers: int = 1, *,
                    name: str = "routeyard", source: Path | None = None,
                    script: Path | None = None, wrapper: list[str] | None = None,
                    timeout: float = 30.0) -> Iterator[Target]:
    """`routeyard serve` with a generated config; the yielded Target has model `auto`.
    `source`: a checkout whose `routeyard` package runs instead of the installed one (an A/B
    run against another commit, with the same venv). It runs in `tmp`: `python -m` puts the
    working directory first on sys.path, so started from the repository it would import the
    working tree whatever PYTHONPATH says. `wrapper` prefixes the command (valgrind, say)."""
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "routeyard.yaml"
    path.write_text(yaml.safe_dump(config))
    entry = [str(script)] if script is not None else ["-m", "routeyard"]
    command = [*(wrapper or []), sys.executable, *entry, "serve", "--config", str(path),
               "--port", "0", "--workers", str(workers)]
    env = {"XDG_STATE_HOME": str(tmp / "xdg-state")}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    with _server(command, _ROUTER_READY, env=env, cwd=tmp, timeout=timeout) as (process, url):
        yield Target(name, url + "/v1", "auto", process.pid)


@contextlib.contextmanager
def start_litellm(backend_v1: str, backend_model: str, port: int, shared: Path | None = None,
                  install_timeout: float = 1800.0) -> Iterator[Target]:
    """The LiteLLM proxy peer (installs itself on first use); stopped with its own script,
    `peers/litellm-proxy` in the shared folder (see paths.py)."""
    script = shared_dir(shared) / "peers" / "litellm-proxy"
    command = [str(script), "start", "--backend", backend_v1, "--port", str(port),
               "--backend-model", backend_model]
    print(f"starting LiteLLM proxy on port {port} (the first start installs it) ...",
          file=sys.stderr, flush=True)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=install_timeout)
        if done.returncode != 0:
            raise RuntimeError(f"litellm-proxy start failed:\n{done.stderr[-4000:]}")
        line = done.stdout.strip().splitlines()[-1]
        info = dict(re.findall(r"(\w+)=(\S+)", line))
        yield Target("litellm", info["url"], info["model"], int(info["pid"]),
                     headers={"Authorization": f"Bearer {info['key']}"},
                     version=info.get("version", ""))
    finally:
        subprocess.run([str(script), "stop", "--port", str(port)], capture_output=True,
                       text=True, timeout=60)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
