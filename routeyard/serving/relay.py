"""Relaying a stream to the client as OpenAI SSE, with honest endings: one class for every
stream, whether a backend's (forwarded as its own bytes) or a replayed answer (a cascade's
choice, a cache hit, a plugin's canned answer).

- Chunks pass through as the backend's bytes; only chunks carrying usage are parsed twice.
- The usage chunk is forwarded only when the client asked for it (`stream_options`), and is
  computed from the streamed text when the backend sent none.
- A stream that breaks after its first byte goes on from a healthy alternative where one can
  continue it (`continuation.py`): the client sees one stream. Where none can, it ends with an
  SSE `error` event, which the openai SDK raises as an APIError: it is never silently
  truncated. So does one the server cuts at the end of its drain window.
- The stream accounts for itself, once, when it ends (however it ends).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from routeyard import tracing
from routeyard.plugins.rewrite import ContentRewrite, RewriterFactory
from routeyard.pool import Served, UpstreamError
from routeyard.pool.providers.base import ChatStream
from routeyard.serving.accounting import Accountant
from routeyard.serving.continuation import Continuation
from routeyard.serving.planner import RoutePlan
from routeyard.wire import DONE, chunk, error_frame, sse, streamed_completion

log = logging.getLogger("routeyard.streaming")

# Delta fields of a plain text answer; any other with a value (tool calls, reasoning, a
# refusal) makes a broken stream unsafe to continue.
_PLAIN_DELTA = frozenset({"role", "content"})


@dataclass(frozen=True, slots=True)
class StreamHooks:
    """What the layers above a handler add to a stream it opens (the plugin chain's)."""

    rewriters: tuple[RewriterFactory, ...] = ()  # rewrite the streamed text as it passes
    # Called with the finished answer (a one-choice chat.completion) of a stream that ended
    # well: the semantic cache fills on it.
    on_complete: tuple[Callable[[dict[str, Any]], None], ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)  # response headers to add


NO_HOOKS = StreamHooks()


@dataclass(frozen=True, slots=True)
class StreamFailure:
    """How a stream that could not go on ended, in OpenAI error terms."""

    message: str
    type: str
    code: str


class ReplayStream(ChatStream):
    """A ChatStream over pre-built chunk payloads (an answer that is already whole)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for payload in self.chunks:
            yield payload

    async def aclose(self) -> None:
        return None


class StreamRelay:
    def __init__(self, plan: RoutePlan, stream: ChatStream, accountant: Accountant, *,
                 client_wants_usage: bool, served: Served | None = None,
                 hooks: StreamHooks = NO_HOOKS, status: str = "ok",
                 cost_usd: float | None = None,
                 headers: Mapping[str, str] | None = None,
                 continuation: Continuation | None = None) -> None:
        """`served`: the backend call behind the stream (None: a plugin answered); `status`:
        what a stream that ends well is logged as; `cost_usd`: what several calls cost in all
        (a cascade); `headers`: response headers of the handler that opened it;
        `continuation`: how to go on from another backend if this one breaks off."""
        self.plan = plan
        self.stream = stream
        self.accountant = accountant
        self.served = served
        self.client_wants_usage = client_wants_usage
        self.on_complete = hooks.on_complete
        self.rewrite = ContentRewrite(hooks.rewriters) if hooks.rewriters else None
        self.headers = {**hooks.headers, **(headers or {})}
        self.cost_usd = cost_usd
        self.success_status = status
        self.usage: dict[str, Any] | None = None
        self.text_parts: list[str] = []  # choice 0's content
        self.ttft_s: float | None = None  # the first byte, since the request arrived
        self.first_chunk: dict[str, Any] | None = None
        self.status = "client_disconnect"  # until the stream ends one way or the other
        self.interrupted: str | None = None  # why the server cut the stream (shutdown)
        self.continuation = continuation
        self.plain = True  # only text so far: safe to continue elsewhere if the backend breaks
        self._finished = False
        self.chunks_relayed = 0
        # Its own span under the request's, from the open stream to its end (tracing on).
        self.span = tracing.child(plan.trace, "routeyard.stream", {
            "routeyard.model": self.model or "none"}) if plan.trace is not None else None

    @property
    def model(self) -> str | None:
        """The model that answers, or None when no backend does."""
        return self.served.model.name if self.served is not None else None

    async def frames(self) -> AsyncIterator[bytes]:
        """The stream as OpenAI SSE: the backend's own bytes where nothing changed them, an
        `error` event when it broke, `[DONE]` when it ended well."""
        async for payload, item in self._items():
            if isinstance(item, StreamFailure):
                yield error_frame(item.message, type_=item.type, code=item.code)
                return
            yield sse(payload if payload is not None else orjson.dumps(item))
        if self.continuation is not None and self.continuation.continued:
            yield self.continuation.trailer()
        yield DONE

    async def chunks(self) -> AsyncIterator[dict[str, Any] | StreamFailure]:
        """The stream as parsed `chat.completion.chunk` dicts, for surfaces that speak
        another wire format; a `StreamFailure` comes last when it broke."""
        async for _, item in self._items():
            yield item

    async def _items(self) -> AsyncIterator[tuple[bytes | None, dict[str, Any] | StreamFailure]]:
        """(the payload to forward as is, or None when it must be re-encoded; the chunk)."""
        metrics = self.accountant.metrics
        first = True
        try:
            while True:  # once per backend: a break may go on from another (continuation.py)
                try:
                    async for payload in self.stream:
                        self.chunks_relayed += 1
                        if first:
                            self.ttft_s = time.monotonic() - self.plan.started
                            metrics.child(metrics.ttft, self.plan.model).observe(self.ttft_s)
                            first = False
                        try:
                            parsed = orjson.loads(payload)
                        except orjson.JSONDecodeError:
                            raise UpstreamError("protocol", "the backend sent a chunk that is "
                                                "not JSON") from None
                        if self._absorb(parsed):
                            if self.rewrite is not None and self.rewrite.apply(parsed) is not None:
                                yield None, parsed  # rewritten in place
                            else:
                                yield payload, parsed
                    break
                except UpstreamError as error:
                    if self.interrupted is not None:
                        self.status = "shutdown"
                        metrics.errors.labels("stream_shutdown").inc()
                        yield None, StreamFailure(self.interrupted, "server_error",
                                                  "server_shutting_down")
                        return
                    if self.continuation is not None and self.continuation.answered(self.stream):
                        break  # only the end of the stream was lost, after the whole answer
                    if not await self._continue(error):
                        self.status = "stream_broken"
                        metrics.errors.labels(f"stream_{error.kind}").inc()
                        yield None, StreamFailure(
                            f"the backend stream broke after it started: {error.message}",
                            "upstream_error", "stream_interrupted")
                        return
            if self.rewrite is not None:
                for leftover in self.rewrite.leftovers(self.first_chunk or {}):
                    yield leftover, orjson.loads(leftover)
            if self.usage is None:
                self.usage = await self._counted()
                if self.client_wants_usage:
                    yield None, self._usage_chunk()
            self.status = self.success_status
            self._completed()
        finally:
            await self.finish()

    async def _continue(self, error: UpstreamError) -> bool:
        """Go on from another backend; False when the stream cannot be continued (it showed
        more than text, or no alternative can take it)."""
        continuation = self.continuation
        if continuation is None or not self.plain or self.served is None:
            return False
        with tracing.use(self.span):  # the new attempts hang under the stream's span
            stream = await continuation.resume(self.plan, self.served,
                                               "".join(self.text_parts), error,
                                               self.first_chunk)
        if stream is None:
            return False
        self.accountant.metrics.errors.labels("stream_continued").inc()
        self.stream = stream
        if self.interrupted is not None:  # the server's drain window ended meanwhile
            stream.interrupt()
        return True

    def _absorb(self, parsed: dict[str, Any]) -> bool:
        """Track text and usage; return whether to forward the chunk to the client."""
        if self.first_chunk is None:
            self.first_chunk = parsed
        found = parsed.get("usage")
        choices = parsed.get("choices")
        if found:
            self.usage = found
            if not choices:
                return self.client_wants_usage
        if choices:
            delta = choices[0].get("delta") or {}
            content = delta.get("content")
            if content:
                self.text_parts.append(content)
            elif self.plain:  # not text: the role, the ending, or what makes it unsafe to continue
                self.plain = not any(value for key, value in delta.items()
                                     if key not in _PLAIN_DELTA)
        return True

    async def _counted(self) -> dict[str, Any]:
        """The usage no backend reported, counted from the text."""
        text = "".join(self.text_parts)
        if self.continuation is not None and self.continuation.continued:
            return await self.continuation.counted(text)
        return self.accountant.counted(self.plan, text)

    def _usage_chunk(self) -> dict[str, Any]:
        first = self.first_chunk or {}
        return chunk(first.get("id", self.plan.request_id), first.get("model", self.plan.model),
                     first.get("created"), [], self.usage)

    def _completed(self) -> None:
        if not self.on_complete:
            return
        answer = streamed_completion(self.first_chunk, "".join(self.text_parts), self.usage,
                                     self.plan.model)
        for hook in self.on_complete:
            try:
                hook(answer)
            except Exception:  # a plugin's bookkeeping never breaks a finished stream
                log.exception("stream completion hook failed")

    def interrupt(self, reason: str) -> None:
        """Cut the stream from outside (the server's drain window ended): the client gets an
        SSE error event carrying `reason`, as for a broken upstream, instead of a cut body."""
        self.interrupted = reason
        self.stream.interrupt()

    async def finish(self) -> None:
        """Release the upstream stream and account for the request, once. Also called when
        the response ends before `frames()` was ever iterated (the client left at once)."""
        if self._finished:
            return
        self._finished = True
        if self.status != self.success_status:
            await self.stream.aclose()
        ok = self.status != "stream_broken"  # a shutdown is not the backend's fault
        if self.served is not None:
            self.served.release(ok=ok)
        cost, detail = self.cost_usd, None
        continuation = self.continuation
        usage_ = self.usage or await self._counted()
        if continuation is not None and continuation.continued:
            # Several calls made the answer: the usage is their sum, the cost each one's at
            # its own model's price.
            cost, detail = await continuation.settle(usage_, ok=ok)
        self.accountant.record(self.plan, served=self.served, usage_=usage_, status=self.status,
                               stream=True, cost_usd=cost, detail=detail, ttft_s=self.ttft_s,
                               answer_text="".join(self.text_parts)
                               if self.accountant.keeps_text else None)
        if self.span is not None:
            tracing.set_attributes(self.span, {
                "routeyard.status": self.status, "routeyard.chunks": self.chunks_relayed,
                "routeyard.continued": continuation is not None and continuation.continued})
            tracing.end(self.span, None if self.status == self.success_status else self.status)
