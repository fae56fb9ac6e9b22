"""The admin API: /admin/keys, /admin/tenants, /admin/spend, /admin/decisions, /admin/audit.

Every path here needs a key; `ROLE_BY_PATH` says which role (the edge checks it before a
handler runs, with the same `Caller.require` any later path can reuse). Bodies are validated
strictly (unknown fields and wrong types are 400s, with the field's location in `param`);
errors use OpenAI's schema. A full key appears in exactly two answers, the one that creates it
and the one that rotates it, each marked `cache-control: no-store`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from routeyard.api.body import read_json
from routeyard.config.loader import format_location
from routeyard.errors import InvalidRequest, NotFound
from routeyard.gateway import ROLES, Caller
from routeyard.gateway.admin import KeyAdmin
from routeyard.gateway.records import (
    KeyCreate,
    KeyRotate,
    KeyUpdate,
    TenantCreate,
    TenantUpdate,
)
from routeyard.router import Router
from routeyard.state.record import to_json

JSON = "application/json"
CALLER = "routeyard.caller"  # the scope key the edge puts the resolved caller under
# The role each protected path needs (the longest matching prefix wins); any other /admin
# path needs `admin`, and any other path `user`. A viewer reads spend and the decision log
# (/admin/decisions and the query API, /v1/decisions and /v1/stats), and manages nothing.
# The dashboard (api/dashboard.py) shows the config and runs dry runs too: admin only.
ROLE_BY_PATH: dict[str, str] = {"/admin": "admin", "/admin/spend": "viewer",
                                "/admin/decisions": "viewer", "/v1/decisions": "viewer",
                                "/v1/stats": "viewer", "/dashboard": "admin"}
_STATUSES = ("active", "revoked", "expired")
_SECRET_HEADERS = {"cache-control": "no-store"}

Body = TypeVar("Body", bound=BaseModel)


def role_for(path: str) -> str:
    """The role a path needs."""
    found = [prefix for prefix in ROLE_BY_PATH
             if path == prefix or path.startswith(prefix + "/")]
    if found:
        return ROLE_BY_PATH[max(found, key=len)]
    return "admin" if path.startswith("/admin") else "user"


# -- helpers -----------------------------------------------------------------------------------


def _admin(request: Request) -> KeyAdmin:
    router: Router = request.app.state.router
    return router.gateway.admin


def _caller(request: Request) -> Caller:
    caller: Caller = request.scope[CALLER]
    return caller


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # to_json: decision records from a memory store keep their detail's objects (numpy).
    return Response(to_json(data), status_code=status, media_type=JSON, headers=headers)


async def _body(request: Request, model: type[Body], *, optional: bool = False) -> Body:
    """The JSON body, validated strictly: `"5"` is not a number, `rmp` not a field."""
    empty = request.headers.get("content-length", "0") == "0" \
        and "transfer-encoding" not in request.headers
    data = {} if optional and empty else await read_json(request)
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object")
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as error:
        first = error.errors()[0]
        param = format_location(tuple(first["loc"])) or None
        message = f"{param}: {first['msg']}" if param else str(first["msg"])
        if error.error_count() > 1:
            message += f" (and {error.error_count() - 1} more problem(s))"
        raise InvalidRequest(message, param=param) from None


def _query(request: Request, name: str, choices: tuple[str, ...] | None = None) -> str | None:
    value = request.query_params.get(name)
    if value is not None and choices is not None and value not in choices:
        raise InvalidRequest(f"{name} must be one of {', '.join(choices)}", param=name)
    return value


def _limit(request: Request, default: int = 100) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise InvalidRequest("limit must be an integer from 1 to 1000", param="limit")
    return int(raw)


def _listing(data: list[dict[str, Any]]) -> Response:
    return _json({"object": "list", "data": data})


# -- keys ----------------------------------------------------------------------------------------


async def create_key(request: Request) -> Response:
    record, full = await _admin(request).create_key(await _body(request, KeyCreate),
                                                    _caller(request))
    # The only answer that ever holds the full key (and rotate's, for a new secret).
    return _json({**record.public(), "key": full}, 201, _SECRET_HEADERS)


async def list_keys(request: Request) -> Response:
    records = await _admin(request).list_keys(
        tenant=_query(request, "tenant"), status=_query(request, "status", _STATUSES),
        role=_query(request, "role", ROLES), limit=_limit(request))
    return _listing([record.public() for record in records])


async def get_key(request: Request) -> Response:
    return _json((await _admin(request).get_key(request.path_params["key"])).public())


async def update_key(request: Request) -> Response:
    record = await _admin(request).update_key(request.path_params["key"],
                                              await _body(request, KeyUpdate), _caller(request))
    return _json(record.public())


async def rotate_key(request: Request) -> Response:
    body = await _body(request, KeyRotate, optional=True)
    record, full = await _admin(request).rotate_key(request.path_params["key"], body,
                                                    _caller(request))
    return _json({**record.public(), "key": full}, headers=_SECRET_HEADERS)


async def revoke_key(request: Request) -> Response:
    record = await _admin(request).revoke_key(request.path_params["key"], _caller(request))
    return _json(record.public())


async def delete_key(request: Request) -> Response:
    record = await _admin(request).delete_key(request.path_params["key"], _caller(request))
    return _json({"id": record.prefix, "object": "routeyard.key", "deleted": True})


# -- tenants -------------------------------------------------------------------------------------


async def create_tenant(request: Request) -> Response:
    record = await _admin(request).create_tenant(await _body(request, TenantCreate),
                                                 _caller(request))
    return _json(record.public(), 201)


async def list_tenants(request: Request) -> Response:
    records = await _admin(request).list_tenants(_limit(request))
    return _listing([record.public() for record in records])


async def get_tenant(request: Request) -> Response:
    return _json((await _admin(request).get_tenant(request.path_params["tenant"])).public())


async def update_tenant(request: Request) -> Response:
    record = await _admin(request).update_tenant(
        request.path_params["tenant"], await _body(request, TenantUpdate), _caller(request))
    return _json(record.public())


async def delete_tenant(request: Request) -> Response:
    record = await _admin(request).delete_tenant(request.path_params["tenant"],
                                                 _caller(request))
    return _json({"id": record.id, "object": "routeyard.tenant", "deleted": True})


# -- spend and audit -----------------------------------------------------------------------------


async def spend(request: Request) -> Response:
    report = await _admin(request).spend(
        period=_query(request, "period", ("day", "month", "total")) or "month",
        at=_query(request, "at"), key=_query(request, "key"), tenant=_query(request, "tenant"))
    return _json(report)


async def decisions(request: Request) -> Response:
    """The newest decision records, newest first (the query API of the decision log is
    /v1/decisions, in docs/api.md; this is the gateway's read of it)."""
    store = request.app.state.router.store
    found = await store.recent_decisions(_limit(request))
    return _listing([record.to_dict() for record in found])


async def decision(request: Request) -> Response:
    request_id = request.path_params["request_id"]
    found = await request.app.state.router.store.get_decision(request_id)
    if found is None:
        raise NotFound(f"no decision record {request_id!r}")
    return _json(found.to_dict())


async def audit(request: Request) -> Response:
    entries = await _admin(request).audit.read(
        limit=_limit(request), action=_query(request, "action"),
        target=_query(request, "target"))
    return _listing(entries)


ROUTES: list[BaseRoute] = [
    Route("/admin/keys", create_key, methods=["POST"]),
    Route("/admin/keys", list_keys, methods=["GET"]),
    Route("/admin/keys/{key}", get_key, methods=["GET"]),
    Route("/admin/keys/{key}", update_key, methods=["PATCH"]),
    Route("/admin/keys/{key}", delete_key, methods=["DELETE"]),
    Route("/admin/keys/{key}/rotate", rotate_key, methods=["POST"]),
    Route("/admin/keys/{key}/revoke", revoke_key, methods=["POST"]),
    Route("/admin/tenants", create_tenant, methods=["POST"]),
    Route("/admin/tenants", list_tenants, methods=["GET"]),
    Route("/admin/tenants/{tenant}", get_tenant, methods=["GET"]),
    Route("/admin/tenants/{tenant}", update_tenant, methods=["PATCH"]),
    Route("/admin/tenants/{tenant}", delete_tenant, methods=["DELETE"]),
    Route("/admin/spend", spend, methods=["GET"]),
    Route("/admin/decisions", decisions, methods=["GET"]),
    Route("/admin/decisions/{request_id}", decision, methods=["GET"]),
    Route("/admin/audit", audit, methods=["GET"]),
]
