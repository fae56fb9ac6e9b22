"""The HTTP plumbing every provider shares: the session's lifecycle, and one request's round trip.

`HttpClient` owns the gateway's aiohttp session. `HttpProvider` does, once for every protocol,
what a backend call needs besides the protocol itself: the POST and its failure kinds, the
error statuses, whole JSON bodies, the health check and opening a stream. A protocol subclass
keeps only what differs: its path, its headers, and its body and response translation.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import aiohttp
import orjson

from routeyard.pool.providers.base import (
    EndpointTarget,
    Provider,
    UpstreamError,
    edited_headers,
    parse_retry_after,
)
from routeyard.pool.providers.sse import SSEChatStream

_JSON = {"content-type": "application/json"}


class HttpClient:
    """The gateway's one aiohttp session, with the connection settings it is made with.

    Built anywhere (nothing here needs a loop, so a pool can be built, inspected and dry-run
    without one); `start()` makes the session inside the running loop and `close()` ends it.
    """

    def __init__(self, max_connections: int = 1000) -> None:
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._owns_session = True

    @classmethod
    def around(cls, session: aiohttp.ClientSession) -> HttpClient:
        """A client over a session someone else opened and will close (tests, embedding)."""
        client = cls()
        client._session = session
        client._owns_session = False
        return client

    async def start(self) -> None:
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(
            limit=self.max_connections, ttl_dns_cache=300, enable_cleanup_closed=True
        )
        # Large read buffer: one SSE line (a chunk with tool-call arguments) can be long.
        self._session = aiohttp.ClientSession(
            connector=connector, read_bufsize=2**20, skip_auto_headers=("User-Agent",)
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError(
                "the HTTP client is not started: await HttpClient.start() in the running loop"
            )
        return self._session


class HttpProvider(Provider):
    """A provider that speaks JSON over HTTP, streams by SSE and lists models at `/models`."""

    path: ClassVar[str]  # appended to the endpoint's base_url for chat requests
    label: ClassVar[str]  # how error messages name the backend

    def __init__(self, http: HttpClient | aiohttp.ClientSession) -> None:
        self.http = http if isinstance(http, HttpClient) else HttpClient.around(http)
        # Built once per endpoint: header dicts are on the hot path. The target is kept
        # beside its headers so that a reused id() can never pick up another's.
        self._headers: dict[int, tuple[EndpointTarget, dict[str, str]]] = {}

    # --- what a protocol supplies ------------------------------------------------------------

    @abstractmethod
    def endpoint_headers(self, target: EndpointTarget) -> dict[str, str]:
        """Authentication and the endpoint's own headers (no content-type)."""

    @abstractmethod
    def request_body(
        self, target: EndpointTarget, body: dict[str, Any], *, stream: bool
    ) -> dict[str, Any]:
        """The internal (OpenAI) body -> what this protocol's endpoint takes."""

    @abstractmethod
    def completion(self, answer: Any, target: EndpointTarget) -> dict[str, Any]:
        """The decoded JSON answer -> an OpenAI `chat.completion` (raises UpstreamError)."""

    @abstractmethod
    def chat_stream(
        self, response: aiohttp.ClientResponse, target: EndpointTarget
    ) -> SSEChatStream:
        """Wrap an accepted streaming response."""

    @abstractmethod
    def status_message(self, response: aiohttp.ClientResponse, body: Any) -> str:
        """The client-safe message for an error status, from its decoded body."""

    # --- the Provider contract ---------------------------------------------------------------

    async def complete(
        self, target: EndpointTarget, body: dict[str, Any], timeout: aiohttp.ClientTimeout
    ) -> dict[str, Any]:
        response = await self._post(target, self.request_body(target, body, stream=False), timeout)
        return self.completion(await self._read_json(response), target)

    async def open_stream(
        self, target: EndpointTarget, body: dict[str, Any], timeout: aiohttp.ClientTimeout
    ) -> SSEChatStream:
        response = await self._post(target, self.request_body(target, body, stream=True), timeout)
        stream = self.chat_stream(response, target)
        await stream.prefetch()
        return stream

    async def health(self, target: EndpointTarget, timeout: aiohttp.ClientTimeout) -> bool:
        try:
            async with self.http.session.get(
                f"{target.base_url}/models",
                headers=self.endpoint_headers(target),
                params=target.query or None,
                timeout=timeout,
            ) as response:
                return response.status < 500
        except (aiohttp.ClientError, TimeoutError):
            return False

    # --- the round trip ----------------------------------------------------------------------

    def _request_headers(self, target: EndpointTarget) -> dict[str, str]:
        cached = self._headers.get(id(target))
        if cached is None or cached[0] is not target:
            cached = (target, {**_JSON, **self.endpoint_headers(target)})
            self._headers[id(target)] = cached
        return cached[1]

    async def _post(
        self, target: EndpointTarget, payload: dict[str, Any], timeout: aiohttp.ClientTimeout,
        path: str | None = None,
    ) -> aiohttp.ClientResponse:
        """POST one request (to `path`, by default the chat path); an error status is raised,
        an accepted response returned unread."""
        try:
            response = await self.http.session.post(
                f"{target.base_url}{path or self.path}",
                data=orjson.dumps(payload),
                headers=edited_headers(self._request_headers(target)),
                params=target.query or None,
                timeout=timeout,
            )
        except TimeoutError:
            raise UpstreamError("timeout", f"{self.label} did not answer in time") from None
        except aiohttp.ClientConnectionError as error:
            raise UpstreamError("connect", f"cannot reach {self.label}",
                                detail=repr(error)) from None
        except aiohttp.ClientError as error:  # e.g. an answer that is not valid HTTP
            raise UpstreamError("protocol", f"{self.label} sent a malformed response",
                                detail=repr(error)) from None
        if response.status >= 400:
            raise await self._status_error(response)
        return response

    async def _status_error(self, response: aiohttp.ClientResponse) -> UpstreamError:
        try:
            raw = await response.read()
        except (aiohttp.ClientError, TimeoutError):
            raw = b""
        finally:
            response.release()
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = raw.decode("utf-8", errors="replace")
        return UpstreamError(
            "status",
            self.status_message(response, body),
            status=response.status,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            body=body,
        )

    async def _read_json(self, response: aiohttp.ClientResponse) -> Any:
        """Read and decode a whole JSON response, releasing the connection."""
        try:
            raw = await response.read()
        except TimeoutError:
            raise UpstreamError("timeout", f"{self.label}'s answer stalled") from None
        except aiohttp.ClientError as error:
            raise UpstreamError("disconnect", f"{self.label}'s answer broke off",
                                detail=repr(error)) from None
        finally:
            response.release()
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamError("protocol", f"{self.label}'s answer is not JSON",
                                body=raw[:2000]) from None
