"""An OpenAI-compatible chat backend on its own thread that records every request body and
answers from a script: text, reasoning, tool calls, whole or streamed, or a stream that breaks.
For end-to-end tests with a sync client against `routeyard serve`, where the simulator (which
neither records bodies nor calls tools) cannot say what Routeyard sent upstream.

    with scripted_backend() as backend:
        backend.replies.append(Reply(tool_calls=[("call_1", "get_weather", '{"city":"Paris"}')]))
        ... backend.url (ends in /v1), backend.received (every body, in order)
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Reply:
    content: str | None = None  # None: "answer <n>" (n counts requests from 1), unless calls
    reasoning: str | None = None  # sent as `reasoning_content`
    tool_calls: list[tuple[str, str, str]] = field(default_factory=list)  # (id, name, args)
    break_after: int | None = None  # streamed: cut the connection after this many chunks


@dataclass
class ScriptedBackend:
    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)  # consumed first to last

    def next_reply(self) -> tuple[Reply, str | None]:
        reply = self.replies.pop(0) if self.replies else Reply()
        text = reply.content
        if text is None and not reply.tool_calls:
            text = f"answer {len(self.received)}"
        return reply, text


def _message(reply: Reply, text: str | None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if reply.reasoning is not None:
        message["reasoning_content"] = reply.reasoning
    if reply.tool_calls:
        message["tool_calls"] = [{"id": i, "type": "function",
                                  "function": {"name": n, "arguments": a}}
                                 for i, n, a in reply.tool_calls]
    return message


def _deltas(reply: Reply, text: str | None) -> list[dict[str, Any]]:
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    if reply.reasoning:
        deltas += [{"reasoning_content": reply.reasoning[i:i + 3]}
                   for i in range(0, len(reply.reasoning), 3)]
    if text:
        deltas += [{"content": text[i:i + 4]} for i in range(0, len(text), 4)]
    for index, (call_id, name, arguments) in enumerate(reply.tool_calls):
        deltas.append({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                       "function": {"name": name, "arguments": ""}}]})
        deltas += [{"tool_calls": [{"index": index, "function": {"arguments": arguments[i:i + 5]}}]}
                   for i in range(0, len(arguments), 5)]
    return deltas


USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def _app(backend: ScriptedBackend) -> web.Application:
    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        backend.received.append(body)
        reply, text = backend.next_reply()
        finish = "tool_calls" if reply.tool_calls else "stop"
        if not body.get("stream"):
            return web.json_response({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 0,
                "model": body["model"], "usage": USAGE,
                "choices": [{"index": 0, "finish_reason": finish,
                             "message": _message(reply, text)}]})
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        deltas = _deltas(reply, text)
        for position, delta in enumerate(deltas):
            if reply.break_after is not None and position == reply.break_after:
                assert request.transport is not None
                request.transport.close()  # the backend dies mid-stream
                return response
            last = position == len(deltas) - 1
            chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0,
                     "model": body["model"],
                     "choices": [{"index": 0, "delta": delta,
                                  "finish_reason": finish if last else None}]}
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        usage = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0,
                 "model": body["model"], "choices": [], "usage": USAGE}
        await response.write(b"data: " + json.dumps(usage).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": []})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_get("/v1/models", models)
    return app


@contextmanager
def scripted_backend() -> Iterator[ScriptedBackend]:
    backend = ScriptedBackend()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    runner = web.AppRunner(_app(backend))

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        backend.url = f"http://127.0.0.1:{port}/v1"

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield backend
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
