"""Write-behind buffering shared by the stores that talk to something slower than a dict.

`record_decision` appends to a deque on the event loop (sub-microsecond, never raises). A
background task drains the deque in batches: every `flush_interval` seconds, or sooner when
`batch_size` records wait. A failed batch goes back to the front of the deque, the outage is
logged once, and the flusher retries with capped exponential backoff. The deque is bounded:
past `max_buffer` the oldest records are dropped and counted in `dropped`.

Subclasses implement `_write(batch)` and name their transient errors in `_write_errors`.
Writes must be idempotent (upserts), because a batch interrupted by shutdown is requeued and
may be written twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import abstractmethod
from collections import deque

from routeyard.state.base import DecisionRecord, Store

log = logging.getLogger("routeyard.state")


class BufferedStore(Store):
    # Errors that mean "backend unreachable or busy, try again later". Subclasses set this.
    _write_errors: tuple[type[BaseException], ...] = ()

    def __init__(
        self,
        *,
        flush_interval: float = 0.1,
        batch_size: int = 500,
        max_batch: int = 5_000,
        max_buffer: int = 100_000,
        max_backoff: float = 5.0,
    ) -> None:
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.max_batch = max_batch
        self.max_buffer = max_buffer
        self.max_backoff = max_backoff
        self.dropped = 0  # records lost to the buffer bound or rejected as unwritable
        self._buffer: deque[DecisionRecord] = deque()
        # Created in start(): asyncio primitives belong to the loop that runs the flusher.
        self._wake: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self._task: asyncio.Task[None] | None = None
        self._healthy = True
        self._backoff = 0.0

    # -- request path -----------------------------------------------------------------

    def record_decision(self, record: DecisionRecord) -> None:
        buf = self._buffer
        buf.append(record)
        if len(buf) > self.max_buffer:
            buf.popleft()
            self.dropped += 1
        if len(buf) >= self.batch_size and self._wake is not None:
            self._wake.set()

    @property
    def pending(self) -> int:
        """Records enqueued but not yet written."""
        return len(self._buffer)

    @property
    def healthy(self) -> bool:
        """False between a failed write and the next successful one."""
        return self._healthy

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"routeyard-{self.name}-flusher")
        self._task.add_done_callback(self._on_flusher_done)

    async def flush(self) -> None:
        """Write everything pending. On a backend outage, keep the records and return."""
        await self._drain()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drain()
        if self._buffer:
            log.warning("%s store closed with %d unwritten records", self.name, len(self._buffer))
        await self._close_backend()

    # -- subclass hooks ---------------------------------------------------------------

    @abstractmethod
    async def _write(self, batch: list[DecisionRecord]) -> None:
        """Write one batch; raise one of `_write_errors` when the backend is unavailable."""

    async def _close_backend(self) -> None:
        """Release connections after the final drain."""

    # -- internals --------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if self._healthy:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.flush_interval):
                        await self._wake.wait()
            else:
                # Down: ignore batch-size wakeups, so a full buffer does not hammer the backend.
                await asyncio.sleep(self._backoff)
            self._wake.clear()
            await self._drain()

    async def _drain(self) -> bool:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            buf = self._buffer
            while buf:
                batch = [buf.popleft() for _ in range(min(len(buf), self.max_batch))]
                try:
                    await self._write(batch)
                except self._write_errors as exc:
                    self._requeue(batch)
                    self._mark_down(exc)
                    return False
                except asyncio.CancelledError:
                    self._requeue(batch)  # writes are idempotent; close() retries them
                    raise
                self._mark_up()
            return True

    def _requeue(self, batch: list[DecisionRecord]) -> None:
        buf = self._buffer
        buf.extendleft(reversed(batch))
        excess = len(buf) - self.max_buffer
        for _ in range(excess):
            buf.popleft()
        if excess > 0:
            self.dropped += excess

    def _mark_down(self, exc: BaseException) -> None:
        self._backoff = min(self.max_backoff, max(0.25, self._backoff * 2))
        if self._healthy:
            self._healthy = False
            log.warning(
                "%s store unavailable (%s: %s); buffering up to %d records and retrying",
                self.name, type(exc).__name__, exc, self.max_buffer,
            )

    def _mark_up(self) -> None:
        self._backoff = 0.0
        if not self._healthy:
            self._healthy = True
            log.warning("%s store available again; %d records dropped while down so far",
                        self.name, self.dropped)

    def _on_flusher_done(self, task: asyncio.Task[None]) -> None:
        # A flusher that dies of a bug must not die silently; records would pile up unseen.
        if not task.cancelled() and task.exception() is not None:
            log.error("%s store flusher stopped", self.name, exc_info=task.exception())
