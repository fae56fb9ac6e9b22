"""The plugin API: a Plugin is built from its config dict and hooks into one request.

- `on_request(ctx)` runs before any backend is called. It may edit `ctx.body` (the outgoing
  body, a copy: the client's request is untouched), add response headers to `ctx.headers`
  and set `ctx.upstream_headers` (headers sent to the backend); returning a `PluginAnswer`
  answers the request at once, without a backend (a block, or a cache hit).
- `on_response(ctx, response)` runs after a non-streaming completion and may edit the
  response dict in place. Response hooks run in reverse chain order (middleware style), and
  also on a cache hit's replayed answer, for the plugins listed before the cache.
- `stream_rewriter(ctx)` is its streaming counterpart for text: it may return a factory of
  `TextRewriter`s (`routeyard.plugins.rewrite`) that rewrite each choice's content deltas.
- `on_stream_complete(ctx, response)` sees a successful stream's answer, assembled as a
  one-choice completion from its upstream text.

Plugins of one decision run in their configured order; the first `PluginAnswer` stops the
chain.
"""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from routeyard.pool.providers.base import HeaderEdits

if TYPE_CHECKING:
    from routeyard.plugins.rewrite import RewriterFactory
    from routeyard.signals import RequestContext, SignalReport
    from routeyard.state import Store


@dataclass(slots=True, frozen=True)
class PluginBuild:
    """What a plugin is built with besides its options."""

    store: Store | None = None  # the Router's state store (a Redis-shared cache uses it)
    # The models whose capabilities.reasoning is true (step_effort's default `models`).
    reasoning_models: frozenset[str] | None = None


@dataclass(slots=True)
class PluginContext:
    """One request as its decision's plugins see it."""

    request_id: str
    decision: str
    model: str  # the planned model (failover may end elsewhere)
    request: RequestContext  # the client's request as the signals read it
    signals: SignalReport | None  # what the signals found (None: a model was named)
    body: dict[str, Any]  # the body to send upstream; plugins may edit it
    headers: dict[str, str]  # extra response headers
    stream: bool  # the client asked for a stream
    # Changes to the headers sent upstream (the `headers` plugin); None: none.
    upstream_headers: HeaderEdits | None = None
    # Per-request scratch space for plugins (keyed by plugin name): plugin instances are
    # shared by all requests, so what on_request learns for on_response goes here.
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class PluginAnswer:
    """A plugin answers the request itself, and no backend is called. `outcome` is what the
    decision log records: "blocked" (a policy: `message` as the answer, or with
    `status="error"` a 400) or "cache_hit" (`response`, a whole completion, replayed)."""

    outcome: Literal["blocked", "cache_hit"]
    message: str = ""
    status: Literal["ok", "error"] = "ok"
    reason: str = "policy"  # the x-routeyard-blocked header of a block
    response: dict[str, Any] | None = None

    @classmethod
    def block(cls, message: str, status: Literal["ok", "error"] = "ok",
              reason: str = "policy") -> PluginAnswer:
        return cls("blocked", message, status, reason)

    @classmethod
    def cached(cls, response: dict[str, Any]) -> PluginAnswer:
        return cls("cache_hit", reason="cache", response=response)


class Plugin(ABC):
    """Subclasses set `name` and `options` (the option keys they take) and parse their
    options in `__init__`, raising ValueError for a bad one."""

    name: ClassVar[str]
    options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, options: dict[str, Any], build: PluginBuild | None = None) -> None:
        unknown = set(options) - self.options
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(sorted(self.options)) or 'none'})")

    @property
    def span_name(self) -> str:
        """Its request hook's span, when tracing is on."""
        return f"routeyard.plugin.{self.name}"

    def on_request(self, ctx: PluginContext) -> PluginAnswer | None:
        return None

    def on_response(self, ctx: PluginContext, response: dict[str, Any]) -> None:
        return None

    # -- optional hooks for I/O-bound plugins (the semantic cache) --------------------------
    has_async_request: ClassVar[bool] = False  # set True to have on_request_async awaited

    async def on_request_async(self, ctx: PluginContext) -> PluginAnswer | None:
        """Awaited right after on_request (when it did not block)."""
        return None

    def stream_rewriter(self, ctx: PluginContext) -> RewriterFactory | None:
        """A factory of rewriters for this request's streamed content, or None."""
        return None

    def on_stream_complete(self, ctx: PluginContext, response: dict[str, Any]) -> None:
        """A stream ended successfully: `response` is its answer (choice 0's text and the
        usage), as a completion. Only called for plugins that override it."""
        return None


PLUGINS: dict[str, type[Plugin]] = {}


def register(cls: type[Plugin]) -> type[Plugin]:
    PLUGINS[cls.name] = cls
    return cls


def header_safe(value: Any, what: str) -> str:
    """A string usable as an HTTP header value (latin-1, no line breaks)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{what} must be latin-1 text (an HTTP header value)") from None
    if "\r" in value or "\n" in value:
        raise ValueError(f"{what} must not contain line breaks")
    return value
