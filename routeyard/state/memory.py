"""In-process store: bounded, nothing to flush, lost on restart. For tests and single runs."""

from __future__ import annotations

from collections import deque
from itertools import islice

from routeyard.state.base import DecisionRecord, Store

DEFAULT_MAX_RECORDS = 10_000


class MemoryStore(Store):
    name = "memory"

    def __init__(self, *, max_records: int | None = None) -> None:
        self.max_records = max_records if max_records is not None else DEFAULT_MAX_RECORDS
        if self.max_records < 1:
            raise ValueError("max_records must be at least 1")
        # Oldest on the left. The id index holds only what the deque holds, so memory stays
        # flat however many requests pass through.
        self._records: deque[DecisionRecord] = deque()
        self._by_id: dict[str, DecisionRecord] = {}

    def record_decision(self, record: DecisionRecord) -> None:
        records = self._records
        if len(records) >= self.max_records:
            old = records.popleft()
            # A repeated request_id maps to its newest record; keep that one indexed.
            if self._by_id.get(old.request_id) is old:
                del self._by_id[old.request_id]
        records.append(record)
        self._by_id[record.request_id] = record

    def __len__(self) -> int:
        return len(self._records)

    async def flush(self) -> None:
        return None

    async def get_decision(self, request_id: str) -> DecisionRecord | None:
        return self._by_id.get(request_id)

    async def recent_decisions(self, limit: int = 100) -> list[DecisionRecord]:
        return list(islice(reversed(self._records), max(0, limit)))

    async def ping(self) -> bool:
        return True
