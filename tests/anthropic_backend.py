"""A tiny in-process Anthropic-protocol backend that records what it receives (raw bytes, parsed
body, headers) and answers with a fixed message, whole or as Anthropic's typed SSE events, for
tests that assert on what Routeyard sends to Anthropic and on what comes back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

SIGNATURE = "EqQBCkYIBxgCKkD" + "s1gnature" * 8  # opaque to Routeyard; must come back intact

THINKING_REPLY: dict[str, Any] = {
    "id": "msg_recorded01", "type": "message", "role": "assistant", "model": "claude-up",
    "content": [
        {"type": "thinking", "thinking": "The user wants a haiku. Five, seven, five.",
         "signature": SIGNATURE},
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3redacted"},
        {"type": "text", "text": "Autumn moonlight— a worm digs silently into the chestnut."},
    ],
    "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 21, "cache_creation_input_tokens": 7,
              "cache_read_input_tokens": 1800, "output_tokens": 64},
}


@dataclass
class Received:
    raw: bytes
    body: dict[str, Any]
    headers: dict[str, str]  # lower-case names


@dataclass
class AnthropicBackend:
    url: str  # the base URL to configure (ends in /v1)
    received: list[Received] = field(default_factory=list)


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def _pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def stream_events(reply: dict[str, Any]) -> list[bytes]:
    """`reply` as the Messages API streams it: thinking, text and tool input in pieces."""
    usage = reply["usage"]
    start = {**reply, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {**usage, "output_tokens": 1}}
    events = [_event("message_start", {"type": "message_start", "message": start}),
              _event("ping", {"type": "ping"})]
    for index, block in enumerate(reply["content"]):
        kind = block["type"]
        opened = {"thinking": {"type": "thinking", "thinking": "", "signature": ""},
                  "text": {"type": "text", "text": ""},
                  "tool_use": {**block, "input": {}}}.get(kind, block)
        events.append(_event("content_block_start", {"type": "content_block_start",
                                                      "index": index, "content_block": opened}))
        deltas: list[dict[str, Any]] = []
        if kind == "thinking":
            deltas = [{"type": "thinking_delta", "thinking": p}
                      for p in _pieces(block["thinking"], 9)]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        elif kind == "text":
            deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"], 6)]
        elif kind == "tool_use":
            deltas = [{"type": "input_json_delta", "partial_json": p}
                      for p in _pieces(json.dumps(block["input"]), 5)]
        events += [_event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                  "delta": d}) for d in deltas]
        events.append(_event("content_block_stop", {"type": "content_block_stop",
                                                    "index": index}))
    events.append(_event("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": reply["stop_reason"], "stop_sequence": reply["stop_sequence"]},
        "usage": {"output_tokens": usage["output_tokens"]}}))
    events.append(_event("message_stop", {"type": "message_stop"}))
    return events


@asynccontextmanager
async def anthropic_backend(reply: dict[str, Any] | None = None
                            ) -> AsyncIterator[AnthropicBackend]:
    """Serves POST /v1/messages with `reply` (THINKING_REPLY by default), its `model` set to
    the requested one, and GET /v1/models for health checks."""
    answer = reply or THINKING_REPLY
    backend = AnthropicBackend("")

    async def messages(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw)
        backend.received.append(Received(raw, body, {k.lower(): v for k, v in
                                                      request.headers.items()}))
        message = {**answer, "model": body["model"]}
        if not body.get("stream"):
            return web.json_response(message)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in stream_events(message):
            await response.write(event)
        return response

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"data": []})

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    app.router.add_get("/v1/models", models)
    async with TestServer(app) as server:
        backend.url = str(server.make_url("/v1"))
        yield backend
