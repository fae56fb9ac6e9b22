"""A tiny in-process OpenAI-compatible backend that records the bodies it receives, for tests
that assert on what Routeyard sends upstream (the simulator does not echo bodies)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

REPLY = {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
         "choices": [{"index": 0, "finish_reason": "stop",
                      "message": {"role": "assistant", "content": "ok"}}],
         "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


@asynccontextmanager
async def echo_backend(reply: str | None = None, headers: list[dict[str, str]] | None = None,
                       tool_arguments: str | None = None
                       ) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """(base URL ending in /v1, the list that receives every request body). `reply` replaces
    the answer's text ("ok"). A streaming request gets it in 4-character deltas, followed by
    one tool call with `tool_arguments` (also in 4-character deltas) when that is given.
    `headers`, when given, receives each request's headers (lower-case names)."""
    received: list[dict[str, Any]] = []
    answer = REPLY if reply is None else {
        **REPLY, "choices": [{**REPLY["choices"][0],
                              "message": {"role": "assistant", "content": reply}}]}

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        received.append(body)
        if headers is not None:
            headers.append({k.lower(): v for k, v in request.headers.items()})
        if not body.get("stream"):
            return web.json_response(answer)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        text = answer["choices"][0]["message"]["content"]
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}] + [
            {"content": text[i:i + 4]} for i in range(0, len(text), 4)]
        if tool_arguments is not None:
            deltas.append({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                           "function": {"name": "send", "arguments": ""}}]})
            deltas += [{"tool_calls": [{"index": 0, "function": {
                "arguments": tool_arguments[i:i + 4]}}]}
                for i in range(0, len(tool_arguments), 4)]
        finish = "stop" if tool_arguments is None else "tool_calls"
        for i, delta in enumerate(deltas):
            last = i == len(deltas) - 1
            chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
                     "choices": [{"index": 0, "delta": delta,
                                  "finish_reason": finish if last else None}]}
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    async with TestServer(app) as server:
        yield str(server.make_url("/v1")), received
