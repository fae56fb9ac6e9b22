"""The PostgreSQL store's query API as SQL: filtered pages, and stats aggregated by the server
(hash aggregation, so no roll-ups are needed), histograms bucketed as `routeyard.state.query`
buckets them so that percentiles agree with the other stores. Request ids compare in byte order
(COLLATE "C"), as on SQLite and Redis."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from routeyard.state.base import ERROR_STATUSES
from routeyard.state.query import FILTER_FIELDS, Aggregate, DecisionQuery, StatsQuery

Merge = Callable[[dict[Any, Aggregate], Sequence[Any]], None]
_ID = 'd.request_id COLLATE "C"'
_ERRORS = ", ".join(f"'{s}'" for s in sorted(ERROR_STATUSES))  # constants, not input
_BUCKET = "floor(ln(1 + greatest({0}, 0)) * 20)::int"


def _where(query: DecisionQuery | StatsQuery, args: list[Any]) -> list[str]:
    terms: list[str] = []
    if query.since is not None:
        args.append(query.since)
        terms.append(f"d.time >= ${len(args)}")
    if query.until is not None:
        args.append(query.until)
        terms.append(f"d.time < ${len(args)}")
    for name, value in query.filters:
        args.append(value)
        terms.append(f"d.{name} = ${len(args)}")
    return terms


def page_sql(select: str, query: DecisionQuery) -> tuple[str, list[Any]]:
    args: list[Any] = []
    terms = _where(query, args)
    if query.has_feedback is not None:
        terms.append("f.request_id IS NOT NULL" if query.has_feedback
                     else "f.request_id IS NULL")
    if query.after is not None:
        args += [query.after[0], query.after[1]]
        n = len(args)
        terms.append(f"d.time <= ${n - 1} AND (d.time < ${n - 1} OR {_ID} < ${n})")
    where = (" WHERE " + " AND ".join(terms)) if terms else ""
    args.append(query.limit + 1)
    return (f"{select}{where} ORDER BY d.time DESC, {_ID} DESC LIMIT ${len(args)}", args)


def _group(group_by: str | None) -> str:
    if group_by is None:
        return "NULL::text"
    if group_by == "hour":
        return "floor(d.time / 3600)::bigint"
    return f"d.{FILTER_FIELDS[group_by]}"


def _slot(groups: dict[Any, Aggregate], key: Any) -> Aggregate:
    found = groups.get(key)
    if found is None:
        found = groups[key] = Aggregate()
    return found


def _sums(groups: dict[Any, Aggregate], rows: Sequence[Any]) -> None:
    for key, n, errors, ran, hits, prompt, completion, cost, dearest, latency, energy in rows:
        agg = _slot(groups, key)
        agg.requests += n
        agg.errors += errors
        agg.cache_ran += ran
        agg.cache_hits += hits
        agg.prompt_tokens += prompt
        agg.completion_tokens += completion
        agg.cost_usd += cost
        agg.dearest_cost_usd += dearest
        agg.latency_sum += latency
        agg.energy_j += energy


def _histogram(name: str) -> Merge:
    def merge(groups: dict[Any, Aggregate], rows: Sequence[Any]) -> None:
        for key, b, n in rows:
            hist: dict[int, int] = getattr(_slot(groups, key), name)
            hist[b] = hist.get(b, 0) + n

    return merge


def _feedback(groups: dict[Any, Aggregate], rows: Sequence[Any]) -> None:
    for key, n, total in rows:
        agg = groups.get(key)
        if agg is not None:
            agg.feedback_count += n
            agg.feedback_sum += total or 0.0


def stats_sql(query: StatsQuery) -> list[tuple[str, list[Any], Merge]]:
    """The statements that make the stats, each with its arguments and how to merge its rows
    (the sums first: the others only add to groups they made)."""
    args: list[Any] = []
    terms = _where(query, args)
    where = " WHERE " + " AND ".join(terms) if terms else ""
    group = _group(query.group_by)
    sums = (f"SELECT {group}, count(*), count(*) FILTER (WHERE d.status IN ({_ERRORS})), "
            "count(d.cache), count(*) FILTER (WHERE d.cache = 'hit'), "
            "coalesce(sum(d.prompt_tokens), 0)::bigint, "
            "coalesce(sum(d.completion_tokens), 0)::bigint, coalesce(sum(d.cost_usd), 0), "
            "coalesce(sum(coalesce(d.dearest_cost_usd, d.cost_usd)), 0), "
            "coalesce(sum(d.latency_ms), 0), coalesce(sum(d.energy_j), 0) "
            f"FROM decisions AS d{where} GROUP BY 1")
    latency = (f"SELECT {group}, {_BUCKET.format('d.latency_ms')}, count(*) FROM decisions "
               f"AS d{where} GROUP BY 1, 2")
    ttft_where = where + (" AND " if where else " WHERE ") + "d.ttft_ms IS NOT NULL"
    ttft = (f"SELECT {group}, {_BUCKET.format('d.ttft_ms')}, count(*) FROM decisions "
            f"AS d{ttft_where} GROUP BY 1, 2")
    feedback = (f"SELECT {group}, count(*), sum(f.score) FROM decision_feedback AS f JOIN "
                f"decisions AS d ON d.request_id = f.request_id{where} GROUP BY 1")
    return [(sums, args, _sums), (latency, args, _histogram("latency")),
            (ttft, args, _histogram("ttft")), (feedback, args, _feedback)]
