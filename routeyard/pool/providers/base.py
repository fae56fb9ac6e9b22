"""The provider contract: wire translation between Routeyard's internal request and one backend.

Routeyard's internal request form is an OpenAI chat-completions body (a plain dict), so the
OpenAI-compatible provider passes bodies through untouched and other providers translate at
the edge. A provider never retries or fails over: it makes exactly one attempt and raises
`UpstreamError` describing what went wrong; the pool's executor decides what to do next.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp

from routeyard import tracing


@dataclass(slots=True)
class EndpointTarget:
    """Everything a provider needs to reach one endpoint of one model (no runtime state)."""

    base_url: str  # e.g. "http://127.0.0.1:9000/v1" (no trailing slash)
    upstream_model: str  # the model id the backend expects
    api_key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)  # e.g. Azure's api-version
    auth_header: str = "authorization"  # "authorization" (Bearer) or e.g. "api-key" (Azure)
    stream_usage: bool = True  # may we add stream_options.include_usage upstream?
    # No first byte in this long: the executor fails over (the endpoint's ttft_timeout_ms,
    # else its model's). None: only the pool's timeouts apply.
    ttft_timeout_s: float | None = None


@dataclass(frozen=True, slots=True)
class HeaderEdits:
    """One request's changes to the headers sent upstream (the `headers` plugin)."""

    set: dict[str, str]  # lower-case names
    remove: frozenset[str]  # lower-case names

    def apply(self, headers: dict[str, str]) -> dict[str, str]:
        edited = {k: v for k, v in headers.items() if k.lower() not in self.remove
                  and k.lower() not in self.set}
        edited.update(self.set)
        return edited


# Set around a request's backend calls; a context variable, so that the executor's retries
# and failovers (same task) see it and the hot path without plugins pays one lookup.
_HEADER_EDITS: ContextVar[HeaderEdits | None] = ContextVar("routeyard_header_edits", default=None)


# Client headers an API surface forwards to backends of its own protocol (the Anthropic
# surface's `anthropic-version` and `anthropic-beta`): protocol → headers. Set around the
# request's backend calls, like the header edits.
_FORWARDED: ContextVar[dict[str, dict[str, str]] | None] = ContextVar(
    "routeyard_forwarded_headers", default=None)


@contextmanager
def forwarded_headers(headers: dict[str, dict[str, str]] | None) -> Iterator[None]:
    token = _FORWARDED.set(headers)
    try:
        yield
    finally:
        _FORWARDED.reset(token)


def forwarded_for(protocol: str) -> dict[str, str] | None:
    """The client headers forwarded to backends of `protocol` for the current request."""
    found = _FORWARDED.get()
    return found.get(protocol) if found is not None else None


@contextmanager
def upstream_header_edits(edits: HeaderEdits | None) -> Iterator[None]:
    token = _HEADER_EDITS.set(edits)
    try:
        yield
    finally:
        _HEADER_EDITS.reset(token)


def edited_headers(headers: dict[str, str]) -> dict[str, str]:
    """`headers` with the current request's upstream edits applied (a copy when any), and
    the current attempt's `traceparent` when tracing is on."""
    edits = _HEADER_EDITS.get()
    return tracing.with_traceparent(headers if edits is None else edits.apply(headers))


class UpstreamError(Exception):
    """One failed attempt against one endpoint.

    kind is one of: "connect", "timeout", "status", "protocol", "disconnect".
    `retryable` says whether the same endpoint may be tried again; `failover` whether the
    next endpoint/model may be tried. A 400 from the backend, say, is neither: the request
    itself is bad and the client gets the backend's error.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        body: Any = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message  # safe to show a client: no hosts, ports or library internals
        self.detail = detail  # for the operator's log only
        self.status = status
        self.retry_after = retry_after
        self.body = body

    @property
    def retryable(self) -> bool:
        if self.kind in ("connect", "timeout", "disconnect"):
            return True
        return self.status is not None and (self.status == 429 or self.status >= 500)

    @property
    def failover(self) -> bool:
        # Auth or not-found errors at one endpoint may not hold at another endpoint.
        return self.retryable or self.status in (401, 403, 404, 408)


class ChatStream(ABC):
    """An opened upstream stream of OpenAI `chat.completion.chunk` JSON payloads (bytes).

    `open` has already checked the status, so iteration yields chunk payloads (the JSON
    after `data: `, without the SSE framing, never the `[DONE]` sentinel). Iteration raises
    `UpstreamError(kind="disconnect" | "timeout" | "protocol")` if the stream breaks.
    """

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[bytes]: ...

    @abstractmethod
    async def aclose(self) -> None: ...

    def interrupt(self) -> None:  # noqa: B027 - optional: streams with nothing to drop keep it
        """Drop the upstream connection now, from outside the reading task: a read under way
        then raises UpstreamError (the server is shutting down, say)."""


class Provider(ABC):
    """One backend wire protocol. Instances are cheap; the HTTP ones share the gateway's
    `HttpClient`, handed over at construction (see `providers.http.HttpProvider`)."""

    kind: ClassVar[str]

    @abstractmethod
    async def complete(
        self, target: EndpointTarget, body: dict[str, Any], timeout: aiohttp.ClientTimeout
    ) -> dict[str, Any]:
        """Send a non-streaming request; return an OpenAI `chat.completion` dict."""

    @abstractmethod
    async def open_stream(
        self, target: EndpointTarget, body: dict[str, Any], timeout: aiohttp.ClientTimeout
    ) -> ChatStream:
        """Send a streaming request and return once the stream is committed to content.

        Raises UpstreamError for anything that fails before then, so that the executor can
        still fail over without the client noticing.
        """

    @abstractmethod
    async def health(self, target: EndpointTarget, timeout: aiohttp.ClientTimeout) -> bool:
        """Active health check: True when the endpoint answers its model listing."""

    async def embed(
        self, target: EndpointTarget, body: dict[str, Any], timeout: aiohttp.ClientTimeout
    ) -> dict[str, Any]:
        """Send an OpenAI embeddings request; return the OpenAI `list` of embeddings. A
        protocol without embeddings refuses (no other endpoint of it would differ)."""
        raise UpstreamError("status", f"{self.kind} backends do not serve embeddings",
                            status=400)


def auth_headers(target: EndpointTarget) -> dict[str, str]:
    headers = dict(target.headers)
    if target.api_key:
        if target.auth_header.lower() == "authorization":
            headers["Authorization"] = f"Bearer {target.api_key}"
        else:
            headers[target.auth_header] = target.api_key
    return headers


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form only; dates are rare upstream)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
