"""OpenAI-compatible provider: vLLM, Ollama, llama.cpp server, OpenAI, OpenRouter, Azure.

The internal request form is already an OpenAI body, so requests pass through with only the
model id replaced, and stream chunks are forwarded as the backend's own bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from routeyard.pool.providers.base import (
    ChatStream,
    EndpointTarget,
    Provider,
    UpstreamError,
    auth_headers,
    edited_headers,
    parse_retry_after,
    read_json_body,
)

_JSON = {"content-type": "application/json"}


class OpenAIProvider(Provider):
    kind = "openai"

    def __init__(self, session: aiohttp.ClientSession | None = None) -> None:
        super().__init__(session)
        self._headers: dict[int, dict[str, str]] = {}

    def _request_headers(self, target: EndpointTarget) -> dict[str, str]:
        # Built once per endpoint: header dicts are on the hot path.
        key = id(target)
        headers = self._headers.get(key)
        if headers is None:
            headers = {**_JSON, **auth_headers(target)}
            self._headers[key] = headers
        return headers

    async def _post(
        self, target: EndpointTarget, body: dict[str, Any], timeout: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse:
        payload = orjson.dumps({**body, "model": target.upstream_model})
        try:
            response = await self.session.post(
                f"{target.base_url}/chat/completions",
                data=payload,
                headers=edited_headers(self._request_headers(target)),
                params=target.query or None,
                timeout=timeout,
            )
        except TimeoutError:
            raise UpstreamError("timeout", "the backend did not answer in time") from None
        except aiohttp.ClientConnectionError as error:
            raise UpstreamError("connect", "cannot reach the backend", detail=str(error)) from None
        if response.status >= 400:
            await _raise_for_status(response)
        return response

    async def complete(
        self, target: EndpointTarget, body: dict[str, Any], timeout: aiohttp.ClientTimeout
    ) -> dict[str, Any]:
        response = await self._post(target, body, timeout)
        result = await read_json_body(response, "backend")
        if not isinstance(result, dict) or not isinstance(result.get("choices"), list):
            raise UpstreamError("protocol", "the backend's answer has no choices")
        return result

    async def open_stream(
        self, target: EndpointTarget, body: dict[str, Any], timeout: aiohttp.ClientTimeout
    ) -> ChatStream:
        # Always ask for usage upstream: the gateway needs it for cost, and strips it from
        # the client's stream unless the client asked for it too.
        if target.stream_usage:
            body = {**body, "stream_options": {**(body.get("stream_options") or {}),
                                                "include_usage": True}}
        elif "stream_options" in body:  # this server rejects them; usage is counted instead
            body = {k: v for k, v in body.items() if k != "stream_options"}
        response = await self._post(target, body, timeout)
        stream = _SSEStream(response)
        await stream.prefetch()
        return stream


class _SSEStream(ChatStream):
    """Reads `data:` lines from an OpenAI-style SSE response."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._first: bytes | None = None
        self._finished = False

    async def prefetch(self) -> None:
        """Read the first chunk now, so a failure before the first byte can still fail over."""
        try:
            self._first = await self._next_payload()
        except UpstreamError:
            self._response.close()
            raise

    async def _next_payload(self) -> bytes | None:
        content = self._response.content
        while True:
            try:
                line = await content.readline()
            except TimeoutError:
                raise UpstreamError("timeout", "the backend stream stalled") from None
            except (aiohttp.ClientError, ValueError) as error:
                raise UpstreamError("disconnect", "the backend stream broke",
                                    detail=str(error)) from None
            if not line:
                if self._finished:
                    return None
                raise UpstreamError("disconnect", "the backend closed the stream before [DONE]")
            if not line.startswith(b"data:"):
                continue  # blank separators, comments, `event:` lines
            payload = line[5:].strip()
            if payload == b"[DONE]":
                self._finished = True
                return None
            if payload.startswith(b'{"error"'):
                raise UpstreamError("protocol", _error_message(payload), body=payload)
            if b'"finish_reason":"' in payload or b'"finish_reason": "' in payload:
                self._finished = True  # tolerate servers that end without [DONE]
            return payload

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            if self._first is not None:
                yield self._first
            while (payload := await self._next_payload()) is not None:
                yield payload
        finally:
            self._response.release()

    async def aclose(self) -> None:
        self._response.close()

    def interrupt(self) -> None:
        self._response.close()


def _error_message(payload: bytes) -> str:
    try:
        error = orjson.loads(payload).get("error")
    except orjson.JSONDecodeError:
        return "the backend reported an error mid-stream"
    if isinstance(error, dict):
        return str(error.get("message") or "the backend reported an error")
    return str(error)


async def _raise_for_status(response: aiohttp.ClientResponse) -> None:
    try:
        raw = await response.read()
    except aiohttp.ClientError:
        raw = b""
    finally:
        response.release()
    try:
        body: Any = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    raise UpstreamError(
        "status",
        str(message or f"the backend answered HTTP {response.status}"),
        status=response.status,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
        body=body,
    )
