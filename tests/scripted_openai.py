"""An in-process OpenAI-compatible backend whose answers a test scripts exactly: a function of
the request body returns the whole `chat.completion`, which a streaming request gets cut into
chunks the way real servers send them (reasoning, text and tool-call arguments in small pieces,
a tool call's id and name first, the usage chunk last). Every request body is recorded."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

Script = Callable[[dict[str, Any]], dict[str, Any]]


def completion(content: str | None = None, *, tool_calls: list[dict[str, Any]] | None = None,
               reasoning: str | None = None, finish: str | None = None,
               usage: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    if tool_calls:
        message["tool_calls"] = [
            {"id": call.get("id", f"call_{i}"), "type": "function",
             "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])}}
            for i, call in enumerate(tool_calls)]
    return {"id": "chatcmpl-scripted", "object": "chat.completion", "created": 1, "model": "up",
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": finish or ("tool_calls" if tool_calls else "stop")}],
            "usage": usage or {"prompt_tokens": 120, "completion_tokens": 30,
                               "total_tokens": 150}}


def _pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def chunk_deltas(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The choice deltas that stream `answer` (the last one carries the finish reason)."""
    choice = answer["choices"][0]
    message = choice["message"]
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas += [{"reasoning_content": p} for p in _pieces(message.get("reasoning_content") or "",
                                                         7)]
    deltas += [{"content": p} for p in _pieces(message.get("content") or "", 4)]
    for index, call in enumerate(message.get("tool_calls") or []):
        deltas.append({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                       "function": {"name": call["function"]["name"],
                                                    "arguments": ""}}]})
        deltas += [{"tool_calls": [{"index": index, "function": {"arguments": p}}]}
                   for p in _pieces(call["function"]["arguments"], 5)]
    return deltas


@asynccontextmanager
async def scripted_backend(script: Script) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """(base URL ending in /v1, the list that receives every request body)."""
    received: list[dict[str, Any]] = []

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        received.append(body)
        answer = script(body)
        if not body.get("stream"):
            return web.json_response(answer)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        base = {"id": answer["id"], "object": "chat.completion.chunk", "created": 1,
                "model": answer["model"]}
        deltas = chunk_deltas(answer)
        for i, delta in enumerate(deltas):
            finish = answer["choices"][0]["finish_reason"] if i == len(deltas) - 1 else None
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        if (body.get("stream_options") or {}).get("include_usage"):
            last = {**base, "choices": [], "usage": answer["usage"]}
            await response.write(b"data: " + json.dumps(last).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": []})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_get("/v1/models", models)
    async with TestServer(app) as server:
        yield str(server.make_url("/v1")), received
