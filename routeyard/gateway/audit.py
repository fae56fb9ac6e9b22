"""The audit log of admin actions: who (the admin key's id and name), when, what, and what
changed. Never a secret: a key appears by its visible prefix only.

Entries live in the store's key-value space under `gw:audit:<seq>`, where `seq` counts down
with time, so the store's key order (what `scan_values` returns) is newest first.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import orjson

from routeyard.gateway.callers import Caller
from routeyard.state import Store

AUDIT_RECORD = "gw:audit:"
_SEQ_TOP = 10**19  # > any time in ns for centuries: seq = top - time_ns, 19 digits


class AuditLog:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    async def write(self, actor: Caller, action: str, target: dict[str, str],
                    changes: dict[str, Any] | None = None) -> dict[str, Any]:
        now = self.clock()
        seq = f"{_SEQ_TOP - int(now * 1e9):019d}{secrets.token_hex(3)}"
        entry = {"id": f"audit_{seq}", "time": now, "actor": actor.describe(),
                 "action": action, "target": target, "changes": changes or {}}
        await self.store.set_value(AUDIT_RECORD + seq, orjson.dumps(entry))
        return entry

    async def read(self, *, limit: int, action: str | None = None,
                   target: str | None = None) -> list[dict[str, Any]]:
        """Newest first; `action` and `target` (an id) filter."""
        scan = limit if action is None and target is None else max(limit, 10_000)
        entries = []
        for _, raw in await self.store.scan_values(AUDIT_RECORD, scan):
            entry = orjson.loads(raw)
            if action is not None and entry.get("action") != action:
                continue
            if target is not None and entry.get("target", {}).get("id") != target:
                continue
            entries.append(entry)
            if len(entries) >= limit:
                break
        return entries
