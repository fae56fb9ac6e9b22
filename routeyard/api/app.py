"""The ASGI application: routes, error handlers, auth and lifecycle around one Router."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from routeyard.api import (
    admin,
    chat,
    completions,
    dashboard,
    decisions,
    embeddings,
    messages,
    openapi,
    responses,
)
from routeyard.api.admin import CALLER, role_for
from routeyard.api.chat import chat_completions
from routeyard.api.drain import Drain
from routeyard.api.errors import (
    handle_http_exception,
    handle_routeyard_error,
    handle_store_unavailable,
    handle_unexpected,
    style_for,
)
from routeyard.errors import RouteyardError, Unauthorized
from routeyard.gateway import EDGE_CALLER
from routeyard.gateway.keys import INVALID
from routeyard.metrics import CONTENT_TYPE
from routeyard.reload import ConfigReloader
from routeyard.router import Router
from routeyard.state import StoreUnavailable

_JSON = "application/json"
_OPEN_PATHS = frozenset({"/", "/healthz", "/readyz", "/metrics"})


async def list_models(request: Request) -> Response:
    """Aliases, then `model_routes` patterns, then models, each with the surfaces it serves:
    a chat model every chat-shaped surface, an embedding model /v1/embeddings, and a routed
    name both (embeddings go to the embedding models, when there are any)."""
    router: Router = request.app.state.router
    config = router.config
    chat_surfaces = ["chat.completions", "messages", "responses", "completions"]
    surfaces_of = {"chat": chat_surfaces, "embedding": ["embeddings"]}
    routed = chat_surfaces + (["embeddings"] if any(m.kind == "embedding"
                                                    for m in config.models) else [])

    def entry(name: str, about: dict[str, object]) -> dict[str, object]:
        return {"id": name, "object": "model", "created": 0, "owned_by": "routeyard",
                "routeyard": about}

    data = [entry(alias, {"kind": "alias", "surfaces": routed})
            for alias in sorted(router.aliases)]
    data += [entry(route.match, {"kind": "model_route", "decision": route.decision,
                                 "surfaces": routed}) for route in config.model_routes]
    data += [entry(model.name, {
        "kind": "model", "model_kind": model.kind, "surfaces": surfaces_of[model.kind],
        "context_window": model.context_window, "pricing": model.pricing.model_dump(),
        "capabilities": model.capabilities.model_dump()}) for model in config.models]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type=_JSON)


async def root(_: Request) -> Response:
    """`GET` or `HEAD /`: some clients (Claude Code) probe the base URL before they start."""
    return Response(b'{"service":"routeyard","status":"ok"}', media_type=_JSON)


async def healthz(_: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type=_JSON)


async def readyz(request: Request) -> Response:
    """Ready when some endpoint can take traffic and the server is not draining. A store outage
    only degrades (requests still succeed and the decision log buffers), so it must not pull
    every replica out of rotation."""
    router: Router = request.app.state.router
    if request.app.state.drain.draining:
        return Response(b'{"status":"draining"}', status_code=503, media_type=_JSON)
    available = sum(1 for e in router.pool.endpoints() if e.is_available())
    store_ok = await router.store.ping()
    status = ("ready" if store_ok else "degraded") if available else "not_ready"
    body = {"status": status, "available_endpoints": available,
            "store": router.store.name, "store_ok": store_ok}
    return Response(orjson.dumps(body), status_code=200 if available else 503, media_type=_JSON)


async def metrics(request: Request) -> Response:
    router: Router = request.app.state.router
    for endpoint in router.pool.endpoints():
        router.metrics.endpoint_up.labels(endpoint.model, endpoint.name).set(
            1 if endpoint.is_available() else 0)
    return Response(router.metrics.render(), media_type=CONTENT_TYPE)


# Error handlers by exception type, most specific first (looked up along the MRO).
_ERROR_HANDLERS: dict[type[BaseException], Callable[[Request, Exception], Awaitable[Response]]] = {
    RouteyardError: handle_routeyard_error,
    StoreUnavailable: handle_store_unavailable,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}


class ClientAuth:
    """The outermost ASGI callable. It resolves the request's key through the gateway of the
    current Router (so a reload that changes the config's keys takes effect at once) and
    checks the role the path needs, and sends `POST /v1/chat/completions`, the hot path,
    straight to its handler: that skips Starlette's routing and middleware layers, ~10% of a
    request's CPU at 0 ms backends, with the same error handlers."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path not in _OPEN_PATHS:
                refusal = await self._authorise(scope, path)
                if refusal is not None:
                    await refusal(scope, receive, send)
                    return
            # The Router counts the request against this caller without resolving it again.
            token = EDGE_CALLER.set(scope.get(CALLER))
            try:
                if path == "/v1/chat/completions" and scope["method"] == "POST":
                    await self._chat(scope, receive, send)
                else:
                    await self.app(scope, receive, send)
            finally:
                EDGE_CALLER.reset(token)
            return
        await self.app(scope, receive, send)

    async def _authorise(self, scope: Scope, path: str) -> Response | None:
        """None when the request may go on (its caller under scope[CALLER]), else the
        answer that refuses it, in the path's error schema."""
        router: Router = self.state.router
        keys = router.gateway.keys
        role = role_for(path)
        try:
            if not keys.required:
                await keys.refresh_required(force=role != "user")
                if not keys.required:  # no key anywhere: open, as without a gateway
                    if role == "user":
                        return None
                    raise Unauthorized(
                        "The admin API needs an admin key: set server.admin_keys."
                        if path.startswith("/admin") else f"{path} needs a key with the "
                        f"'{role}' role: set server.admin_keys.")
            token = bearer_token(scope["headers"])
            if token is None:
                raise Unauthorized(INVALID)
            caller = keys.cached(token) or await keys.resolve(token)
            caller.require(role)
        except RouteyardError as error:
            router.accountant.rejected(error)
            return style_for(path).for_error(error)
        except StoreUnavailable:
            return style_for(path).response(
                503, "The state store is unavailable; try again shortly.",
                code="store_unavailable", headers={"retry-after": "1"})
        scope[CALLER] = caller
        return None

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self.app  # what Starlette would set: handlers read app.state
        request = Request(scope, receive)
        try:
            response = await chat_completions(request)
        except Exception as exc:
            handler = next(_ERROR_HANDLERS[kind] for kind in type(exc).__mro__
                           if kind in _ERROR_HANDLERS)
            response = await handler(request, exc)
        await response(scope, receive, send)


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key a request presents: `Authorization: Bearer` (OpenAI's SDK) or, without an
    Authorization header, `x-api-key` (Anthropic's), as `request_headers` reads them."""
    api_key = None
    for name, value in headers:
        if name == b"authorization":
            auth = value.decode("latin-1")
            return auth[7:] if auth[:7].lower() == "bearer " and auth[7:] else None
        if name == b"x-api-key":
            api_key = value.decode("latin-1")
    return api_key or None


def create_app(router: Router, *, mounts: dict[str, ASGIApp] | None = None,
               config_path: str | None = None) -> ASGIApp:
    """The app around one Router; with `config_path`, reloaded on SIGHUP or file change."""
    server = router.config.server
    drain = Drain(server.shutdown_grace_s, server.drain_delay_s)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await router.start()
        drain.install()
        reloader = None
        if config_path is not None:
            reloader = ConfigReloader(app.state, config_path,
                                      poll_s=router.config.server.watch_config_s)
            reloader.start()
        app.state.reloader = reloader
        try:
            yield
        finally:
            drain.uninstall()
            if reloader is not None:
                await reloader.stop()
            current: Router = app.state.router
            current.owns_store = True
            await current.close()
            if current is not router:
                await router.close()

    routes: list[BaseRoute] = [
        *chat.ROUTES, *messages.ROUTES, *responses.ROUTES, *embeddings.ROUTES,
        *completions.ROUTES, *admin.ROUTES, *decisions.ROUTES, *openapi.ROUTES,
        Route("/", root, methods=["GET", "HEAD"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    routes += [Mount(path, app=app) for path, app in (mounts or {}).items()]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers=dict(_ERROR_HANDLERS),  # type: ignore[arg-type]
    )
    app.state.router = router
    app.state.drain = drain
    app.state.max_body_bytes = router.config.server.max_body_bytes
    # /dashboard sits in front of the edge: it also takes its own session cookie.
    return dashboard.DashboardEdge(ClientAuth(app))
