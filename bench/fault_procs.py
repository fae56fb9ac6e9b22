"""The processes of bench/faults.py: a router, simulators, a private redis-server, a TCP
proxy in front of PostgreSQL, a database of the run's own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procs import start_simulator

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
POSTGRES_ADMIN_URL = (os.environ.get("ROUTEYARD_TEST_POSTGRES_URL")
                      or "postgresql://postgres@127.0.0.1:5432/postgres")
_READY = re.compile(r"routeyard listening on (\S+)")
PROMPT = "Say briefly what a router does."
TOKENS = 32  # every answer's length (sd 0)



def simulator_config(*, tpot_ms: float = 2, tokens: int = TOKENS, seed: int = 3
                     ) -> dict[str, Any]:
    return {"default": {"ttft_ms": 20, "tpot_ms": tpot_ms, "output_tokens_mean": tokens,
                        "output_tokens_sd": 0, "output_tokens_max": tokens},
            "models": ["sim"], "seed": seed}


# -- processes -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RouterProc:
    """`routeyard serve` with one config file, which can be stopped, killed and started again
    (on a new port); its output, across restarts, goes to one log file."""

    def __init__(self, config: dict[str, Any], tmp: Path, name: str = "router") -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp
        self.path = tmp / f"{name}.yaml"
        self.path.write_text(yaml.safe_dump(config))
        self.log = tmp / f"{name}.log"
        self.log.write_text("")
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 60.0) -> str:
        offset = self.log.stat().st_size
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "routeyard", "serve", "--config", str(self.path),
                 "--port", "0"], stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1",
                     "XDG_STATE_HOME": str(self.tmp / "xdg")})
        deadline = time.monotonic() + timeout
        while not (found := _READY.search(self._text(offset))):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"routeyard did not start:\n{self._text(offset)[-4000:]}")
            time.sleep(0.05)
        self.url = found.group(1)
        return self.url

    def _text(self, offset: int = 0) -> str:
        with self.log.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, number: int) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def kill_now(self) -> None:
        """SIGKILL, without waiting (the exit is reaped by `start` or `stop`)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (the store flushes at exit), then SIGKILL past `timeout`."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def problems(self) -> list[str]:
        """Tracebacks and ERROR lines in the router's log."""
        return [line for line in self._text().splitlines()
                if "Traceback" in line or " ERROR " in line]


@contextlib.contextmanager
def running_router(config: dict[str, Any], tmp: Path) -> Iterator[RouterProc]:
    router = RouterProc(config, tmp)
    router.start()
    try:
        yield router
    finally:
        router.stop()


@dataclass
class Sim:
    url: str
    pid: int

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def set_profile(self, **updates: Any) -> None:
        httpx.put(f"{self.url}/_sim/profiles/sim", json=updates, timeout=10).raise_for_status()

    def outcomes(self) -> dict[str, int]:
        """What this simulator did, by outcome (`ok`, `5xx`, `429`, `hang`, ...); {} once
        it is dead."""
        try:
            stats = httpx.get(f"{self.url}/_sim/stats", timeout=5).json()
        except httpx.HTTPError:
            return {}
        return {k: v for k, v in stats["outcomes"].get("sim", {}).items() if v}

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)


@contextlib.contextmanager
def simulator(tmp: Path, **config: Any) -> Iterator[Sim]:
    tmp.mkdir(parents=True, exist_ok=True)
    with start_simulator(simulator_config(**config), tmp) as (url, pid):
        yield Sim(url, pid)


class RedisServer:
    """A private redis-server on a free port, persisting every write (AOF, fsync always), so
    that a SIGKILL of it loses nothing it acknowledged: what goes missing is Routeyard's."""

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        with (self.dir / "redis.log").open("ab") as out:
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir),
                 "--protected-mode", "no"], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.thaw()
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def private_redis(tmp: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class TcpProxy:
    """A TCP forwarder to a real server, on its own thread and event loop: `down()` refuses
    new connections and cuts the open ones, as an outage of the server would."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    def _call(self, make: Callable[[], Awaitable[None]]) -> None:
        asyncio.run_coroutine_threadsafe(make(), self.loop).result(timeout=10)

    def up(self) -> None:
        async def up() -> None:
            self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self._call(up)

    def down(self) -> None:
        async def down() -> None:
            if self.server is not None:
                self.server.close()
                self.server = None
            for writer in list(self.writers):
                writer.close()
            self.writers.clear()
        self._call(down)

    def close(self) -> None:
        self.down()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                     ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, RuntimeError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}


async def _postgres_admin(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def own_database() -> Iterator[str]:
    """A new database on the shared PostgreSQL server, for this run only; its URL."""
    name = f"routeyard_faults_{uuid.uuid4().hex[:10]}"
    asyncio.run(_postgres_admin(f'CREATE DATABASE "{name}" TEMPLATE template0'))
    try:
        yield urlunsplit(urlsplit(POSTGRES_ADMIN_URL)._replace(path=f"/{name}"))
    finally:
        asyncio.run(_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def postgres_available() -> bool:
    try:
        asyncio.run(_postgres_admin("SELECT 1"))
    except Exception:  # any failure means: not here
        return False
    return True


def via_proxy(url: str, port: int) -> str:
    """`url` with its port replaced (pointed at a proxy)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2
                                     else host))


# -- the load ----------------------------------------------------------------------------------
