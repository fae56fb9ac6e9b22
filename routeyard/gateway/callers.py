"""Who is asking: a `Caller` (a key, with its roles, allow-lists and the scopes its limits
count in) and the role check every protected path uses.

Roles are permissions, and `admin` holds the others:

    admin   manage keys and tenants, read the audit log, and everything below
    viewer  read spend (and the decision log)
    user    call the model surfaces (/v1/...)
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Literal

from routeyard.config.schema import LimitsConfig
from routeyard.errors import Forbidden

Role = Literal["admin", "viewer", "user"]
ROLES: tuple[Role, ...] = ("admin", "viewer", "user")
# What each role grants; a key's grants are the union over its roles.
GRANTS: dict[str, frozenset[str]] = {
    "admin": frozenset({"admin", "viewer", "user"}),
    "viewer": frozenset({"viewer"}),
    "user": frozenset({"user"}),
}
NO_LIMITS = LimitsConfig()


def grants_of(roles: tuple[str, ...] | list[str]) -> frozenset[str]:
    return frozenset().union(*(GRANTS[role] for role in roles))


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a caller's usage is counted: its key, or its tenant (all the tenant's keys
    together). `id` names the counters: key:<id>, tenant:<id> or static:<hash>. Build it with
    `Scope.of`, which works out once what admission asks of it."""

    id: str
    limits: LimitsConfig = NO_LIMITS
    counted: bool = False  # some limit or budget: admission counts in this scope
    hard: bool = False  # a hard budget: a request reserves its expected cost until settled
    tracked: bool = False  # a request holds a slot until settled (concurrency, reservation)
    spends: bool = True  # its spend is counted (a tenant's only when it has limits)
    soft: bool = False  # a soft budget: its spend steers the selection

    @classmethod
    def of(cls, scope_id: str, limits: LimitsConfig = NO_LIMITS, *, spends: bool = True
           ) -> Scope:
        modes = {budget.mode for budget in limits.budgets}
        return cls(scope_id, limits, limits.counted, "hard" in modes,
                   "hard" in modes or bool(limits.max_parallel), spends or limits.counted,
                   "soft" in modes)


@dataclass(frozen=True, slots=True)
class Caller:
    """A resolved key. `scopes` holds the key's scope, then its tenant's."""

    key_id: str  # "ry-<id>" for a virtual key, "static:<hash>" for a config key
    roles: tuple[str, ...]
    tenant: str | None = None
    name: str | None = None
    models: tuple[str, ...] = ("*",)  # globs over the model name a request asks for
    decisions: tuple[str, ...] = ("*",)  # globs over the decision that routes it
    scopes: tuple[Scope, ...] = ()
    grants: frozenset[str] = field(default=frozenset())
    counted: bool = False  # some scope has a limit or a budget: admission must count
    soft: bool = False  # some scope has a soft budget: it may steer the selection

    @classmethod
    def build(cls, key_id: str, roles: tuple[str, ...], *, tenant: str | None = None,
              name: str | None = None, models: tuple[str, ...] = ("*",),
              decisions: tuple[str, ...] = ("*",), scopes: tuple[Scope, ...] = ()) -> Caller:
        return cls(key_id, roles, tenant, name, models, decisions, scopes, grants_of(roles),
                   any(scope.counted for scope in scopes), any(scope.soft for scope in scopes))

    def can(self, role: str) -> bool:
        return role in self.grants

    def require(self, role: str) -> None:
        """The reusable role check: a 403 in the caller's terms when the key lacks `role`."""
        if role not in self.grants:
            raise Forbidden(f"This key ({self.key_id}) lacks the '{role}' role.",
                            code="permission_denied")

    def check_model(self, model: str) -> None:
        if not _matches(self.models, model):
            raise Forbidden(f"This key may not use the model '{model}' (allowed: "
                            f"{', '.join(self.models) or 'none'}).", param="model",
                            code="model_not_allowed")

    def check_decision(self, decision: str) -> None:
        if not _matches(self.decisions, decision):
            raise Forbidden(f"This request was routed to the decision '{decision}', which this "
                            f"key may not use (allowed: {', '.join(self.decisions) or 'none'}).",
                            code="decision_not_allowed")

    def describe(self) -> dict[str, str | None]:
        """The caller as the audit log records it: never a secret."""
        return {"key_id": self.key_id, "name": self.name, "tenant": self.tenant}


def _matches(globs: tuple[str, ...], name: str) -> bool:
    return "*" in globs or any(fnmatchcase(name, glob) for glob in globs)


# No key configured anywhere: the server is open, and nothing is counted.
ANONYMOUS = Caller.build("anonymous", ("user",))
# The Router used as a library (no HTTP headers at all): trusted, nothing is counted.
LIBRARY = Caller.build("library", ("admin",))

# The caller the HTTP edge resolved for the request being served (its task's context): the
# Router uses it instead of resolving the key again. Unset for library calls.
EDGE_CALLER: ContextVar[Caller | None] = ContextVar("routeyard_edge_caller", default=None)
