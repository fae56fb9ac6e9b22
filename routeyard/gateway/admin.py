"""Managing keys and tenants: the operations behind /admin, each written to the audit log.

Records are read, changed and written back whole (an admin action is rare; two admins editing
one key at the same instant: the last write wins). A change made here is seen by this replica
at once and by the others within `gateway.key_cache_s`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from routeyard.config.schema import BudgetConfig
from routeyard.errors import Conflict, InvalidRequest, NotFound
from routeyard.gateway.audit import AuditLog
from routeyard.gateway.callers import Caller
from routeyard.gateway.keys import KeyRing
from routeyard.gateway.limiter import Limiter
from routeyard.gateway.records import (
    DEFAULT_TENANT,
    HAS_KEYS,
    KEY_RECORD,
    TENANT_RECORD,
    KeyCreate,
    KeyRecord,
    KeyRotate,
    KeyUpdate,
    SecretHash,
    TenantCreate,
    TenantRecord,
    TenantUpdate,
    digest,
    key_id_from_path,
    new_key,
    new_secret,
)
from routeyard.selection.ledger import PERIODS, period_id
from routeyard.state import Store

MAX_LISTED = 10_000  # records a listing reads at most
Stored = TypeVar("Stored", KeyRecord, TenantRecord)


class KeyAdmin:
    def __init__(self, store: Store, keys: KeyRing, limiter: Limiter,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.keys = keys
        self.limiter = limiter
        self.clock = clock
        self.audit = AuditLog(store, clock)

    # -- keys --------------------------------------------------------------------------------

    async def create_key(self, body: KeyCreate, actor: Caller) -> tuple[KeyRecord, str]:
        """A new key; the full key is returned here and never again."""
        await self._check_tenant(body.tenant)
        now = self.clock()
        key_id, full = new_key()
        while await self.store.get_value(KEY_RECORD + key_id) is not None:  # 48 bits: rare
            key_id, full = new_key()
        record = KeyRecord(
            id=key_id, name=body.name, tenant=body.tenant, roles=body.roles,
            models=body.models, decisions=body.decisions, limits=body.limits,
            metadata=body.metadata, hashes=[SecretHash(sha256=digest(full).hex())],
            created_at=now, updated_at=now, created_by=actor.key_id,
            expires_at=body.expiry(now))
        await self._save_key(record)
        await self.store.set_value(HAS_KEYS, b"1")
        self.keys.note_created()
        await self.audit.write(actor, "key.create", _key_target(record), {
            "key": _visible(record)})
        return record, full

    async def list_keys(self, *, tenant: str | None = None, status: str | None = None,
                        role: str | None = None, limit: int = 100) -> list[KeyRecord]:
        now = self.clock()
        found = []
        for _, raw in await self.store.scan_values(KEY_RECORD, MAX_LISTED):
            record = _parse_key(raw)
            if record is None or (tenant is not None and record.tenant != tenant) \
                    or (status is not None and record.status(now) != status) \
                    or (role is not None and role not in record.roles):
                continue
            found.append(record)
        found.sort(key=lambda r: r.created_at, reverse=True)  # newest first
        return found[:limit]

    async def get_key(self, key: str) -> KeyRecord:
        key_id = key_id_from_path(key)
        raw = await self.store.get_value(KEY_RECORD + key_id) if key_id else None
        record = _parse_key(raw) if raw is not None else None
        if record is None:
            raise NotFound(f"No key '{key}'.", code="key_not_found")
        return record

    async def update_key(self, key: str, body: KeyUpdate, actor: Caller) -> KeyRecord:
        record = await self.get_key(key)
        updates = _given(body, exclude=frozenset({"expires_at", "expires_in_s"}))
        if body.tenant is not None and "tenant" in updates:
            await self._check_tenant(body.tenant)
        if body.model_fields_set & {"expires_at", "expires_in_s"}:
            updates["expires_at"] = body.expiry(self.clock())
        return await self._update(record, updates, actor)

    async def rotate_key(self, key: str, body: KeyRotate, actor: Caller
                         ) -> tuple[KeyRecord, str]:
        """A new secret for the same key (same id, prefix, limits and spend); the current
        one keeps working for `overlap_s`, older ones stop at once."""
        record = await self.get_key(key)
        if record.status(self.clock()) != "active":
            raise Conflict(f"Key {record.prefix} is {record.status()}: only an active key "
                           "can be rotated.", code="key_not_active")
        now = self.clock()
        full = new_secret(record.id)
        current = [h for h in record.hashes if h.valid_until is None]
        hashes = [SecretHash(sha256=digest(full).hex())]
        if body.overlap_s > 0:
            hashes += [SecretHash(sha256=h.sha256, valid_until=now + body.overlap_s)
                       for h in current]
        record = record.model_copy(update={"hashes": hashes, "rotated_at": now,
                                           "updated_at": now})
        await self._save_key(record)
        await self.audit.write(actor, "key.rotate", _key_target(record),
                               {"overlap_s": body.overlap_s})
        return record, full

    async def revoke_key(self, key: str, actor: Caller) -> KeyRecord:
        record = await self.get_key(key)
        if record.revoked_at is not None:
            return record
        now = self.clock()
        record = record.model_copy(update={"revoked_at": now, "updated_at": now})
        await self._save_key(record)
        await self.audit.write(actor, "key.revoke", _key_target(record))
        return record

    async def delete_key(self, key: str, actor: Caller) -> KeyRecord:
        record = await self.get_key(key)
        await self.store.delete_value(KEY_RECORD + record.id)
        self.keys.forget(record.id)
        await self.audit.write(actor, "key.delete", _key_target(record))
        return record

    async def _save_key(self, record: KeyRecord) -> None:
        await self.store.set_value(KEY_RECORD + record.id, record.model_dump_json().encode())
        self.keys.forget(record.id)  # this replica sees the change at once

    async def _check_tenant(self, tenant: str) -> None:
        if tenant != DEFAULT_TENANT and \
                await self.store.get_value(TENANT_RECORD + tenant) is None:
            raise InvalidRequest(f"No tenant '{tenant}': create it first (POST "
                                 "/admin/tenants).", param="tenant", code="tenant_not_found")

    # -- tenants -----------------------------------------------------------------------------

    async def create_tenant(self, body: TenantCreate, actor: Caller) -> TenantRecord:
        if not await self.store.claim(f"gw:tenant-id:{body.id}"):
            raise Conflict(f"The tenant '{body.id}' already exists.", param="id")
        now = self.clock()
        record = TenantRecord(id=body.id, name=body.name, limits=body.limits,
                              metadata=body.metadata, created_at=now, updated_at=now)
        await self._save_tenant(record)
        await self.audit.write(actor, "tenant.create", _tenant_target(record),
                               {"tenant": record.model_dump(mode="json")})
        return record

    async def list_tenants(self, limit: int = 100) -> list[TenantRecord]:
        records = [_parse_tenant(raw) for _, raw in
                   await self.store.scan_values(TENANT_RECORD, MAX_LISTED)]
        return [r for r in records if r is not None][:limit]

    async def get_tenant(self, tenant: str) -> TenantRecord:
        raw = await self.store.get_value(TENANT_RECORD + tenant)
        record = _parse_tenant(raw) if raw is not None else None
        if record is None:
            raise NotFound(f"No tenant '{tenant}'.", code="tenant_not_found")
        return record

    async def update_tenant(self, tenant: str, body: TenantUpdate, actor: Caller
                            ) -> TenantRecord:
        return await self._update(await self.get_tenant(tenant), _given(body), actor)

    async def delete_tenant(self, tenant: str, actor: Caller) -> TenantRecord:
        record = await self.get_tenant(tenant)
        holding = await self.list_keys(tenant=tenant, limit=MAX_LISTED)
        # An expired key can be given a new expiry: only revoked keys are done with.
        live = [k.prefix for k in holding if k.revoked_at is None]
        if live:
            raise Conflict(f"The tenant '{tenant}' still has {len(live)} key(s) not revoked "
                           f"({', '.join(live[:5])}): revoke or move them first.",
                           code="tenant_has_keys")
        await self.store.delete_value(TENANT_RECORD + tenant)
        await self.store.delete_value(f"gw:tenant-id:{tenant}")
        await self.audit.write(actor, "tenant.delete", _tenant_target(record))
        return record

    async def _save_tenant(self, record: TenantRecord) -> None:
        await self.store.set_value(TENANT_RECORD + record.id, record.model_dump_json().encode())

    async def _update(self, record: Stored, updates: dict[str, Any], actor: Caller) -> Stored:
        """A key or a tenant with `updates` applied, saved and audited (only what changed):
        `key.limits` or `tenant.limits` when only the limits did, else `.update`."""
        changes = {name: {"before": _jsonable(getattr(record, name)), "after": _jsonable(value)}
                   for name, value in updates.items() if getattr(record, name) != value}
        if not changes:
            return record
        record = record.model_copy(update={**updates, "updated_at": self.clock()})
        if isinstance(record, KeyRecord):
            await self._save_key(record)
            kind, target = "key", _key_target(record)
        else:
            await self._save_tenant(record)
            kind, target = "tenant", _tenant_target(record)
        action = f"{kind}.limits" if set(changes) == {"limits"} else f"{kind}.update"
        await self.audit.write(actor, action, target, changes)
        return record

    # -- spend -------------------------------------------------------------------------------

    async def spend(self, *, period: str, at: str | None = None, key: str | None = None,
                    tenant: str | None = None) -> dict[str, Any]:
        """Spend per key and per tenant in one period (the current one unless `at`); `key`
        or `tenant` narrows it to one. A tenant's spend is the sum of its keys'; its budgets
        count from when they were set."""
        pid = _period_at(period, at, self.clock())
        every = await self.list_keys(limit=MAX_LISTED)
        statics = [c for c in self.keys.static_callers()
                   if tenant is None and (key is None or c.key_id == key)]
        if key is None:
            shown = [k for k in every if tenant is None or k.tenant == tenant]
        else:
            found = await self.get_key(key) if not key.startswith("static:") else None
            shown = [found] if found is not None else []
            if found is None and not statics:
                raise NotFound(f"No key '{key}'.", code="key_not_found")
        tenant_ids = {tenant} if tenant is not None else {k.tenant for k in shown}
        if key is None and tenant is None:
            tenant_ids |= {t.id for t in await self.list_tenants(MAX_LISTED)}
        tenants = {t: await self._tenant_or_none(t) for t in sorted(tenant_ids)}
        members = [k for k in every if k.tenant in tenants]
        budgeted = [t for t, record in tenants.items() if record and record.limits.budgets]
        amounts = await self.limiter.counters.spend(
            sorted({f"key:{k.id}" for k in [*shown, *members]})
            + [c.key_id for c in statics] + [f"tenant:{t}" for t in budgeted], pid)
        rows = [_spend_row(k.prefix, k.name, k.tenant, k.limits.budgets, period,
                           amounts[f"key:{k.id}"]) for k in shown]
        rows += [_spend_row(c.key_id, None, None, c.scopes[0].limits.budgets, period,
                            amounts[c.key_id]) for c in statics]
        tenant_rows = []
        for tenant_id, record in tenants.items():
            total = sum(amounts[f"key:{k.id}"] for k in members if k.tenant == tenant_id)
            row = _spend_row(tenant_id, record.name if record else None, None, [], period, total)
            del row["tenant"]
            if record is not None:
                row["budgets"] = _budgets(record.limits.budgets, period,
                                          amounts.get(f"tenant:{tenant_id}", 0.0))
            tenant_rows.append(row)
        return {"object": "routeyard.spend", "period": period, "period_id": pid,
                "keys": rows, "tenants": tenant_rows,
                "total_usd": sum(row["spend_usd"] for row in rows)}

    async def _tenant_or_none(self, tenant: str) -> TenantRecord | None:
        raw = await self.store.get_value(TENANT_RECORD + tenant)
        return _parse_tenant(raw) if raw is not None else None


def _period_at(period: str, at: str | None, now: float) -> str:
    """The period id to report: the current one, or `at` (2025-01-31 or 2025-01)."""
    if period not in PERIODS:
        raise InvalidRequest(f"period must be one of {', '.join(PERIODS)}", param="period")
    if at is None or period == "total":
        return period_id(period, now)
    shape = {"day": "%Y-%m-%d", "month": "%Y-%m"}[period]
    try:
        if datetime.strptime(at, shape).strftime(shape) == at:
            return at
    except ValueError:
        pass
    raise InvalidRequest(f"at must be a {period} as {shape.replace('%', '')}, like "
                         f"{period_id(period, now)}", param="at")


def _spend_row(id_: str, name: str | None, tenant: str | None, budgets: list[BudgetConfig],
               period: str, spent: float) -> dict[str, Any]:
    return {"id": id_, "name": name, "tenant": tenant, "spend_usd": spent,
            "budgets": _budgets(budgets, period, spent)}


def _budgets(budgets: list[BudgetConfig], period: str, spent: float
             ) -> list[dict[str, Any]]:
    return [{"period": b.period, "mode": b.mode, "limit_usd": b.limit_usd,
             "remaining_usd": max(0.0, b.limit_usd - spent)}
            for b in budgets if b.period == period]


def _parse_key(raw: bytes) -> KeyRecord | None:
    try:
        return KeyRecord.model_validate_json(raw)
    except ValidationError:
        return None


def _parse_tenant(raw: bytes) -> TenantRecord | None:
    try:
        return TenantRecord.model_validate_json(raw)
    except ValidationError:
        return None


def _key_target(record: KeyRecord) -> dict[str, str]:
    return {"type": "key", "id": record.prefix}


def _tenant_target(record: TenantRecord) -> dict[str, str]:
    return {"type": "tenant", "id": record.id}


def _visible(record: KeyRecord) -> dict[str, Any]:
    return {k: v for k, v in record.public().items() if k != "object"}


def _given(body: BaseModel, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The fields a PATCH body gave: `null` clears `name`, and leaves anything else as is."""
    return {name: getattr(body, name) for name in body.model_fields_set - exclude
            if name == "name" or getattr(body, name) is not None}


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return orjson.loads(orjson.dumps(value, default=_dump_model))


def _dump_model(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(type(value).__name__)
