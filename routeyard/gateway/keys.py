"""Resolving a presented key to its `Caller`: static keys from the config, virtual keys from
the store, each replica keeping a short-lived copy.

The common case is a dict lookup: the key's SHA-256 (static keys) or the id inside it (virtual
keys) finds the entry, and `hmac.compare_digest` confirms the hash in constant time. A virtual
key's entry is trusted for `gateway.key_cache_s` (≤ 5 s), then read again, so a key revoked on
one replica is refused by every replica within that time; an expiry is checked against the
clock on every request. Unknown ids are remembered as unknown for as long (bounded), so random
keys cannot turn every request into a store read.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pydantic import SecretStr, ValidationError

from routeyard.config.schema import LimitsConfig
from routeyard.errors import Unauthorized
from routeyard.gateway.callers import ANONYMOUS, LIBRARY, NO_LIMITS, Caller, Scope
from routeyard.gateway.records import (
    HAS_KEYS,
    KEY_RECORD,
    TENANT_RECORD,
    KeyRecord,
    TenantRecord,
    digest,
    key_id_of,
)
from routeyard.state import Store, StoreUnavailable

log = logging.getLogger("routeyard.gateway")

INVALID = "Missing or invalid API key."
_MAX_ENTRIES = 100_000  # cached keys, known and unknown; past it the cache starts afresh


@dataclass(frozen=True, slots=True)
class _Entry:
    """What a replica knows of one key id, as read at `fetched` (monotonic)."""

    fetched: float
    caller: Caller | None  # None: no such key
    hashes: tuple[tuple[bytes, float | None], ...] = ()  # (sha256, valid until)
    expires_at: float | None = None
    revoked: bool = False

    def verify(self, found: bytes, now: float) -> Caller:
        if self.caller is None:
            raise Unauthorized(INVALID)
        matched = False
        for wanted, until in self.hashes:  # every hash is compared: no early exit
            matched |= hmac.compare_digest(wanted, found) and (until is None or now < until)
        if not matched:
            raise Unauthorized(INVALID)
        if self.revoked:
            raise Unauthorized("This API key has been revoked.", code="revoked_api_key")
        if self.expires_at is not None and now >= self.expires_at:
            raise Unauthorized("This API key has expired.", code="expired_api_key")
        return self.caller


class KeyRing:
    def __init__(self, store: Store, *, user_keys: list[SecretStr],
                 admin_keys: list[SecretStr], cache_s: float,
                 static_limits: LimitsConfig = NO_LIMITS,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.cache_s = cache_s
        self.clock = clock
        self.monotonic = monotonic
        self._static: dict[bytes, tuple[bytes, Caller]] = {}  # sha256 → (itself, caller)
        for role, keys in (("user", user_keys), ("admin", admin_keys)):
            for key in keys:
                found = digest(key.get_secret_value())
                key_id = f"static:{found.hex()[:12]}"
                self._static[found] = (found, Caller.build(key_id, (role,), scopes=(
                    Scope.of(key_id, static_limits),)))
        self._entries: dict[str, _Entry] = {}
        self._loading: dict[str, asyncio.Future[_Entry]] = {}  # reads under way, by key id
        self._virtual = False  # some virtual key exists (read from the store)
        self._virtual_checked = float("-inf")
        self._checking: asyncio.Future[None] | None = None  # a background check under way

    @property
    def required(self) -> bool:
        """Whether every request needs a key: a static key is configured, or a virtual key
        was ever created (the server never silently opens up again when the last is
        revoked)."""
        return bool(self._static) or self._virtual

    def static_callers(self) -> list[Caller]:
        return [caller for _, caller in self._static.values()]

    async def refresh_required(self, *, force: bool = False) -> None:
        """Learn whether another replica created a virtual key (at most once per cache
        period, unless `force`). Only the first check, and a forced one, are waited for;
        later ones run in the background, so a frozen store stalls no request (the answer
        is at most a cache period and a read old)."""
        if self.required:
            return
        now = self.monotonic()
        if not force and now - self._virtual_checked < self.cache_s:
            return
        first = self._virtual_checked == float("-inf")
        self._virtual_checked = now
        if force or first:
            await self._check_virtual()
        elif self._checking is None or self._checking.done():
            self._checking = asyncio.ensure_future(self._check_virtual())

    async def _check_virtual(self) -> None:
        try:
            self._virtual = self._virtual or await self.store.get_value(HAS_KEYS) is not None
        except StoreUnavailable:
            log.warning("cannot tell whether virtual keys exist: the store is down")

    def note_created(self) -> None:
        """A virtual key was just created here."""
        self._virtual = True

    # -- resolution --------------------------------------------------------------------------

    def cached(self, token: str) -> Caller | None:
        """The caller of `token` from what this replica holds, or None when the key must be
        read from the store first (`resolve`). Raises Unauthorized for a bad key."""
        found = digest(token)
        static = self._static.get(found)
        if static is not None and hmac.compare_digest(static[0], found):
            return static[1]
        key_id = key_id_of(token)
        if key_id is None:
            raise Unauthorized(INVALID)
        entry = self._entries.get(key_id)
        if entry is None or self.monotonic() - entry.fetched >= self.cache_s:
            return None
        return entry.verify(found, self.clock())

    async def resolve(self, token: str) -> Caller:
        caller = self.cached(token)
        if caller is not None:
            return caller
        key_id = key_id_of(token)
        assert key_id is not None  # cached() raised otherwise
        entry = await self._load(key_id)
        return entry.verify(digest(token), self.clock())

    async def caller_of(self, headers: Mapping[str, str] | None) -> Caller:
        """Whose limits a request counts against: its key's. The HTTP edge has already let it
        in (it authenticates); a library call may carry any key (signals read it), so a key
        that is not one of ours counts as ANONYMOUS, and no headers at all as LIBRARY."""
        if headers is None:
            return LIBRARY
        auth = headers.get("authorization", "")
        if not self.required or auth[:7].lower() != "bearer " or not auth[7:]:
            return ANONYMOUS
        try:
            return await self.resolve(auth[7:])
        except Unauthorized:
            return ANONYMOUS

    def forget(self, key_id: str) -> None:
        """Drop this replica's copy (after an admin change made here)."""
        self._entries.pop(key_id, None)

    async def _load(self, key_id: str) -> _Entry:
        """Read one key (and its tenant) once, however many requests wait for it; in a task
        of its own, so that the request that asked first may go away."""
        loading = self._loading.get(key_id)
        if loading is None:
            loading = self._loading[key_id] = asyncio.ensure_future(self._fetch(key_id))
        return await asyncio.shield(loading)

    async def _fetch(self, key_id: str) -> _Entry:
        try:
            try:
                entry = await self._read(key_id)
            except StoreUnavailable:
                stale = self._entries.get(key_id)
                if stale is None:
                    raise
                # The store is down: an older copy beats refusing every request (nobody can
                # revoke a key in the store meanwhile either).
                log.warning("key %s: the store is down, using the copy read %.0f s ago",
                            key_id, self.monotonic() - stale.fetched)
                return stale
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()
            self._entries[key_id] = entry
            return entry
        finally:
            self._loading.pop(key_id, None)

    async def _read(self, key_id: str) -> _Entry:
        fetched = self.monotonic()
        raw = await self.store.get_value(KEY_RECORD + key_id)
        if raw is None:
            return _Entry(fetched, None)
        try:
            record = KeyRecord.model_validate_json(raw)
        except ValidationError:
            log.error("key %s: the stored record is unreadable; refusing the key", key_id)
            return _Entry(fetched, None)
        tenant = await self.tenant(record.tenant)
        return _Entry(fetched, caller_of_record(record, tenant),
                      tuple((bytes.fromhex(h.sha256), h.valid_until) for h in record.hashes),
                      record.expires_at, record.revoked_at is not None)

    async def tenant(self, tenant_id: str) -> TenantRecord | None:
        raw = await self.store.get_value(TENANT_RECORD + tenant_id)
        if raw is None:
            return None
        try:
            return TenantRecord.model_validate_json(raw)
        except ValidationError:
            log.error("tenant %s: the stored record is unreadable; ignoring its limits",
                      tenant_id)
            return None


def caller_of_record(record: KeyRecord, tenant: TenantRecord | None) -> Caller:
    # A tenant's spend is the sum of its keys', counted on its own only for its budgets.
    scopes = [Scope.of(f"key:{record.id}", record.limits),
              Scope.of(f"tenant:{record.tenant}",
                       tenant.limits if tenant is not None else NO_LIMITS, spends=False)]
    return Caller.build(record.prefix, tuple(record.roles), tenant=record.tenant,
                        name=record.name, models=tuple(record.models),
                        decisions=tuple(record.decisions), scopes=tuple(scopes))
