"""In-process store: bounded, nothing to flush, lost on restart. For tests and single runs."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from itertools import islice
from typing import Any

from routeyard.state.base import CLAIM_VALUE, DecisionRecord, Store, check_ttl, check_value
from routeyard.state.query import (
    Aggregate,
    DecisionPage,
    DecisionQuery,
    StatsQuery,
    aggregate_records,
    matches,
    page_of,
    sort_key,
)

DEFAULT_MAX_RECORDS = 10_000
DEFAULT_MAX_KEYS = 100_000


class MemoryStore(Store):
    name = "memory"

    def __init__(self, *, max_records: int | None = None, max_keys: int = DEFAULT_MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_records = max_records if max_records is not None else DEFAULT_MAX_RECORDS
        if self.max_records < 1:
            raise ValueError("max_records must be at least 1")
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_keys = max_keys
        self.clock = clock  # injectable, so tests can pass a TTL without sleeping
        # key -> (value, monotonic expiry or None). Insertion order is write order (a write
        # re-inserts), so past max_keys the least recently written key goes first.
        self._kv: dict[str, tuple[bytes, float | None]] = {}
        # Oldest on the left. The id index holds only what the deque holds, so memory stays
        # flat however many requests pass through.
        self._records: deque[DecisionRecord] = deque()
        self._by_id: dict[str, DecisionRecord] = {}
        # request id → (score, implicit), for records still held
        self._feedback: dict[str, tuple[float, bool]] = {}

    def record_decision(self, record: DecisionRecord) -> None:
        records = self._records
        if len(records) >= self.max_records:
            old = records.popleft()
            # A repeated request_id maps to its newest record; keep that one indexed.
            if self._by_id.get(old.request_id) is old:
                del self._by_id[old.request_id]
                self._feedback.pop(old.request_id, None)
        records.append(record)
        self._by_id[record.request_id] = record

    def __len__(self) -> int:
        return len(self._records)

    async def flush(self) -> None:
        return None

    def _joined(self, record: DecisionRecord) -> DecisionRecord:
        found = self._feedback.get(record.request_id)
        return record if found is None else replace(record, feedback=found[0],
                                                    feedback_implicit=found[1])

    async def get_decision(self, request_id: str) -> DecisionRecord | None:
        found = self._by_id.get(request_id)
        return self._joined(found) if found is not None else None

    async def recent_decisions(self, limit: int = 100) -> list[DecisionRecord]:
        return [self._joined(r) for r in islice(reversed(self._records), max(0, limit))]

    def _current(self) -> list[DecisionRecord]:
        """The newest record of each id, feedback joined (a scan: the store is bounded)."""
        return [self._joined(r) for r in self._records if self._by_id.get(r.request_id) is r]

    async def query_decisions(self, query: DecisionQuery) -> DecisionPage:
        found = sorted((r for r in self._current() if matches(r, query)), key=sort_key,
                       reverse=True)
        return page_of(found[:query.limit + 1], query.limit)

    async def decision_stats(self, query: StatsQuery) -> dict[Any, Aggregate]:
        return aggregate_records((r for r in self._current() if matches(r, query)),
                                 query.group_by)

    async def record_feedback(self, request_id: str, score: float, *,
                              implicit: bool = False) -> bool:
        feedback = self._feedback
        if implicit and request_id in feedback:
            return False
        feedback.pop(request_id, None)
        feedback[request_id] = (float(score), implicit)
        while len(feedback) > self.max_records:  # ids whose records are gone, or never came
            del feedback[next(iter(feedback))]
        return True

    async def ping(self) -> bool:
        return True

    # -- key-value state (no awaits inside: each call is atomic on the event loop) ----------

    def _live(self, key: str) -> bytes | None:
        entry = self._kv.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires is not None and expires <= self.clock():
            del self._kv[key]  # lazy expiry
            return None
        return value

    def _put(self, key: str, value: bytes, ttl_s: float | None) -> None:
        kv = self._kv
        kv.pop(key, None)
        kv[key] = (value, None if ttl_s is None else self.clock() + ttl_s)
        while len(kv) > self.max_keys:
            del kv[next(iter(kv))]

    async def get_value(self, key: str) -> bytes | None:
        return self._live(key)

    async def set_value(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        self._put(key, check_value(value), check_ttl(ttl_s))

    async def delete_value(self, key: str) -> bool:
        return self._live(key) is not None and self._kv.pop(key, None) is not None

    async def scan_values(self, prefix: str, limit: int = 1000) -> list[tuple[str, bytes]]:
        found = sorted(k for k in self._kv if k.startswith(prefix))
        pairs = [(k, v) for k in found if (v := self._live(k)) is not None]
        return pairs[:max(0, limit)]

    async def claim(self, key: str, ttl_s: float | None = None) -> bool:
        ttl_s = check_ttl(ttl_s)
        if self._live(key) is not None:
            return False
        self._put(key, CLAIM_VALUE, ttl_s)
        return True
