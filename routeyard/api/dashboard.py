"""The live dashboard at /dashboard: its edge (auth and sessions), its page and its assets.

A browser cannot send a Bearer header on a page load, so the dashboard trades an admin key for
a session once: the login form POSTs the key to /dashboard/login, which answers with an
HttpOnly, SameSite=Strict cookie holding a random session token. The store's key-value space
maps the token's SHA-256 to the key *id* (never the secret), so every worker and replica knows
the session, and each request re-checks that key (revoked, deleted, lost its role: the session
ends). The cookie counts on the JSON calls only together with the `x-routeyard-dashboard`
header, which a cross-site form cannot send (a CSRF guard on top of SameSite). A Bearer admin
key works on every dashboard path as well, for scripts. docs/dashboard.md explains the design.

`DashboardEdge` wraps the app's `ClientAuth`: paths under /dashboard are answered here, the
rest go on unchanged. /dashboard/api/v1/... forwards to the query API's own handlers (the same
validation, the same 400s) once the session is checked; dashboard_data.py holds the
dashboard-only JSON endpoints.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from importlib import resources
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from routeyard.api import dashboard_data
from routeyard.api.admin import CALLER, role_for
from routeyard.api.body import read_json
from routeyard.api.errors import (
    handle_http_exception,
    handle_routeyard_error,
    handle_store_unavailable,
    handle_unexpected,
    style_for,
)
from routeyard.errors import Forbidden, InvalidRequest, NotFound, RouteyardError, Unauthorized
from routeyard.gateway import EDGE_CALLER, Caller
from routeyard.gateway.keys import INVALID, caller_of_record
from routeyard.router import Router
from routeyard.state import StoreUnavailable

PREFIX = "/dashboard"
API_V1 = "/dashboard/api/v1/"
COOKIE = "routeyard_dashboard"
CSRF_HEADER = "x-routeyard-dashboard"
SESSION_S = 8 * 3600.0
_SESSION_KEY = "dashboard:session:"  # + sha256 of the token, in the store's key-value space
# What the dashboard may read through /dashboard/api/v1/: the query API and the dry run.
_FORWARDED = {("GET", "decisions"), ("GET", "decisions/*"), ("GET", "stats"),
              ("POST", "route"), ("GET", "models")}
_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript",
                  ".mjs": "text/javascript", ".css": "text/css; charset=utf-8"}
# The page loads only its own files: no inline script, no other origin, no framing.
_PAGE_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
    "x-frame-options": "DENY", "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer", "cache-control": "no-store"}
_NO_STORE = {"cache-control": "no-store"}
JSON = "application/json"


def is_dashboard_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


# -- sessions --------------------------------------------------------------------------------


def _session_key(token: str) -> str:
    return _SESSION_KEY + hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def presented_key(request: Request) -> str | None:
    """A key sent as `Authorization: Bearer` or `x-api-key`, as the rest of the edge reads."""
    auth = request.headers.get("authorization")
    if auth is not None:
        return auth[7:] if auth[:7].lower() == "bearer " and auth[7:] else None
    return request.headers.get("x-api-key") or None


async def _require_keys(router: Router, path: str) -> None:
    keys = router.gateway.keys
    if not keys.required:
        await keys.refresh_required(force=True)
        if not keys.required:  # open server: as for /v1/decisions, the dashboard stays shut
            raise Unauthorized(f"{path} needs a key with the 'admin' role: set "
                               "server.admin_keys.")


async def _key_caller(router: Router, key_id: str) -> Caller:
    """The session's key as it stands now; a 401 when it is gone, revoked or expired."""
    keys = router.gateway.keys
    if key_id.startswith("static:"):
        for caller in keys.static_callers():
            if caller.key_id == key_id:
                return caller
        raise Unauthorized("The key of this dashboard session is no longer configured.",
                           code="session_ended")
    try:
        record = await router.gateway.admin.get_key(key_id)
    except NotFound:
        raise Unauthorized("The key of this dashboard session no longer exists.",
                           code="session_ended") from None
    if record.status() != "active":
        raise Unauthorized(f"The key of this dashboard session is {record.status()}.",
                           code="session_ended")
    return caller_of_record(record, await keys.tenant(record.tenant))


async def authorise(request: Request, *, csrf: bool) -> Caller:
    """The admin caller of a dashboard request: a Bearer key, or the session cookie (with the
    CSRF header when `csrf`). Raises Unauthorized (401) or Forbidden (403)."""
    router: Router = request.app.state.router
    path = request.url.path
    await _require_keys(router, path)
    role = role_for(path)
    token = presented_key(request)
    if token is not None:
        keys = router.gateway.keys
        caller = keys.cached(token) or await keys.resolve(token)
    else:
        session = request.cookies.get(COOKIE)
        if not session:
            raise Unauthorized(INVALID)
        if csrf and request.headers.get(CSRF_HEADER) != "1":
            raise Unauthorized(f"A dashboard session counts only with the '{CSRF_HEADER}: 1' "
                               "header.", code="csrf_header_missing")
        raw = await router.store.get_value(_session_key(session))
        found = orjson.loads(raw) if raw is not None else None
        if not isinstance(found, dict) or found.get("expires_at", 0) <= time.time():
            raise Unauthorized("The dashboard session has ended: log in again.",
                               code="session_ended")
        caller = await _key_caller(router, str(found["key_id"]))
    caller.require(role)
    return caller


def _refused(request: Request, error: RouteyardError) -> Response:
    request.app.state.router.accountant.rejected(error)
    return style_for(request.url.path).for_error(error)


# -- pages and assets ------------------------------------------------------------------------


def asset(name: str) -> bytes | None:
    """A shipped file of dashboard_assets/, or None (only the found ones are kept: a request
    for random names must not grow the cache)."""
    found = _ASSETS.get(name)
    if found is not None:
        return found
    if not name or ".." in name.split("/") or name.startswith("/") or "\\" in name \
            or "\x00" in name:
        return None
    path = resources.files("routeyard.api").joinpath("dashboard_assets", *name.split("/"))
    if not path.is_file():
        return None
    found = _ASSETS[name] = path.read_bytes()
    return found


_ASSETS: dict[str, bytes] = {}


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


async def page(request: Request) -> Response:
    """The dashboard; without a session, the login form (401) for a browser, else a 401 in
    OpenAI's schema, as the rest of the edge answers."""
    try:
        await authorise(request, csrf=False)  # a page load carries no custom header
    except RouteyardError as error:
        if not _wants_html(request):
            return _refused(request, error)
        request.app.state.router.accountant.rejected(error)
        return Response(asset("login.html"), status_code=error.status,
                        media_type=_CONTENT_TYPES[".html"], headers=_PAGE_HEADERS)
    return Response(asset("index.html"), media_type=_CONTENT_TYPES[".html"],
                    headers=_PAGE_HEADERS)


async def static(request: Request) -> Response:
    """The page's own scripts and styles and the vendored libraries: open, since they hold
    no data (the same files ship in every wheel); every answer with data needs the key."""
    name = request.path_params["name"]
    suffix = name[name.rfind("."):] if "." in name else ""
    body = asset(name) if suffix in _CONTENT_TYPES and suffix != ".html" else None
    if body is None:
        raise NotFound(f"no dashboard asset {name!r}", param="name")
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    headers = {"etag": etag, "cache-control": "no-cache", "x-content-type-options": "nosniff"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=_CONTENT_TYPES[suffix], headers=headers)


async def login(request: Request) -> Response:
    """POST {"key": "..."} with the CSRF header: a session cookie for an admin key."""
    if request.headers.get(CSRF_HEADER) != "1":
        raise Forbidden(f"Log in from the dashboard page (the '{CSRF_HEADER}: 1' header is "
                        "missing).", code="csrf_header_missing")
    router: Router = request.app.state.router
    data = await read_json(request)
    key = data.get("key") if isinstance(data, dict) else None
    if not isinstance(data, dict) or set(data) - {"key"}:
        raise InvalidRequest('the body must be {"key": "<an admin key>"}', param="key")
    if not isinstance(key, str) or not key:
        raise Unauthorized(INVALID)
    await _require_keys(router, request.url.path)
    keys = router.gateway.keys
    caller = keys.cached(key) or await keys.resolve(key)
    caller.require("admin")
    token = secrets.token_urlsafe(32)
    expires_at = time.time() + SESSION_S
    await router.store.set_value(_session_key(token), orjson.dumps(
        {"key_id": caller.key_id, "expires_at": expires_at}), ttl_s=SESSION_S)
    response = Response(orjson.dumps({"object": "routeyard.dashboard.session",
                                      "key_id": caller.key_id, "expires_at": expires_at}),
                        media_type=JSON, headers=_NO_STORE)
    response.set_cookie(COOKIE, token, max_age=int(SESSION_S), path=PREFIX, httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
    return response


async def logout(request: Request) -> Response:
    if request.headers.get(CSRF_HEADER) != "1":
        raise Forbidden(f"The '{CSRF_HEADER}: 1' header is missing.",
                        code="csrf_header_missing")
    session = request.cookies.get(COOKIE)
    if session:
        await request.app.state.router.store.delete_value(_session_key(session))
    response = Response(b'{"object":"routeyard.dashboard.session","deleted":true}',
                        media_type=JSON, headers=_NO_STORE)
    response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response


async def session(request: Request) -> Response:
    caller = await authorise(request, csrf=True)
    return Response(orjson.dumps({"object": "routeyard.dashboard.session",
                                  "key_id": caller.key_id, "tenant": caller.tenant,
                                  "roles": list(caller.roles)}),
                    media_type=JSON, headers=_NO_STORE)


def _guarded(handler: Any) -> Any:
    """A dashboard_data endpoint behind `authorise` (cookie with CSRF header, or Bearer)."""
    async def endpoint(request: Request) -> Response:
        await authorise(request, csrf=True)
        response: Response = await handler(request)
        response.headers["cache-control"] = "no-store"
        return response
    return endpoint


ROUTES: list[BaseRoute] = [
    Route(PREFIX, page, methods=["GET"]),
    Route(PREFIX + "/", page, methods=["GET"]),
    Route(PREFIX + "/static/{name:path}", static, methods=["GET"]),
    Route(PREFIX + "/login", login, methods=["POST"]),
    Route(PREFIX + "/logout", logout, methods=["POST"]),
    Route(PREFIX + "/api/session", session, methods=["GET"]),
    *[Route(PREFIX + "/api/" + name, _guarded(handler), methods=["GET"])
      for name, handler in dashboard_data.ENDPOINTS.items()],
]


# -- the edge ------------------------------------------------------------------------------------


class DashboardEdge:
    """Wraps the edge (`ClientAuth`): /dashboard paths are answered here, everything else goes
    on. `.app` and `.state` are the inner Starlette app's, as on `ClientAuth`."""

    def __init__(self, edge: Any) -> None:
        self.edge: ASGIApp = edge
        self.app: Starlette = edge.app
        self.state = self.app.state
        self.pages = Starlette(routes=ROUTES, exception_handlers={  # type: ignore[dict-item]
            RouteyardError: handle_routeyard_error, StoreUnavailable: handle_store_unavailable,
            HTTPException: handle_http_exception, Exception: handle_unexpected})
        self.pages.state = self.state  # one router, the reloaded one included

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_dashboard_path(scope["path"]):
            await self.edge(scope, receive, send)
        elif scope["path"].startswith(API_V1):
            await self._forward(scope, receive, send)
        else:
            await self.pages(scope, receive, send)

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        """/dashboard/api/v1/X → the app's /v1/X, as the session's caller, without the cookie
        (no handler below sees the session token)."""
        scope = {**scope, "app": self.app}
        request = Request(scope, receive)
        rest = scope["path"][len(API_V1):]
        shape = "decisions/*" if rest.startswith("decisions/") and rest.count("/") == 1 \
            else rest
        try:
            if (scope["method"], shape) not in _FORWARDED:
                raise NotFound(f"no dashboard path {scope['path']}")
            caller = await authorise(request, csrf=True)
        except RouteyardError as error:
            await _refused(request, error)(scope, receive, send)
            return
        except StoreUnavailable:
            await style_for("/v1").response(
                503, "The state store is unavailable; try again shortly.",
                code="store_unavailable", headers={"retry-after": "1"})(scope, receive, send)
            return
        path = "/v1/" + rest
        inner = {**scope, "path": path, "raw_path": path.encode(), CALLER: caller,
                 "headers": [(name, value) for name, value in scope["headers"]
                             if name not in (b"cookie", b"authorization", b"x-api-key")]}
        token = EDGE_CALLER.set(caller)
        try:
            await self.app(inner, receive, send)
        finally:
            EDGE_CALLER.reset(token)
