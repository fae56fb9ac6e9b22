"""A tiny in-process OpenAI-compatible backend that records the bodies it receives, for tests
that assert on what Routeyard sends upstream (the simulator does not echo bodies)."""

from __future__ import annotations

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
async def echo_backend(reply: str | None = None
                       ) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """(base URL ending in /v1, the list that receives every request body). `reply` replaces
    the answer's text ("ok")."""
    received: list[dict[str, Any]] = []
    answer = REPLY if reply is None else {
        **REPLY, "choices": [{**REPLY["choices"][0],
                              "message": {"role": "assistant", "content": reply}}]}

    async def completions(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    async with TestServer(app) as server:
        yield str(server.make_url("/v1")), received
