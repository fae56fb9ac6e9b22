"""Server-sent events from a backend: one decoder, one reader, one stream shape for every protocol.

A protocol's stream subclasses `SSEChatStream` and says only how one event becomes OpenAI chunk
payloads and which event ends the stream (OpenAI's `[DONE]`, Anthropic's `message_stop`).
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections import deque
from collections.abc import AsyncIterator
from typing import ClassVar

import aiohttp

from routeyard.pool.providers.base import ChatStream, UpstreamError

# One SSE line longer than this is a broken backend, not a chunk worth buffering forever.
MAX_LINE_BYTES = 4 * 2**20


class SSEDecoder:
    """Incremental `text/event-stream` decoder that tolerates chunks split anywhere.

    `feed` returns the (event name, data) pairs completed by a chunk; an event is dispatched
    at its blank line, multi-line data is joined with newlines, comments are skipped.
    """

    def __init__(self) -> None:
        self._buf = b""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[tuple[str | None, str]]:
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")  # keep the unterminated tail
        if len(self._buf) > MAX_LINE_BYTES:
            raise UpstreamError("protocol", "the backend sent an over-long stream line")
        events: list[tuple[str | None, str]] = []
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
            if not line:
                if self._data:
                    events.append((self._event, "\n".join(self._data)))
                self._event, self._data = None, []
                continue
            if line.startswith(":"):  # comment / keep-alive
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                self._event = value
            elif name == "data":
                self._data.append(value)
        return events


async def read_sse_events(
    response: aiohttp.ClientResponse, label: str
) -> AsyncIterator[tuple[str | None, str]]:
    """The (event name, data) pairs of an SSE response body, with read failures as
    UpstreamError ("timeout" when the backend goes quiet, "disconnect" when it breaks)."""
    decoder = SSEDecoder()
    try:
        async for raw in response.content.iter_any():
            for event in decoder.feed(raw):
                yield event
    except TimeoutError:  # also aiohttp's ServerTimeoutError
        raise UpstreamError("timeout", f"{label}'s stream stalled") from None
    except aiohttp.ClientError as error:
        raise UpstreamError("disconnect", f"{label}'s stream broke", detail=repr(error)) from None


class SSEChatStream(ChatStream):
    """An open SSE response, exposed as OpenAI chunk payloads.

    The provider calls `prefetch()` before handing the stream out: it reads until the stream is
    committed to content, buffering what it produced, so that anything failing before the
    client could see a byte still fails over.
    """

    end_marker: ClassVar[str]  # named in the error when the body ends without it

    def __init__(self, response: aiohttp.ClientResponse, label: str) -> None:
        self._response = response
        self._label = label
        self._pending: deque[bytes] = deque()
        self._events = read_sse_events(response, label)

    # --- what a protocol supplies ------------------------------------------------------------

    @abstractmethod
    def translate(self, event: str | None, data: str) -> list[bytes]:
        """One SSE event -> the OpenAI chunk payloads to send (raises UpstreamError)."""

    @property
    @abstractmethod
    def finished(self) -> bool:
        """The protocol's end marker has arrived: stop reading."""

    @property
    def committed(self) -> bool:
        """Content has started, so a failure now reaches the client: a chunk is buffered."""
        return bool(self._pending)

    def may_end_here(self) -> bool:
        """Whether the body may end now without that being a broken stream."""
        return self.finished

    def failure_before_content(self, error: UpstreamError) -> UpstreamError:
        """What `error` means when it comes before any content (by default, itself)."""
        return error

    # --- the shared mechanics ----------------------------------------------------------------

    async def prefetch(self) -> None:
        """Read until the stream is committed to content (or over), buffering the chunks."""
        try:
            while not (self.committed or self.finished):
                event = await anext(self._events, None)
                if event is None:
                    raise UpstreamError("disconnect", f"{self._label} ended the stream "
                                                      "before any content")
                self._pending.extend(self.translate(*event))
        except UpstreamError as error:
            await self.aclose()
            raise self.failure_before_content(error) from None
        except asyncio.CancelledError:  # the executor's per-try timeout
            await self.aclose()
            raise

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            while self._pending:
                yield self._pending.popleft()
            while not self.finished:
                event = await anext(self._events, None)
                if event is None:
                    if self.may_end_here():
                        break
                    raise UpstreamError("disconnect", f"{self._label} closed the stream "
                                                      f"before {self.end_marker}")
                for chunk in self.translate(*event):
                    yield chunk
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        await self._events.aclose()
        if self.finished:
            self._response.release()
        else:
            self._response.close()  # drop the connection rather than drain an abandoned stream

    def interrupt(self) -> None:
        self._response.close()
