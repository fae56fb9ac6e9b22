"""A lean Redis connection that runs the limiter's Lua scripts: one pipelined connection,
EVALSHA with one argument, the reply a bulk string or an integer.

Every request with limits makes one admission call, so its cost is on the hot path. redis-py's
asyncio client spends ~50 µs of CPU per call (a pool, a lock, a pure-Python parser); writing
the command and parsing these two reply shapes by hand spends ~10 µs. Anything else (reports,
the store) still goes through redis-py.

The URL is read as redis-py reads it (redis://, rediss://, unix://, user, password, db). A
connection that fails or times out is dropped with every call waiting on it; the next call
connects again.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from dataclasses import dataclass
from typing import Any, cast

from redis.connection import parse_url


class ScriptError(RuntimeError):
    """Redis could not run the script (unreachable, timed out, or an error reply)."""


@dataclass(frozen=True, slots=True)
class Script:
    source: bytes
    sha: bytes

    @classmethod
    def of(cls, source: str) -> Script:
        text = source.encode()
        return cls(text, hashlib.sha1(text).hexdigest().encode())


Reply = bytes | int


class _Protocol(asyncio.Protocol):
    """Replies arrive in the order the commands were written: each completes the oldest
    waiting future. A watchdog (one timer per connection, not one per call) drops the
    connection when Redis has owed a reply for `timeout_s`."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiting: deque[asyncio.Future[Reply]] = deque()
        self.lost = False
        self.progress = 0.0  # when Redis last answered, or was first owed an answer
        self.watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.watchdog is not None:
            self.watchdog.cancel()
        self.fail(ScriptError(f"connection to Redis lost: {exc or 'closed'}"))

    def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        self.watchdog = None
        if not self.waiting or self.lost:
            return
        if loop.time() - self.progress >= self.timeout_s:
            self.fail(ScriptError(f"Redis did not answer within {self.timeout_s:g} s"))
            if self.transport is not None:
                self.transport.abort()  # its late replies could not be matched any more
            return
        self.watchdog = loop.call_at(self.progress + self.timeout_s, self._watch)

    def fail(self, error: Exception) -> None:
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        self.progress = asyncio.get_running_loop().time()
        while self.waiting and buffer:
            end = buffer.find(b"\r\n")
            if end < 0:
                return
            kind = buffer[0]
            value: Reply | Exception
            if kind == 0x24:  # $: a bulk string
                size = int(buffer[1:end])
                if size < 0:
                    value, used = b"", end + 2
                elif len(buffer) < end + 4 + size:
                    return
                else:
                    value, used = bytes(buffer[end + 2:end + 2 + size]), end + 4 + size
            elif kind == 0x3A:  # :
                value, used = int(buffer[1:end]), end + 2
            elif kind == 0x2B:  # +
                value, used = bytes(buffer[1:end]), end + 2
            elif kind == 0x2D:  # -: an error
                value, used = ScriptError(bytes(buffer[1:end]).decode(errors="replace")), end + 2
            else:  # no script of ours answers anything else
                value, used = ScriptError(f"unexpected Redis reply {bytes(buffer[:40])!r}"), 0
                buffer.clear()
            del buffer[:used]
            future = self.waiting.popleft()
            if future.done():  # its caller gave up (a timeout): the reply is dropped
                continue
            if isinstance(value, Exception):
                future.set_exception(value)
            else:
                future.set_result(value)

    def send_all(self, commands: list[tuple[bytes, ...]]) -> list[asyncio.Future[Reply]]:
        """Write the commands in one go; a future for each reply."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        written: list[bytes] = []
        futures = []
        for parts in commands:
            written.append(b"*%d\r\n" % len(parts))
            for part in parts:
                written += (b"$%d\r\n" % len(part), part, b"\r\n")
            future: asyncio.Future[Reply] = loop.create_future()
            futures.append(future)
        self.transport.write(b"".join(written))
        if not self.waiting:
            self.progress = loop.time()
        self.waiting.extend(futures)
        if self.watchdog is None:
            self.watchdog = loop.call_at(self.progress + self.timeout_s, self._watch)
        return futures


class ScriptClient:
    def __init__(self, url: str, *, timeout_s: float) -> None:
        self.options: dict[str, Any] = parse_url(url)
        self.tls = url.startswith("rediss://")
        self.timeout_s = timeout_s
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None

    async def run(self, script: Script, arg: bytes) -> Reply:
        """The script's reply; ScriptError when Redis cannot answer it."""
        return (await self.run_all([(script, arg)]))[0]

    async def run_all(self, calls: list[tuple[Script, bytes]]) -> list[Reply]:
        """Several scripts, written together (one write, the replies in one read), run one
        after the other; their replies in order. ScriptError when Redis cannot answer one."""
        protocol = self._protocol
        if protocol is None or protocol.lost:
            protocol = await self._connect()
        futures = protocol.send_all([(b"EVALSHA", script.sha, b"0", arg)
                                     for script, arg in calls])
        replies = []
        for (script, arg), future in zip(calls, futures, strict=True):
            try:
                replies.append(await future)
            except ScriptError as error:
                if not str(error).startswith("NOSCRIPT"):
                    raise
                # First use on this server (or after SCRIPT FLUSH): EVAL caches it.
                replies.append(await protocol.send_all([(b"EVAL", script.source, b"0",
                                                         arg)])[0])
        return replies

    async def close(self) -> None:
        self._drop(ScriptError("closed"))

    def _drop(self, error: Exception) -> None:
        """Forget the connection (its replies can no longer be matched to calls)."""
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.fail(error)
            if protocol.transport is not None:
                protocol.transport.abort()

    async def _connect(self) -> _Protocol:
        """One connection at a time, however many calls are waiting for it."""
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        try:
            async with asyncio.timeout(self.timeout_s):
                return await asyncio.shield(self._connecting)
        except TimeoutError:
            raise ScriptError(f"cannot reach Redis within {self.timeout_s:g} s") from None
        except OSError as error:  # refused, unreachable
            raise ScriptError(f"cannot reach Redis: {error}") from error
        finally:
            if self._connecting is not None and self._connecting.done():
                self._connecting = None

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        options = self.options
        if "path" in options:
            _, protocol = await loop.create_unix_connection(
                lambda: _Protocol(self.timeout_s), options["path"])
        else:
            _, protocol = await loop.create_connection(
                lambda: _Protocol(self.timeout_s), options.get("host", "localhost"),
                options.get("port", 6379),
                ssl=ssl.create_default_context() if self.tls else None)
        setup: list[tuple[bytes, ...]] = []
        if options.get("password"):
            credentials = [options.get("username") or "default", options["password"]]
            setup.append((b"AUTH", *(c.encode() for c in credentials)))
        if options.get("db"):
            setup.append((b"SELECT", str(options["db"]).encode()))
        for reply in protocol.send_all(setup) if setup else []:
            await reply
        self._protocol = protocol
        return protocol
