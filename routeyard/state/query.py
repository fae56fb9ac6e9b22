"""Reading the decision log: filters, cursor pages and stats aggregates, shared by every store.

A `DecisionQuery` selects records (time range, equality filters, has-feedback) newest first,
in a stable order: time, then request id, both descending. A page ends with an opaque cursor
(the last record's time and id, base64url JSON), and the next page starts strictly after it.

A `StatsQuery` groups the records of a time window (by model, decision, key, tenant or hour)
into `Aggregate`s: counts, tokens, cost, the dearest candidate's cost, energy, latency and TTFT
histograms, cache and feedback counts. Percentiles come from log-spaced histogram buckets
(each about 5% wide), so every store answers them the same way and aggregates can be merged
(SQLite keeps hourly roll-ups of them). Stores that cannot aggregate in their database filter
and aggregate records here (`matches`, `Aggregate.add`).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from routeyard.state.record import ERROR_STATUSES, DecisionRecord

# The record fields the query API filters on, by query parameter name.
FILTER_FIELDS: dict[str, str] = {"decision": "decision", "model": "model", "key": "key_id",
                                 "tenant": "tenant", "status": "status", "surface": "surface",
                                 "session": "session"}
GROUP_BY = ("model", "decision", "key", "tenant", "hour", "session")
MAX_PAGE = 1000
# Histogram buckets: bucket b holds values v (ms) with floor(ln(1 + v) * 20) == b, so each is
# ~5% wide above a few ms (and 0.05 ms wide below), and every store buckets the same way.
BUCKETS_PER_E = 20.0


class QueryError(ValueError):
    """A filter, cursor or time range that cannot be used (the API answers 400)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class DecisionQuery:
    since: float | None = None  # time >= since
    until: float | None = None  # time < until
    filters: tuple[tuple[str, str], ...] = ()  # (record field, value), all must hold
    has_feedback: bool | None = None
    limit: int = 100
    after: tuple[float, str] | None = None  # the cursor: strictly older than (time, id)


@dataclass(frozen=True, slots=True)
class DecisionPage:
    records: list[DecisionRecord]
    cursor: str | None  # None: no more records


@dataclass(frozen=True, slots=True)
class StatsQuery:
    since: float
    until: float
    group_by: str | None = None  # one of GROUP_BY, or None: one group over everything
    filters: tuple[tuple[str, str], ...] = ()


def encode_cursor(record: DecisionRecord) -> str:
    raw = orjson.dumps([record.time, record.request_id])
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        when, request_id = orjson.loads(raw)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise QueryError("cursor is not one this API returned", "cursor") from None
    if isinstance(when, bool) or not isinstance(when, int | float) \
            or not isinstance(request_id, str) or not math.isfinite(when):
        raise QueryError("cursor is not one this API returned", "cursor")
    return float(when), request_id


def matches(record: DecisionRecord, query: DecisionQuery | StatsQuery) -> bool:
    """Whether a record passes a query's time range and filters (the in-process stores)."""
    since, until = query.since, query.until
    if (since is not None and record.time < since) or (until is not None
                                                         and record.time >= until):
        return False
    for name, value in query.filters:
        if getattr(record, name) != value:
            return False
    if isinstance(query, DecisionQuery):
        if query.has_feedback is not None and (record.feedback is not None) != query.has_feedback:
            return False
        if query.after is not None and (record.time, record.request_id) >= query.after:
            return False
    return True


def page_of(found: list[DecisionRecord], limit: int) -> DecisionPage:
    """A page from up to limit + 1 records in order: the extra one says there are more."""
    if len(found) > limit:
        found = found[:limit]
        return DecisionPage(found, encode_cursor(found[-1]))
    return DecisionPage(found, None)


def sort_key(record: DecisionRecord) -> tuple[float, str]:
    return (record.time, record.request_id)


# -- aggregates ---------------------------------------------------------------------------


def bucket(ms: float) -> int:
    return int(math.log1p(max(0.0, ms)) * BUCKETS_PER_E)


def bucket_value(index: int) -> float:
    """A bucket's representative value: the geometric middle of its bounds."""
    return math.expm1((index + 0.5) / BUCKETS_PER_E)


def group_value(record: DecisionRecord, group_by: str | None) -> str | int | None:
    if group_by is None:
        return None
    if group_by == "hour":
        return int(record.time // 3600)
    return getattr(record, FILTER_FIELDS[group_by])


@dataclass(slots=True)
class Aggregate:
    """Summable statistics of a set of records (feedback is counted separately, joined)."""

    requests: int = 0
    errors: int = 0
    cache_ran: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    dearest_cost_usd: float = 0.0
    latency_sum: float = 0.0
    latency: dict[int, int] = field(default_factory=dict)  # bucket → count
    ttft: dict[int, int] = field(default_factory=dict)
    feedback_count: int = 0
    feedback_sum: float = 0.0
    energy_j: float = 0.0  # estimated joules (records without figures add nothing)

    def add(self, status: str, latency_ms: float, ttft_ms: float | None, prompt: int,
            completion: int, cost: float, dearest: float | None, cache: str | None,
            energy: float | None = None) -> None:
        self.requests += 1
        if status in ERROR_STATUSES:
            self.errors += 1
        if cache is not None:
            self.cache_ran += 1
            if cache == "hit":
                self.cache_hits += 1
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.cost_usd += cost
        self.dearest_cost_usd += cost if dearest is None else dearest
        if energy is not None:
            self.energy_j += energy
        self.latency_sum += latency_ms
        b = bucket(latency_ms)
        self.latency[b] = self.latency.get(b, 0) + 1
        if ttft_ms is not None:
            b = bucket(ttft_ms)
            self.ttft[b] = self.ttft.get(b, 0) + 1

    def add_record(self, r: DecisionRecord) -> None:
        self.add(r.status, r.latency_ms, r.ttft_ms, r.prompt_tokens, r.completion_tokens,
                 r.cost_usd, r.dearest_cost_usd, r.cache, r.energy_j)
        if r.feedback is not None:
            self.feedback_count += 1
            self.feedback_sum += r.feedback

    def merge(self, other: Aggregate) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.cache_ran += other.cache_ran
        self.cache_hits += other.cache_hits
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost_usd += other.cost_usd
        self.dearest_cost_usd += other.dearest_cost_usd
        self.energy_j += other.energy_j
        self.latency_sum += other.latency_sum
        for mine, theirs in ((self.latency, other.latency), (self.ttft, other.ttft)):
            for b, n in theirs.items():
                mine[b] = mine.get(b, 0) + n
        self.feedback_count += other.feedback_count
        self.feedback_sum += other.feedback_sum

    @property
    def ttft_count(self) -> int:
        return sum(self.ttft.values())


def percentile(histogram: dict[int, int], q: float) -> float | None:
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for b in sorted(histogram):
        seen += histogram[b]
        if seen >= rank:
            return round(bucket_value(b), 3)
    return None  # pragma: no cover - the loop always reaches the rank


def aggregate_records(records: Iterable[DecisionRecord], group_by: str | None
                      ) -> dict[Any, Aggregate]:
    groups: dict[Any, Aggregate] = {}
    for record in records:
        key = group_value(record, group_by)
        found = groups.get(key)
        if found is None:
            found = groups[key] = Aggregate()
        found.add_record(record)
    return groups
