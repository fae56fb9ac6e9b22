"""Start `routeyard serve` as a real subprocess for end-to-end tests."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_READY = "routeyard listening on "


@dataclass
class RouterProcess:
    process: subprocess.Popen[str]
    url: str
    output: list[str]

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"


def _pump(stream: Any, lines: list[str], ready: queue.Queue[str]) -> None:
    for line in stream:
        lines.append(line)
        if line.startswith(_READY):
            ready.put(line[len(_READY):].strip())


@contextmanager
def start_router(
    config: dict[str, Any] | None, tmp_dir: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[RouterProcess]:
    args = [sys.executable, "-m", "routeyard", "serve", "--port", "0", *extra]
    if config is not None:
        path = tmp_dir / "routeyard.yaml"
        config.setdefault("state", {"backend": "sqlite", "path": str(tmp_dir / "state.db")})
        path.write_text(yaml.safe_dump(config))
        args += ["--config", str(path)]
    full_env = {**os.environ, "XDG_STATE_HOME": str(tmp_dir / "state"), **(env or {})}
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=full_env)
    lines: list[str] = []
    ready: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(process.stdout, lines, ready), daemon=True).start()
    try:
        try:
            url = ready.get(timeout=20)
        except queue.Empty:
            process.kill()
            raise RuntimeError("routeyard did not start:\n" + "".join(lines)) from None
        yield RouterProcess(process, url, lines)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
