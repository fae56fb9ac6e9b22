"""Graceful shutdown for LLM streams: unready at once, a drain window, then an honest cut.

On SIGTERM (or SIGINT) the server
1. turns `/readyz` unready at once, so load balancers stop sending;
2. keeps serving for `server.drain_delay_s` (SIGTERM only; 0 by default), time for a load
   balancer to see that, then stops accepting connections (uvicorn's own shutdown);
3. lets running requests and streams finish for up to `server.shutdown_grace_s`;
4. cuts the streams still open at the end of that window with an SSE error event (code
   `server_shutting_down`), as a broken upstream does, so clients see an error rather than a
   silently truncated body; a whole (non-streamed) request still running is answered with a
   503 `server_shutting_down` in its surface's schema, and recorded `shutdown`.

uvicorn's hard deadline is set a few seconds past the window, as a backstop.

The signal is caught by wrapping uvicorn's own handler (installed before the app's lifespan
starts), so it works the same with one worker or several, and it is restored on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

from routeyard.errors import SHUTDOWN_CUT

log = logging.getLogger("routeyard.drain")

UVICORN_MARGIN_S = 3.0  # uvicorn's hard cancel comes this long after our cut
CUT_MESSAGE = "the server is shutting down; the stream was cut at the end of its drain window"

SignalHandler = Callable[[int, FrameType | None], Any]


class Interruptible(Protocol):
    def interrupt(self, reason: str) -> None: ...


class Drain:
    def __init__(self, grace_s: float, delay_s: float = 0.0) -> None:
        self.grace_s = grace_s
        self.delay_s = delay_s
        self.draining = False
        self.streams: set[Interruptible] = set()  # open client streams, for the final cut
        # Whole requests waiting for their answer: cancelled with SHUTDOWN_CUT at the cut,
        # which the accounting turns into a 503 (rather than uvicorn's plain 500 later).
        self.requests: set[asyncio.Task[Any]] = set()
        self._previous: dict[int, SignalHandler] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timers: list[asyncio.TimerHandle] = []

    # -- lifecycle (the app's lifespan) ------------------------------------------------------

    def install(self) -> None:
        """Wrap the running server's SIGTERM and SIGINT handlers. Outside a server (a test's
        in-process app, a non-main thread) there is nothing to wrap, and nothing is done."""
        self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread
                current = signal.getsignal(sig)
                if callable(current):
                    self._previous[sig] = current
                    signal.signal(sig, self._on_signal)

    def uninstall(self) -> None:
        for timer in self._timers:
            timer.cancel()
        for sig, previous in self._previous.items():
            with contextlib.suppress(ValueError):
                if signal.getsignal(sig) == self._on_signal:
                    signal.signal(sig, previous)
        self._previous.clear()

    # -- the drain ---------------------------------------------------------------------------

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        # A Python signal handler runs in the main thread between bytecodes: hand over to the
        # event loop rather than touch its state here.
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.begin, sig)

    def begin(self, sig: int) -> None:
        previous = self._previous.get(sig)
        if self.draining:  # a second signal: no more waiting (uvicorn forces exit on SIGINT)
            if previous is not None:
                previous(sig, None)
            return
        self.draining = True
        delay = self.delay_s if sig == signal.SIGTERM else 0.0
        log.info("draining: unready now; stop accepting in %.1f s; open streams are cut "
                 "%.1f s after that", delay, self.grace_s)
        assert self._loop is not None
        if previous is not None:
            self._timers.append(self._loop.call_later(delay, previous, sig, None))
        self._timers.append(self._loop.call_later(delay + self.grace_s, self.cut))

    def cut(self) -> None:
        if self.streams or self.requests:
            log.warning("drain window over: cutting %d open stream(s) and %d request(s)",
                        len(self.streams), len(self.requests))
        for stream in list(self.streams):
            stream.interrupt(CUT_MESSAGE)
        for task in list(self.requests):
            task.cancel(SHUTDOWN_CUT)
