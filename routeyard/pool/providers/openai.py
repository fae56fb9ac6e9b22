"""OpenAI-compatible provider: vLLM, Ollama, llama.cpp server, OpenAI, OpenRouter, Azure.

The internal request form is already an OpenAI body, so requests pass through with only the
model id replaced, and stream chunks are forwarded as the backend's own payloads.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from routeyard.pool.providers.base import EndpointTarget, UpstreamError, auth_headers
from routeyard.pool.providers.http import HttpProvider
from routeyard.pool.providers.sse import SSEChatStream


class OpenAIProvider(HttpProvider):
    kind = "openai"
    path = "/chat/completions"
    label = "the backend"

    def endpoint_headers(self, target: EndpointTarget) -> dict[str, str]:
        return auth_headers(target)  # Bearer, or the key under a custom auth_header (Azure)

    def request_body(
        self, target: EndpointTarget, body: dict[str, Any], *, stream: bool
    ) -> dict[str, Any]:
        if stream:
            body = _with_stream_usage(body, target.stream_usage)
        return {**body, "model": target.upstream_model}

    def completion(self, answer: Any, target: EndpointTarget) -> dict[str, Any]:
        if not isinstance(answer, dict) or not isinstance(answer.get("choices"), list):
            raise UpstreamError("protocol", "the backend's answer has no choices")
        return answer

    def chat_stream(
        self, response: aiohttp.ClientResponse, target: EndpointTarget
    ) -> SSEChatStream:
        return OpenAIChatStream(response, self.label)

    async def embed(
        self, target: EndpointTarget, body: dict[str, Any], timeout: aiohttp.ClientTimeout
    ) -> dict[str, Any]:
        payload = {**body, "model": target.upstream_model}
        answer = await self._read_json(await self._post(target, payload, timeout,
                                                        "/embeddings"))
        if not isinstance(answer, dict) or not isinstance(answer.get("data"), list):
            raise UpstreamError("protocol", "the backend's embeddings answer has no data")
        return answer

    def status_message(self, response: aiohttp.ClientResponse, body: Any) -> str:
        # The backend's own message: it is already in the words an OpenAI client expects.
        return _error_message(body) or f"the backend answered HTTP {response.status}"


def _with_stream_usage(body: dict[str, Any], allowed: bool) -> dict[str, Any]:
    # Always ask for usage upstream: the gateway needs it for cost, and strips it from the
    # client's stream unless the client asked for it too.
    if allowed:
        return {**body, "stream_options": {**(body.get("stream_options") or {}),
                                           "include_usage": True}}
    if "stream_options" in body:  # this server rejects them; usage is counted instead
        return {k: v for k, v in body.items() if k != "stream_options"}
    return body


class OpenAIChatStream(SSEChatStream):
    """`data:` payloads are already OpenAI chunks: forward them until `[DONE]`."""

    end_marker = "[DONE]"

    def __init__(self, response: aiohttp.ClientResponse, label: str) -> None:
        super().__init__(response, label)
        self._done = False
        self._saw_finish_reason = False

    @property
    def finished(self) -> bool:
        return self._done

    def may_end_here(self) -> bool:
        return self._done or self._saw_finish_reason  # servers that end without [DONE]

    def translate(self, event: str | None, data: str) -> list[bytes]:
        if data == "[DONE]":
            self._done = True
            return []
        if not data:
            return []
        if data.startswith('{"error"'):
            message = _error_message(_loads_or_none(data)) or "the backend reported an error"
            raise UpstreamError("protocol", message, body=data)
        if '"finish_reason":"' in data or '"finish_reason": "' in data:
            self._saw_finish_reason = True
        return [data.encode()]


def _loads_or_none(data: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def _error_message(body: Any) -> str | None:
    """The message of an OpenAI error body: `{"error": {"message": ...}}` or `{"error": "..."}`."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error["message"]) if error.get("message") else None
    return str(error) if error else None
