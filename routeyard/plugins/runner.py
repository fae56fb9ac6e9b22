"""Running a decision's plugins around the Router's calls; imported only when some decision
has plugins, so that decisions without any pay nothing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from routeyard.cascade import completion_chunks
from routeyard.chat_request import wants_usage
from routeyard.decisions import Decision
from routeyard.errors import InvalidRequest
from routeyard.planner import RoutePlan
from routeyard.plugins.base import PLUGINS, Blocked, Plugin, PluginContext
from routeyard.plugins.rewrite import ContentRewrite
from routeyard.pool.providers.base import upstream_header_edits
from routeyard.router import ChatResult, Router
from routeyard.streaming import DONE, StreamRelay, sse

BLOCKED_HEADER = "x-routeyard-blocked"

Chain = tuple[Plugin, ...]


class BlockedByPolicy(InvalidRequest):
    code = "blocked_by_policy"


def build_chains(decisions: Iterable[Decision]) -> dict[str, Chain]:
    """Decision name → its plugins, built (and their options checked) once per Router:
    a bad option is a config error, reported with its decision and plugin."""
    chains: dict[str, Chain] = {}
    for decision in decisions:
        chain: list[Plugin] = []
        for index, raw in enumerate(decision.plugins):
            kind = raw.get("type")
            try:
                cls = PLUGINS[kind]
            except KeyError:
                raise ValueError(f"decision '{decision.name}': plugins[{index}]: "
                                 f"unknown plugin '{kind}'") from None
            try:
                chain.append(cls({k: v for k, v in raw.items() if k != "type"}))
            except ValueError as error:
                raise ValueError(f"decision '{decision.name}': plugins[{index}] ({kind}): "
                                 f"{error}") from None
        if chain:
            chains[decision.name] = tuple(chain)
    return chains


async def _before(router: Router, chain: Chain, plan: RoutePlan, body: dict[str, Any],
                  stream: bool) -> tuple[PluginContext, Blocked | None, Chain]:
    """Run the request hooks in chain order. Returns the context, the `Blocked` that stopped
    the chain (if any) and the plugins that ran before it."""
    # The outgoing body with the decision's own reasoning effort already in, so that plugins
    # see (and may translate) it; the plan then adds nothing more.
    outgoing = dict(plan.request_body(body))
    plan.reasoning_effort = None
    ctx = PluginContext(plan, outgoing, {}, stream, router)
    blocked = None
    ran = chain
    for index, plugin in enumerate(chain):
        blocked = plugin.on_request(ctx)
        if blocked is None and plugin.has_async_request:  # I/O-bound plugins (cache lookup)
            blocked = await plugin.on_request_async(ctx)
        if blocked is not None:
            ran = chain[:index]
            if blocked.response is None:  # a cache hit is not "blocked"
                ctx.headers[BLOCKED_HEADER] = blocked.reason
            break
    if ctx.headers:
        plan.response_headers = ctx.headers
    return ctx, blocked, ran


def _after(chain: Chain, ctx: PluginContext, response: dict[str, Any]) -> None:
    """Response hooks run in reverse chain order, like middleware: a plugin sees the answer as
    the plugins after it (nearer the backend) left it. So a cache listed after `pii_redact`
    stores the answer with placeholders, and a hit on it is restored for this request."""
    for plugin in reversed(chain):
        plugin.on_response(ctx, response)


def canned_completion(plan: RoutePlan, body: dict[str, Any], message: str) -> dict[str, Any]:
    return {"id": "chatcmpl-" + plan.request_id.removeprefix("req_"),
            "object": "chat.completion", "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": message}}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}


def _answer(plan: RoutePlan, body: dict[str, Any], blocked: Blocked, ctx: PluginContext,
            ran: Chain) -> dict[str, Any]:
    """The completion a plugin answers with: a replayed one (a cache hit, which the plugins
    before the cache see as a backend's answer) or the canned one."""
    if blocked.response is not None:
        response = dict(blocked.response)
        _after(ran, ctx, response)
        return response
    return canned_completion(plan, body, blocked.message)


def _status(blocked: Blocked) -> str:
    return "cache_hit" if blocked.response is not None else "blocked"


def _refuse(router: Router, plan: RoutePlan, blocked: Blocked, headers: dict[str, str],
            stream: bool) -> BlockedByPolicy:
    router.finish(plan, None, 0, 0, status="blocked", stream=stream)
    return BlockedByPolicy(blocked.message, headers=dict(headers))


async def complete_with_plugins(router: Router, chain: Chain, plan: RoutePlan,
                                body: dict[str, Any]) -> ChatResult:
    ctx, blocked, ran = await _before(router, chain, plan, body, stream=False)
    if blocked is not None:
        if blocked.status == "error":
            raise _refuse(router, plan, blocked, ctx.headers, stream=False)
        router.finish(plan, None, 0, 0, status=_status(blocked), stream=False)
        return ChatResult(plan, None, _answer(plan, body, blocked, ctx, ran))
    with upstream_header_edits(ctx.upstream_headers):
        result = await router.complete_plain(ctx.body, plan)
    _after(chain, ctx, result.response)
    return result


async def open_stream_with_plugins(router: Router, chain: Chain, plan: RoutePlan,
                                   body: dict[str, Any]) -> StreamRelay:
    ctx, blocked, ran = await _before(router, chain, plan, body, stream=True)
    if blocked is not None:
        if blocked.status == "error":
            raise _refuse(router, plan, blocked, ctx.headers, stream=True)
        response = _answer(plan, body, blocked, ctx, ran)
        if not wants_usage(body):
            response.pop("usage", None)
        return BlockedRelay(router, plan, completion_chunks(response), _status(blocked))
    with upstream_header_edits(ctx.upstream_headers):  # the request is sent on opening
        relay = await router.open_stream_plain(ctx.body, plan)
    factories = [f for p in chain if (f := p.stream_rewriter(ctx)) is not None]
    if factories:
        relay.rewrite = ContentRewrite(factories)
    # Plugins that want the text of a successful stream (the semantic cache fills on it).
    hooks = [p for p in chain if type(p).on_stream_complete is not Plugin.on_stream_complete]
    if hooks:
        def on_complete(done: StreamRelay) -> None:
            for plugin in hooks:
                plugin.on_stream_complete(ctx, done)

        relay.on_complete = on_complete
    return relay


class BlockedRelay(StreamRelay):
    """A canned answer streamed as OpenAI SSE chunks; no backend is involved."""

    def __init__(self, router: Router, plan: RoutePlan, chunks: list[bytes],
                 status: str = "blocked") -> None:
        self.router = router
        self.status = status
        self.plan = plan
        self.served = None  # type: ignore[assignment]
        self.chunks = chunks
        self._finished = False

    async def frames(self) -> AsyncIterator[bytes]:
        try:
            for chunk in self.chunks:
                yield sse(chunk)
            yield DONE
        finally:
            await self.finish()

    async def finish(self) -> None:
        if not self._finished:
            self._finished = True
            self.router.finish(self.plan, None, 0, 0, status=self.status, stream=True)


__all__ = ["BLOCKED_HEADER", "BlockedByPolicy", "BlockedRelay", "build_chains",
           "canned_completion", "complete_with_plugins", "open_stream_with_plugins"]
