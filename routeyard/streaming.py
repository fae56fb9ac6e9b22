"""Relaying an upstream stream to the client as OpenAI SSE, with honest endings.

- Chunks pass through as the backend's bytes; only chunks carrying usage are parsed twice.
- The usage chunk is forwarded only when the client asked for it (`stream_options`), and is
  computed from the streamed text when the backend sent none.
- A stream that breaks after its first byte ends with an SSE `error` event, which the openai
  SDK raises as an APIError: it is never silently truncated.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import orjson

from routeyard.chat_request import wants_usage
from routeyard.pool.executor import Executor, Served
from routeyard.pool.providers.base import UpstreamError

if TYPE_CHECKING:
    from routeyard.planner import RoutePlan
    from routeyard.plugins.rewrite import ContentRewrite
    from routeyard.router import Router

DONE = b"data: [DONE]\n\n"
log = logging.getLogger("routeyard.streaming")


def sse(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


class StreamRelay:
    def __init__(self, router: Router, plan: RoutePlan, served: Served, body: dict[str, Any]):
        self.router = router
        self.plan = plan
        self.served = served
        self.client_wants_usage = wants_usage(body)
        self.usage: dict[str, Any] | None = None
        self.text_parts: list[str] = []
        self.first_chunk: dict[str, Any] | None = None
        self.status = "client_disconnect"  # until the stream ends one way or the other
        self._finished = False
        self.cost_usd: float | None = None  # set when several calls made the answer (cascade)
        # Called once when the stream ended successfully (plugins: the semantic cache fills).
        self.on_complete: Callable[[StreamRelay], None] | None = None
        # Plugins that rewrite the streamed text (pii_redact's restore); None on the fast path.
        self.rewrite: ContentRewrite | None = None
        self.interrupted: str | None = None  # why the server cut the stream (shutdown)

    async def frames(self) -> AsyncIterator[bytes]:
        metrics = self.router.metrics
        first = True
        try:
            async for payload in self.served.result:
                if first:
                    metrics.child(metrics.ttft, self.plan.model).observe(
                        time.monotonic() - self.plan.started)
                    first = False
                try:
                    chunk = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    raise UpstreamError("protocol", "the backend sent a chunk that is not "
                                        "JSON") from None
                if self._absorb(chunk):
                    if self.rewrite is not None:
                        payload = self.rewrite.apply(chunk) or payload
                    yield sse(payload)
            if self.rewrite is not None:
                for leftover in self.rewrite.leftovers(self.first_chunk or {}):
                    yield sse(leftover)
            if self.usage is None:
                self.usage = self.router.compute_usage(self.plan, "".join(self.text_parts))
                if self.client_wants_usage:
                    yield sse(orjson.dumps(self._usage_chunk()))
            self.status = "ok"
            if self.on_complete is not None:
                try:
                    self.on_complete(self)
                except Exception:  # a plugin's bookkeeping never breaks the stream
                    log.exception("stream completion hook failed")
            yield DONE
        except UpstreamError as error:
            if self.interrupted is not None:
                self.status = "shutdown"
                metrics.errors.labels("stream_shutdown").inc()
                yield sse(orjson.dumps({"error": {
                    "message": self.interrupted, "type": "server_error", "param": None,
                    "code": "server_shutting_down"}}))
                return
            self.status = "stream_broken"
            metrics.errors.labels(f"stream_{error.kind}").inc()
            yield sse(orjson.dumps({"error": {
                "message": f"the backend stream broke after it started: {error.message}",
                "type": "upstream_error", "param": None, "code": "stream_interrupted"}}))
        finally:
            await self.finish()

    def interrupt(self, reason: str) -> None:
        """Cut the stream from outside (the server's drain window ended): the client gets an
        SSE error event carrying `reason`, as for a broken upstream, instead of a cut body."""
        self.interrupted = reason
        if self.served is not None:
            self.served.result.interrupt()

    def _absorb(self, chunk: dict[str, Any]) -> bool:
        """Track text and usage; return whether to forward the chunk to the client."""
        if self.first_chunk is None:
            self.first_chunk = chunk
        usage = chunk.get("usage")
        choices = chunk.get("choices")
        if usage:
            self.usage = usage
            if not choices:
                return self.client_wants_usage
        if choices:
            delta = choices[0].get("delta") or {}
            content = delta.get("content")
            if content:
                self.text_parts.append(content)
        return True

    def _usage_chunk(self) -> dict[str, Any]:
        first = self.first_chunk or {}
        return {"id": first.get("id", self.plan.request_id), "object": "chat.completion.chunk",
                "created": first.get("created", int(time.time())),
                "model": first.get("model", self.plan.model), "choices": [],
                "usage": self.usage}

    async def finish(self) -> None:
        """Release the upstream stream and account for the request, once. Also called when
        the response ends before `frames()` was ever iterated (the client left at once)."""
        if not self._finished:
            self._finished = True
            await self._finish()

    async def _finish(self) -> None:
        stream = self.served.result
        ok = self.status != "stream_broken"  # a shutdown is not the backend's fault
        if self.status != "ok":
            await stream.aclose()
        Executor.release(self.served, ok=ok)
        usage = self.usage or self.router.compute_usage(self.plan, "".join(self.text_parts))
        self.router.finish(self.plan, self.served, int(usage.get("prompt_tokens") or 0),
                           int(usage.get("completion_tokens") or 0), status=self.status,
                           stream=True, cost_usd=self.cost_usd)
