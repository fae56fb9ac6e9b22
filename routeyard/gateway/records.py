"""Virtual keys and tenants as stored, the admin API's bodies, and the key format.

A key is `ry-<id>-<secret>`: `ry-<id>` is its visible prefix (12 hex digits, shown in listings
and logs), the secret 43 random URL-safe characters from `secrets`. Only the SHA-256 of the
whole key is stored, never the key. Records live in the store's key-value space:

    gw:key:<id>          a key's record (JSON)
    gw:tenant:<id>       a tenant's record (JSON)
    gw:tenant-id:<id>    claimed when the tenant is created: the id is taken
    gw:audit:<seq>       one admin action (audit.py)
    gw:has-keys          set once the first virtual key is created: keys are required since
    gw:spend:<scope>:<period>  spend, when it is counted in the process (counters.py)
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from routeyard.config.schema import LimitsConfig
from routeyard.gateway.callers import Role

KEY_PREFIX = "ry-"
_ID_HEX = 12
_PREFIX_LEN = len(KEY_PREFIX) + _ID_HEX  # "ry-" + id
_HEX = frozenset("0123456789abcdef")
DEFAULT_TENANT = "default"

KEY_RECORD = "gw:key:"
TENANT_RECORD = "gw:tenant:"
HAS_KEYS = "gw:has-keys"

Status = Literal["active", "revoked", "expired"]


def new_key() -> tuple[str, str]:
    """A fresh (id, full key)."""
    key_id = secrets.token_hex(_ID_HEX // 2)
    return key_id, new_secret(key_id)


def new_secret(key_id: str) -> str:
    """A full key for `key_id` with a fresh secret (creation, rotation)."""
    return f"{KEY_PREFIX}{key_id}-{secrets.token_urlsafe(32)}"


def key_id_of(token: str) -> str | None:
    """The id inside a presented key, or None when it is not shaped like one of ours."""
    if len(token) <= _PREFIX_LEN + 1 or not token.startswith(KEY_PREFIX) \
            or token[_PREFIX_LEN] != "-":
        return None
    key_id = token[len(KEY_PREFIX):_PREFIX_LEN]
    return key_id if _HEX.issuperset(key_id) else None


def key_id_from_path(text: str) -> str | None:
    """A key named in a URL: its id, or its visible prefix `ry-<id>`."""
    key_id = text[len(KEY_PREFIX):] if text.startswith(KEY_PREFIX) else text
    return key_id if len(key_id) == _ID_HEX and _HEX.issuperset(key_id) else None


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


# -- stored records ----------------------------------------------------------------------------


class _Stored(BaseModel):
    # A newer replica may have added fields: an older one reads what it knows.
    model_config = ConfigDict(extra="ignore")


class SecretHash(_Stored):
    sha256: str  # hex
    valid_until: float | None = None  # unix seconds; set on the old secret when rotated


class TenantRecord(_Stored):
    id: str
    name: str | None = None
    limits: LimitsConfig = LimitsConfig()
    metadata: dict[str, str] = Field(default_factory=dict)
    created_at: float
    updated_at: float

    def public(self) -> dict[str, Any]:
        return {"object": "routeyard.tenant", **self.model_dump(mode="json")}


class KeyRecord(_Stored):
    id: str
    name: str | None = None
    tenant: str = DEFAULT_TENANT
    roles: list[Role]
    models: list[str] = Field(default_factory=lambda: ["*"])
    decisions: list[str] = Field(default_factory=lambda: ["*"])
    limits: LimitsConfig = LimitsConfig()
    metadata: dict[str, str] = Field(default_factory=dict)
    hashes: list[SecretHash]
    created_at: float
    updated_at: float
    created_by: str
    expires_at: float | None = None
    revoked_at: float | None = None
    rotated_at: float | None = None

    @property
    def prefix(self) -> str:
        return KEY_PREFIX + self.id

    def status(self, now: float | None = None) -> Status:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and (now or time.time()) >= self.expires_at:
            return "expired"
        return "active"

    def public(self) -> dict[str, Any]:
        """As the admin API shows it: no hash, ever."""
        found = self.model_dump(mode="json", exclude={"hashes"})
        previous = [h.valid_until for h in self.hashes if h.valid_until is not None]
        return {"object": "routeyard.key", "prefix": self.prefix, "status": self.status(),
                **found, "previous_secret_valid_until": max(previous, default=None)}


# -- admin API bodies --------------------------------------------------------------------------

Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Glob = Annotated[str, StringConstraints(min_length=1, max_length=200)]
TenantId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
Metadata = Annotated[dict[Annotated[str, StringConstraints(max_length=100)],
                          Annotated[str, StringConstraints(max_length=1000)]],
                     Field(max_length=32)]
Globs = Annotated[list[Glob], Field(min_length=1, max_length=100)]
Roles = Annotated[list[Role], Field(min_length=1, max_length=3)]
Seconds = Annotated[float, Field(gt=0, le=10 * 365 * 86400)]


class _Body(BaseModel):
    # Unknown fields are errors: a typo such as `rmp` must not be silently ignored.
    model_config = ConfigDict(extra="forbid")


class _Expiry(_Body):
    expires_at: Annotated[float, Field(gt=0)] | None = None  # unix seconds
    expires_in_s: Seconds | None = None

    @model_validator(mode="after")
    def _one_expiry(self) -> _Expiry:
        if self.expires_at is not None and self.expires_in_s is not None:
            raise ValueError("give expires_at or expires_in_s, not both")
        return self

    def expiry(self, now: float) -> float | None:
        return now + self.expires_in_s if self.expires_in_s is not None else self.expires_at


class KeyCreate(_Expiry):
    name: Name | None = None
    tenant: TenantId = DEFAULT_TENANT
    roles: Roles = Field(default_factory=lambda: ["user"])
    models: Globs = Field(default_factory=lambda: ["*"])
    decisions: Globs = Field(default_factory=lambda: ["*"])
    limits: LimitsConfig = LimitsConfig()
    metadata: Metadata = Field(default_factory=dict)


class KeyUpdate(_Expiry):
    """Only the fields given change; `expires_at: null` removes the expiry."""

    name: Name | None = None
    tenant: TenantId | None = None
    roles: Roles | None = None
    models: Globs | None = None
    decisions: Globs | None = None
    limits: LimitsConfig | None = None
    metadata: Metadata | None = None


class KeyRotate(_Body):
    # How long the old secret keeps working beside the new one (0: at once).
    overlap_s: Annotated[float, Field(ge=0, le=30 * 86400)] = 3600.0


class TenantCreate(_Body):
    id: TenantId
    name: Name | None = None
    limits: LimitsConfig = LimitsConfig()
    metadata: Metadata = Field(default_factory=dict)


class TenantUpdate(_Body):
    name: Name | None = None
    limits: LimitsConfig | None = None
    metadata: Metadata | None = None
