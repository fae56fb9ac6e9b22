"""Store test helpers shared by the state tests: the real Redis and PostgreSQL, a store per
backend, and a TCP proxy to take either down.

Redis is the server at $ROUTEYARD_TEST_REDIS_URL (default redis://127.0.0.1:6379/0). A test
that needs it is marked `@needs_redis` (or calls `require_redis()`): it skips when Redis does
not answer, or fails when ROUTEYARD_REQUIRE_SERVICES=1 (CI), so a missing Redis cannot turn
the Redis tests into silent skips there.

PostgreSQL is the server of $ROUTEYARD_TEST_POSTGRES_URL (default: user postgres at
127.0.0.1:5432), marked and required the same way (`@needs_postgres`). The test session creates
its own database, routeyard_test_<random>, on first use and drops it at exit; each Postgres
store gets its own schema in it (named after the test's unique prefix).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import os
import socket
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis
import redis.asyncio as aioredis
from fakeclock import FakeClock

from routeyard.state import MemoryStore, RedisStore, SQLiteStore, Store
from routeyard.state.postgres import PostgresStore

T = TypeVar("T")

REDIS_URL = os.environ.get("ROUTEYARD_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
REDIS_HOST = urlsplit(REDIS_URL).hostname or "127.0.0.1"
REDIS_PORT = urlsplit(REDIS_URL).port or 6379
DOWN_URL = "redis://127.0.0.1:6399/0"  # nothing listens here
REQUIRE_SERVICES_ENV = "ROUTEYARD_REQUIRE_SERVICES"
POSTGRES_ADMIN_URL = (os.environ.get("ROUTEYARD_TEST_POSTGRES_URL")
                      or "postgresql://postgres@127.0.0.1:5432/postgres")
POSTGRES_DOWN_URL = "postgresql://postgres@127.0.0.1:5439/routeyard"  # nothing listens here


@functools.cache  # one ping per session: every Redis test asks
def redis_up() -> bool:
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


def _require(up: bool, service: str, url: str, env: str) -> None:
    """Skip the running test when `service` is down; fail it instead under CI."""
    if up:
        return
    if os.environ.get(REQUIRE_SERVICES_ENV) == "1":
        pytest.fail(f"{service} is required ({REQUIRE_SERVICES_ENV}=1) but {url} does not "
                    f"answer: start it (.ci/run does) or set {env}", pytrace=False)
    pytest.skip(f"no {service} at {url} (.ci/run starts it)")


def require_redis() -> None:
    _require(redis_up(), "Redis", REDIS_URL, "ROUTEYARD_TEST_REDIS_URL")


def run_async(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, even inside a running event loop (it
    runs on a loop of its own, in a helper thread)."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(asyncio.run(_await(make)))
        except BaseException as exc:
            failure.append(exc)

    # A plain thread, not an executor: this also runs from atexit, after executors shut down.
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


async def _await(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


@functools.cache  # one connection attempt per session: every Postgres test asks
def postgres_up() -> bool:
    async def ping() -> bool:
        conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=2)
        try:
            return await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()

    try:
        return run_async(ping)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False


def require_postgres() -> None:
    _require(postgres_up(), "PostgreSQL", POSTGRES_ADMIN_URL, "ROUTEYARD_TEST_POSTGRES_URL")


# Markers, not skipif: skipif is decided at import and could never fail. conftest's
# pytest_runtest_setup calls require_redis() / require_postgres() for every test that has one.
needs_redis = pytest.mark.needs_redis
needs_postgres = pytest.mark.needs_postgres
BACKENDS = ["memory", "sqlite", pytest.param("redis", marks=needs_redis),
            pytest.param("postgres", marks=needs_postgres)]


def database_url(name: str) -> str:
    """The admin URL pointed at database `name`."""
    return urlunsplit(urlsplit(POSTGRES_ADMIN_URL)._replace(path=f"/{name}"))


def create_database() -> str:
    """A new, empty database routeyard_test_<random>; its URL."""
    name = f"routeyard_test_{uuid.uuid4().hex[:12]}"
    run_async(lambda: _admin(f'CREATE DATABASE "{name}" ENCODING \'UTF8\' TEMPLATE template0'))
    return database_url(name)


def drop_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    run_async(lambda: _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A database of its own for one test (a `routeyard serve`, a migration run); dropped
    afterwards."""
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


@functools.cache
def session_database() -> str:
    """The test session's database, shared by the store tests (each in its own schema)."""
    url = create_database()
    atexit.register(drop_database, url)
    return url


def postgres_store(schema: str, **kw: object) -> PostgresStore:
    return PostgresStore(session_database(), schema=schema, **kw)  # type: ignore[arg-type]


@contextlib.contextmanager
def unique_prefix(label: str) -> Iterator[str]:
    """A unique Redis key prefix; every key under it is deleted afterwards."""
    prefix = f"routeyard-{label}-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5)
    with contextlib.suppress(redis.RedisError, OSError):
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.unlink(*keys)
    client.close()


def build_store(backend: str, tmp_path: Path, prefix: str, clock: FakeClock | None = None,
                **kw: object) -> Store:
    """A store of `backend`; `clock` drives key expiry of memory, SQLite and PostgreSQL (Redis
    keeps its own time: see `age_redis_keys`). Postgres: the schema named `prefix`."""
    if clock is not None and backend != "redis":
        kw["clock"] = clock
    if backend == "memory":
        return MemoryStore(**kw)  # type: ignore[arg-type]
    if backend == "sqlite":
        return SQLiteStore(tmp_path / "state.db", **kw)  # type: ignore[arg-type]
    if backend == "postgres":
        return postgres_store(prefix, **kw)
    return RedisStore(REDIS_URL, key_prefix=prefix, **kw)  # type: ignore[arg-type]


async def age_redis_keys(prefix: str, seconds: float) -> None:
    """What advancing a clock does for Redis: every expiring key under `prefix` loses
    `seconds` of its remaining TTL (a non-positive PEXPIRE deletes the key at once)."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            left = await client.pttl(key)
            if left > 0:
                await client.pexpire(key, max(0, left - round(seconds * 1000)))
    finally:
        await client.aclose()


class TcpProxy:
    """A TCP forwarder to a real server (Redis, PostgreSQL) that a test can take down and bring
    back: `down()` refuses new connections and cuts the open ones, as an outage would."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.target_port = host, port
        with socket.socket() as sock:  # reserve a free port number
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._writers):
            w.close()
        self._writers.clear()
        # Closed sockets end the handlers' pipes; wait so none outlives the test's loop.
        await asyncio.wait_for(asyncio.gather(*self._handlers), timeout=2)
        self._handlers.clear()

    async def _serve(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter
                     ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        r_reader, r_writer = await asyncio.open_connection(self.host, self.target_port)
        self._writers |= {c_writer, r_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(c_reader, r_writer), pipe(r_reader, c_writer))
