"""Retries, failover and timeouts across endpoints and models.

Order of attempts for one request: the chosen model's endpoints by weighted load, each retried
with backoff on connect errors, timeouts, 429 (honouring retry-after) and 5xx; then the next
model in the attempt list (the decision's fallbacks). Everything happens before the first byte
reaches the client, so failover is invisible to it.

An endpoint with a time-to-first-token bound (`EndpointTarget.ttft_timeout_s`) that sends no
first byte in time is left at once for the next endpoint: a stream's first byte is its first
content chunk, a whole answer's the response's head (the whole answer stays under per_try_s).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp

from routeyard import tracing
from routeyard.config.schema import PoolConfig
from routeyard.metrics import Metrics
from routeyard.pool.endpoint import Endpoint, PooledModel
from routeyard.pool.latency import LatencyTracker
from routeyard.pool.preference import current_preference
from routeyard.pool.providers.base import (
    ChatStream,
    EndpointTarget,
    Provider,
    UpstreamError,
)

T = TypeVar("T")
# A provider's method for a whole answer: (target, body, timeout) → the answer.
WholeCall = Callable[[EndpointTarget, dict[str, Any], aiohttp.ClientTimeout],
                     Awaitable[dict[str, Any]]]
# The body to send one endpoint, or None when that endpoint may not be tried.
BodyFor = Callable[[Endpoint], dict[str, Any] | None]
log = logging.getLogger("routeyard.pool")


@dataclass(slots=True)
class AttemptLog:
    model: str
    endpoint: str
    outcome: str  # "ok", an UpstreamError kind, or "status:<code>"
    error: str | None = None  # a failed attempt's message (the decision log shows it)


@dataclass(slots=True)
class Served:
    """The result of a successful attempt, with how it was reached.

    An opened stream holds its endpoint's slot (`held`) until `release()`: the endpoint counts
    it as outstanding, and the breaker hears how the stream ended. Anything else was released
    when the attempt ended."""

    model: PooledModel
    endpoint: Endpoint
    result: Any
    attempts: list[AttemptLog] = field(default_factory=list)
    upstream_s: float = 0.0
    held: bool = False

    def release(self, *, ok: bool) -> None:
        """End of a stream: free the endpoint slot and tell the breaker; once."""
        if self.held:
            self.held = False
            self.endpoint.outstanding -= 1
            if ok:
                self.endpoint.breaker.on_success()
            else:
                self.endpoint.breaker.on_failure()


class FirstByteTimeout(UpstreamError):
    """No first byte within the endpoint's `ttft_timeout_s`. A timeout (it fails over and
    counts against the breaker) that is never retried on the same endpoint: a retry would
    spend another whole bound on an endpoint that is slow right now."""

    outcome = "ttft_timeout"  # its attempt log outcome and `upstream_*` error metric

    def __init__(self, bound_s: float) -> None:
        super().__init__("timeout", f"the backend sent no first byte within {bound_s * 1000:g} ms")


async def _first_byte_bounded(attempt: Awaitable[T], bound_s: float) -> T:
    """A whole-answer attempt whose socket reads were bounded by `bound_s` (aiohttp's
    sock_read): its read timeout is the time-to-first-byte bound running out."""
    try:
        return await attempt
    except UpstreamError as error:
        # Providers raise their timeout from aiohttp's, which stays the error's context.
        if error.kind == "timeout" and isinstance(error.__context__, aiohttp.SocketTimeoutError):
            raise FirstByteTimeout(bound_s) from None
        raise


class PoolExhausted(Exception):
    """Every allowed attempt failed; `last` is the final upstream error, if any was tried."""

    def __init__(self, message: str, last: UpstreamError | None, attempts: list[AttemptLog]):
        super().__init__(message)
        self.message = message
        self.last = last
        self.attempts = attempts


class Executor:
    def __init__(self, config: PoolConfig, metrics: Metrics, tracker: LatencyTracker) -> None:
        self.retry = config.retry
        self.timeouts = config.timeouts
        self.metrics = metrics
        self.tracker = tracker  # each successful attempt's latency, for latency-aware selection

    async def complete(self, models: list[PooledModel], body: dict[str, Any]) -> Served:
        return await self._run(models, self._whole(lambda provider: provider.complete, body))

    async def embed(self, models: list[PooledModel], body: dict[str, Any]) -> Served:
        """An embeddings request, with the same retries and failover as a completion."""
        return await self._run(models, self._whole(lambda provider: provider.embed, body))

    def _whole(self, method: Callable[[Provider], WholeCall], body: dict[str, Any]
               ) -> Callable[[Endpoint, float], Awaitable[dict[str, Any]]]:
        """One attempt at a whole (unstreamed) answer, bounded by the per-try timeout; with a
        time-to-first-token bound, its socket reads too (the wait for the response's head, and
        any silence while the answer is read)."""
        timeouts = self.timeouts

        def call(endpoint: Endpoint, remaining: float) -> Awaitable[dict[str, Any]]:
            first_byte = endpoint.target.ttft_timeout_s
            timeout = aiohttp.ClientTimeout(
                total=min(timeouts.per_try_s, remaining), sock_connect=timeouts.connect_s,
                sock_read=first_byte,
            )
            attempt = method(endpoint.provider)(endpoint.target, body, timeout)
            return attempt if first_byte is None else _first_byte_bounded(attempt, first_byte)

        return call

    async def open_stream(self, models: list[PooledModel], body: dict[str, Any]) -> Served:
        """Open a stream; the caller must call `served.release()` when the stream ends."""
        return await self._run(models, self._stream_call(lambda _: body), keep_outstanding=True)

    async def open_continuation(self, models: list[PooledModel], body_for: BodyFor) -> Served:
        """Open a stream that continues one whose backend broke off (see
        `serving/continuation.py`): as `open_stream`, but each endpoint gets the body
        `body_for` gives it, and an endpoint it gives none is skipped (it cannot continue)."""
        return await self._run(models, self._stream_call(body_for), keep_outstanding=True,
                               usable=lambda endpoint: body_for(endpoint) is not None)

    def _stream_call(self, body_for: BodyFor
                     ) -> Callable[[Endpoint, float], Awaitable[ChatStream]]:
        """One attempt at opening a stream: the first byte bounded by the per-try timeout (or
        the endpoint's time-to-first-token bound), the silence between chunks by
        `stream_idle_s`."""
        timeouts = self.timeouts
        # sock_read bounds the silence between chunks; the first byte gets the per-try bound.
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.connect_s, sock_read=timeouts.stream_idle_s
        )

        async def call(endpoint: Endpoint, remaining: float) -> ChatStream:
            body = body_for(endpoint)
            assert body is not None  # _run skipped the endpoints without one
            bound = min(timeouts.per_try_s, remaining)
            first_byte = endpoint.target.ttft_timeout_s
            if first_byte is None or first_byte >= bound:
                async with asyncio.timeout(bound):
                    return await endpoint.provider.open_stream(endpoint.target, body, timeout)
            # open_stream returns once the first content chunk is in: that is the first byte.
            try:
                async with asyncio.timeout(first_byte) as waiting:
                    return await endpoint.provider.open_stream(endpoint.target, body, timeout)
            except TimeoutError:
                if waiting.expired():
                    raise FirstByteTimeout(first_byte) from None
                raise

        return call

    async def _run(
        self,
        models: list[PooledModel],
        call: Callable[[Endpoint, float], Awaitable[T]],
        *,
        keep_outstanding: bool = False,
        usable: Callable[[Endpoint], bool] | None = None,
    ) -> Served:
        """`usable`: which endpoints may be tried at all (None: every one)."""
        deadline = time.monotonic() + self.timeouts.total_s
        attempts: list[AttemptLog] = []
        last: UpstreamError | None = None
        prefer = current_preference()  # a session's endpoint (affinity), usually None
        for model in models:
            for endpoint in model.endpoints_in_order(prefer):
                if usable is not None and not usable(endpoint):
                    attempts.append(AttemptLog(model.name, endpoint.name, "skipped:unusable"))
                    continue
                if not endpoint.is_available():
                    attempts.append(AttemptLog(model.name, endpoint.name, "skipped:unavailable"))
                    continue
                for attempt in range(self.retry.max_retries + 1):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise PoolExhausted("the total timeout ran out", last, attempts)
                    endpoint.outstanding += 1
                    endpoint.breaker.on_attempt()
                    started = time.monotonic()
                    try:
                        result = await (call(endpoint, remaining) if not tracing.recording()
                                        else _traced(call, endpoint, remaining, model, attempt))
                    except UpstreamError as error:
                        endpoint.outstanding -= 1
                        last = error
                    except TimeoutError:
                        endpoint.outstanding -= 1
                        last = UpstreamError("timeout", "the backend did not answer in time")
                    except BaseException:
                        # The client left mid-attempt (CancelledError), or a bug of ours
                        # escaped: free the slot, and let the breaker send another probe since
                        # this one told us nothing about the endpoint.
                        endpoint.outstanding -= 1
                        endpoint.breaker.on_abandoned()
                        raise
                    else:
                        upstream_s = time.monotonic() - started
                        if not keep_outstanding:
                            endpoint.outstanding -= 1
                            endpoint.breaker.on_success()
                        self.metrics.child(self.metrics.upstream_latency, model.name,
                                           endpoint.name).observe(upstream_s)
                        self.tracker.record_attempt(model, upstream_s, result,
                                                    stream=keep_outstanding)
                        attempts.append(AttemptLog(model.name, endpoint.name, "ok"))
                        return Served(model, endpoint, result, attempts, upstream_s,
                                      held=keep_outstanding)
                    outcome = _outcome(last)
                    attempts.append(AttemptLog(model.name, endpoint.name, outcome, last.message))
                    log.warning("attempt at %s (%s) failed: %s%s", endpoint.name, model.name,
                                last.message, f" ({last.detail})" if last.detail else "")
                    self.metrics.errors.labels(f"upstream_{outcome}").inc()
                    if not last.failover:
                        # The request itself is at fault (a 400, say): no endpoint will differ,
                        # and the endpoint did answer, so it counts as healthy.
                        endpoint.breaker.on_success()
                        raise PoolExhausted(last.message, last, attempts)
                    endpoint.breaker.on_failure()
                    delay = self._retry_delay(last, attempt)
                    if delay is None or not endpoint.breaker.allows():
                        break  # on to the next endpoint
                    await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        if last is None:
            raise PoolExhausted("no endpoint is available for the candidate models", None, attempts)
        raise PoolExhausted(f"every endpoint failed; last error: {last.message}", last, attempts)

    def _retry_delay(self, error: UpstreamError, attempt: int) -> float | None:
        """Seconds to wait before retrying the same endpoint, or None to move on."""
        if not error.retryable or attempt >= self.retry.max_retries \
                or isinstance(error, FirstByteTimeout):
            return None
        if error.retry_after is not None:
            if error.retry_after > self.retry.max_retry_after_s:
                return None  # waiting that long is worse than another endpoint
            return error.retry_after
        backoff = min(self.retry.backoff_max_s, self.retry.backoff_base_s * (2**attempt))
        return backoff * (0.5 + random.random() / 2)  # jitter spreads retry storms


async def _traced(call: Callable[[Endpoint, float], Awaitable[T]], endpoint: Endpoint,
                  remaining: float, model: PooledModel, retry: int) -> T:
    """One attempt inside its CLIENT span, current while the request is sent, so that the
    backend gets it as its `traceparent`."""
    target = endpoint.target
    url = urlsplit(target.base_url)
    with tracing.client_span(f"chat {model.name}", {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": endpoint.provider.kind,
        "gen_ai.request.model": target.upstream_model,
        "server.address": url.hostname or "",
        "server.port": url.port or (443 if url.scheme == "https" else 80),
        "routeyard.endpoint": endpoint.name,
        "routeyard.retry": retry,
    }) as span:
        try:
            return await call(endpoint, remaining)
        except UpstreamError as error:
            tracing.set_attributes(span, {"error.type": _outcome(error)})
            raise


def _outcome(error: UpstreamError) -> str:
    """A failed attempt as the attempt log and the `upstream_*` error metric name it."""
    if isinstance(error, FirstByteTimeout):
        return FirstByteTimeout.outcome
    return f"status:{error.status}" if error.kind == "status" else error.kind
