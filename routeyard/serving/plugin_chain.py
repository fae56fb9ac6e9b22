"""A decision's plugins, run around the handler inside them, the way middleware wraps an app.

Request hooks run in chain order and may answer at once (a block, a cache hit); response hooks
run in reverse order, so a plugin sees the answer as the plugins after it (nearer the backend)
left it. Streams get the plugins' text rewriters and completion hooks through `StreamHooks`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from routeyard import tracing
from routeyard.decisions import Decision
from routeyard.plugins.base import PLUGINS, Plugin, PluginAnswer, PluginBuild, PluginContext
from routeyard.plugins.cache_plugin import CACHE_HEADER
from routeyard.pool.providers.base import upstream_header_edits
from routeyard.serving.accounting import Accountant
from routeyard.serving.handler import Answer, BlockedByPolicy, Handler
from routeyard.serving.planner import RoutePlan
from routeyard.serving.relay import NO_HOOKS, ReplayStream, StreamHooks, StreamRelay
from routeyard.serving.request import wants_usage
from routeyard.wire import WithNative, completion, completion_chunks, completion_text

BLOCKED_HEADER = "x-routeyard-blocked"

Chain = tuple[Plugin, ...]


def build_plugins(decisions: Iterable[Decision], build: PluginBuild) -> dict[str, Chain]:
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
                chain.append(cls({k: v for k, v in raw.items() if k != "type"}, build))
            except ValueError as error:
                raise ValueError(f"decision '{decision.name}': plugins[{index}] ({kind}): "
                                 f"{error}") from None
        if chain:
            chains[decision.name] = tuple(chain)
    return chains


class PluginChain(Handler):
    def __init__(self, plugins: Chain, inner: Handler, accountant: Accountant) -> None:
        self.plugins = plugins
        self.inner = inner
        self.accountant = accountant
        # Plugins that want the answer of a successful stream (the semantic cache fills).
        self._stream_watchers = tuple(
            p for p in plugins if type(p).on_stream_complete is not Plugin.on_stream_complete)

    async def complete(self, plan: RoutePlan, body: dict[str, Any]) -> Answer:
        ctx, stopped, ran, inner_plan = await self._before(plan, body, stream=False)
        if stopped is not None:
            response = self._answer_for(plan, body, stopped, ctx, ran)
            return Answer(plan, None, response, status=stopped.outcome, headers=ctx.headers)
        with upstream_header_edits(ctx.upstream_headers):
            answer = await self.inner.complete(inner_plan, ctx.body)
        if self.accountant.log_content:  # the answer as the backend gave it (still redacted)
            plan.answer_text = completion_text(answer.response)
        _after(self.plugins, ctx, answer.response)
        return dataclasses.replace(answer, plan=plan,
                                   headers={**ctx.headers, **answer.headers})

    async def open_stream(self, plan: RoutePlan, body: dict[str, Any],
                          hooks: StreamHooks = NO_HOOKS) -> StreamRelay:
        ctx, stopped, ran, inner_plan = await self._before(plan, body, stream=True)
        if stopped is not None:
            response = self._answer_for(plan, body, stopped, ctx, ran)
            return StreamRelay(plan, ReplayStream(completion_chunks(response)), self.accountant,
                               client_wants_usage=wants_usage(body), hooks=hooks,
                               status=stopped.outcome, headers=ctx.headers)
        rewriters = tuple(f for p in self.plugins if (f := p.stream_rewriter(ctx)) is not None)
        watchers = tuple(_completion_hook(p, ctx) for p in self._stream_watchers)
        ours = StreamHooks(hooks.rewriters + rewriters, hooks.on_complete + watchers,
                           {**hooks.headers, **ctx.headers})
        with upstream_header_edits(ctx.upstream_headers):  # the request is sent on opening
            return await self.inner.open_stream(inner_plan, ctx.body, ours)

    async def _before(self, plan: RoutePlan, body: dict[str, Any], *, stream: bool
                      ) -> tuple[PluginContext, PluginAnswer | None, Chain, RoutePlan]:
        """Run the request hooks in chain order. Returns the context, the `PluginAnswer` that
        stopped the chain (if any), the plugins that ran before it, and the plan to hand on."""
        # The outgoing body with the decision's own reasoning effort already in, so that
        # plugins see (and may translate) it; the plan handed on then adds nothing more.
        outgoing = dict(plan.request_body(body))
        ctx = PluginContext(plan.request_id, plan.decision, plan.model, plan.context,
                            plan.signals, outgoing, {}, stream)
        stopped = None
        ran = self.plugins
        for index, plugin in enumerate(self.plugins):
            with tracing.span(plugin.span_name) as span:
                stopped = plugin.on_request(ctx)
                if stopped is None and plugin.has_async_request:  # I/O-bound (a cache lookup)
                    stopped = await plugin.on_request_async(ctx)
                if span is not None and stopped is not None:
                    tracing.set_attributes(span, {"routeyard.plugin.outcome": stopped.outcome})
            if stopped is not None:
                ran = self.plugins[:index]
                if stopped.outcome == "blocked":
                    ctx.headers[BLOCKED_HEADER] = stopped.reason
                break
        # For the decision log: which plugins' request hooks ran, and the cache's status.
        plan.plugins = [p.name for p in self.plugins[:len(ran) + 1]]
        plan.cache = ctx.headers.get(CACHE_HEADER)
        if self.accountant.log_content:
            plan.sent = ctx.body.get("messages")
        if stopped is not None and stopped.status == "error":
            raise BlockedByPolicy(stopped.message, headers=dict(ctx.headers))
        if isinstance(body, WithNative) and ctx.body == body:
            # No plugin edited the request: its native form still says the same, so it may
            # still be sent as the client wrote it.
            ctx.body = body
        inner_plan = (dataclasses.replace(plan, reasoning_effort=None)
                      if plan.reasoning_effort is not None else plan)
        return ctx, stopped, ran, inner_plan

    @staticmethod
    def _answer_for(plan: RoutePlan, body: dict[str, Any], stopped: PluginAnswer,
                    ctx: PluginContext, ran: Chain) -> dict[str, Any]:
        """The completion a plugin answers with: a replayed one (a cache hit, which the
        plugins before the cache see as a backend's answer) or the canned one."""
        if stopped.response is not None:
            response = dict(stopped.response)
            _after(ran, ctx, response)
            return response
        return completion("chatcmpl-" + plan.request_id.removeprefix("req_"), body["model"],
                          {"role": "assistant", "content": stopped.message})


def _after(chain: Chain, ctx: PluginContext, response: dict[str, Any]) -> None:
    """Response hooks in reverse chain order: a cache listed after `pii_redact` stores the
    answer with placeholders, and a hit on it is restored for this request."""
    for plugin in reversed(chain):
        plugin.on_response(ctx, response)


def _completion_hook(plugin: Plugin, ctx: PluginContext) -> Callable[[dict[str, Any]], None]:
    def hook(response: dict[str, Any]) -> None:
        plugin.on_stream_complete(ctx, response)

    return hook


