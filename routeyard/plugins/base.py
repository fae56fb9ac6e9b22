"""The plugin API: a Plugin is built from its config dict and hooks into one request.

- `on_request(ctx)` runs before any backend is called. It may edit `ctx.body` (the outgoing
  body, a copy: the client's request is untouched), add response headers to `ctx.headers`
  and set `ctx.upstream_headers` (headers sent to the backend); returning a `Blocked`
  answers the request at once, without a backend.
- `on_response(ctx, response)` runs after a non-streaming completion and may edit the
  response dict in place. Response hooks run in reverse chain order (middleware style), and
  also on a cache hit's replayed answer, for the plugins listed before the cache.
- `stream_rewriter(ctx)` is its streaming counterpart for text: it may return a factory of
  `TextRewriter`s (`routeyard.plugins.rewrite`) that rewrite each choice's content deltas.
- `on_stream_complete(ctx, relay)` sees a successful stream's whole upstream text.

Plugins of one decision run in their configured order; the first `Blocked` stops the chain.
"""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from routeyard.pool.providers.base import HeaderEdits

if TYPE_CHECKING:
    from routeyard.planner import RoutePlan
    from routeyard.plugins.rewrite import RewriterFactory
    from routeyard.router import Router
    from routeyard.streaming import StreamRelay


@dataclass(slots=True)
class PluginContext:
    plan: RoutePlan
    body: dict[str, Any]  # the body to send upstream; plugins may edit it
    headers: dict[str, str]  # extra response headers
    stream: bool  # the client asked for a stream
    router: Router | None = None  # semantic cache hook: the Router (for its Redis store)
    # Changes to the headers sent upstream (the `headers` plugin); None: none.
    upstream_headers: HeaderEdits | None = None
    # Per-request scratch space for plugins (keyed by plugin name): plugin instances are
    # shared by all requests, so what on_request learns for on_response goes here.
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class Blocked:
    """Answer without a backend: a normal completion ("ok") or a 400 error ("error")."""

    message: str
    status: Literal["ok", "error"] = "ok"
    reason: str = "policy"
    # A whole completion to replay instead of `message` (a cache hit: no blocked header,
    # logged with status "cache_hit").
    response: dict[str, Any] | None = None


class Plugin(ABC):
    """Subclasses set `name` and `options` (the option keys they take) and parse their
    options in `__init__`, raising ValueError for a bad one."""

    name: ClassVar[str]
    options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, options: dict[str, Any]) -> None:
        unknown = set(options) - self.options
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(sorted(self.options)) or 'none'})")

    def on_request(self, ctx: PluginContext) -> Blocked | None:
        return None

    def on_response(self, ctx: PluginContext, response: dict[str, Any]) -> None:
        return None

    # -- optional hooks for I/O-bound plugins (the semantic cache) --------------------------
    has_async_request: ClassVar[bool] = False  # set True to have on_request_async awaited

    async def on_request_async(self, ctx: PluginContext) -> Blocked | None:
        """Awaited right after on_request (when it did not block)."""
        return None

    def stream_rewriter(self, ctx: PluginContext) -> RewriterFactory | None:
        """A factory of rewriters for this request's streamed content, or None."""
        return None

    def on_stream_complete(self, ctx: PluginContext, relay: StreamRelay) -> None:
        """A stream ended successfully (the relay holds its text and usage); only called for
        plugins that override it."""
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
