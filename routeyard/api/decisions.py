"""The decision log's query API: GET /v1/decisions, /v1/decisions/{id} and /v1/stats.

They need a key with the `viewer` role (`admin` includes it; the edge checks it through
`ROLE_BY_PATH`). Query parameters are checked strictly: an unknown or repeated parameter, a bad
time, filter value or cursor is a 400 in OpenAI's error schema, naming the parameter.
docs/api.md shows each endpoint with an example.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from routeyard.errors import InvalidRequest, NotFound
from routeyard.router import Router
from routeyard.state import DECISION_STATUSES, DecisionRecord
from routeyard.state.query import (
    FILTER_FIELDS,
    GROUP_BY,
    MAX_PAGE,
    Aggregate,
    DecisionQuery,
    QueryError,
    StatsQuery,
    decode_cursor,
    percentile,
)
from routeyard.state.record import to_json

JSON = "application/json"
SURFACES = ("chat", "messages", "responses", "completions", "embeddings")
_CHOICES: dict[str, tuple[str, ...]] = {"status": DECISION_STATUSES, "surface": SURFACES}
_LIST_PARAMS = frozenset({"since", "until", "limit", "cursor", "has_feedback", *FILTER_FIELDS})
_STATS_PARAMS = frozenset({"since", "until", "group_by", *FILTER_FIELDS})
DEFAULT_STATS_WINDOW_S = 24 * 3600.0


def json_response(data: Any) -> Response:
    # to_json: a memory store's records keep the detail's own objects (numpy numbers, say).
    return Response(to_json(data), media_type=JSON)


def query_params(request: Request, allowed: frozenset[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in allowed:
            raise InvalidRequest(f"unknown query parameter '{name}' (known: "
                                 f"{', '.join(sorted(allowed))})", param=name)
        if name in found:
            raise InvalidRequest(f"'{name}' is given more than once", param=name)
        found[name] = value
    return found


def parse_time(value: str, param: str) -> float:
    """Unix seconds, or an ISO 8601 date or time (UTC unless it names a zone)."""
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidRequest(f"{param} must be unix seconds or an ISO 8601 time, not "
                                 f"{value!r}", param=param) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.timestamp()
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidRequest(f"{param} must be a time after 1970, not {value!r}", param=param)
    return seconds


def query_window(params: dict[str, str], default_span: float | None
            ) -> tuple[float | None, float | None]:
    until = parse_time(params["until"], "until") if "until" in params else None
    since = parse_time(params["since"], "since") if "since" in params else None
    if default_span is not None:
        until = until if until is not None else time.time()
        since = since if since is not None else until - default_span
    if since is not None and until is not None and since >= until:
        raise InvalidRequest("since must be before until", param="since")
    return since, until


def query_filters(params: dict[str, str]) -> tuple[tuple[str, str], ...]:
    found = []
    for name, field in FILTER_FIELDS.items():
        value = params.get(name)
        if value is None:
            continue
        choices = _CHOICES.get(name)
        if choices is not None and value not in choices:
            raise InvalidRequest(f"{name} must be one of {', '.join(choices)}", param=name)
        if not value or "\x00" in value:
            raise InvalidRequest(f"{name} must be a non-empty name", param=name)
        found.append((field, value))
    return tuple(found)


def _limit(params: dict[str, str]) -> int:
    raw = params.get("limit")
    if raw is None:
        return 100
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_PAGE}", param="limit")
    return int(raw)


def _boolean(params: dict[str, str], name: str) -> bool | None:
    raw = params.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise InvalidRequest(f"{name} must be true or false", param=name)


def _record(record: DecisionRecord) -> dict[str, Any]:
    return {"object": "routeyard.decision", **record.to_dict()}


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


# -- endpoints -----------------------------------------------------------------------------------


async def list_decisions(request: Request) -> Response:
    params = query_params(request, _LIST_PARAMS)
    since, until = query_window(params, None)
    after = None
    if "cursor" in params:
        try:
            after = decode_cursor(params["cursor"])
        except QueryError as error:
            raise InvalidRequest(str(error), param=error.param) from None
    query = DecisionQuery(since, until, query_filters(params), _boolean(params, "has_feedback"),
                          _limit(params), after)
    router: Router = request.app.state.router
    page = await router.store.query_decisions(query)
    return json_response({"object": "list", "data": [_record(r) for r in page.records],
                  "has_more": page.cursor is not None, "next_cursor": page.cursor})


async def get_decision(request: Request) -> Response:
    request_id = request.path_params["request_id"]
    router: Router = request.app.state.router
    found = await router.store.get_decision(request_id)
    if found is None:
        raise NotFound(f"no decision record {request_id!r}", param="request_id")
    return json_response(_record(found))


async def stats(request: Request) -> Response:
    params = query_params(request, _STATS_PARAMS)
    since, until = query_window(params, DEFAULT_STATS_WINDOW_S)
    assert since is not None and until is not None
    group_by = params.get("group_by")
    if group_by is not None and group_by not in GROUP_BY:
        raise InvalidRequest(f"group_by must be one of {', '.join(GROUP_BY)}",
                             param="group_by")
    router: Router = request.app.state.router
    groups = await router.store.decision_stats(
        StatsQuery(since, until, group_by, query_filters(params)))
    reference = router.config.state.savings_reference
    pricing = router.pool.models[reference].config.pricing \
        if reference in router.pool.models else None
    total = Aggregate()
    rows = []
    for key, agg in groups.items():
        total.merge(agg)
        row = stats_row(agg, pricing)
        if group_by is not None:
            row = {group_by: _iso(key * 3600.0) if group_by == "hour" else key, **row}
        rows.append((key, row))
    if group_by == "hour":
        rows.sort(key=lambda item: item[0])
    else:
        rows.sort(key=lambda item: -item[1]["requests"])
    return json_response({
        "object": "routeyard.stats", "since": _iso(since), "until": _iso(until),
        "group_by": group_by,
        "savings_baseline": ({"reference_model": reference} if pricing is not None
                             else "dearest_candidate"),
        "data": [row for _, row in rows] if group_by is not None else [],
        "total": stats_row(total, pricing),
    })


def stats_row(agg: Aggregate, pricing: Any) -> dict[str, Any]:
    n = agg.requests
    if pricing is not None:
        baseline = pricing.cost(agg.prompt_tokens, agg.completion_tokens)
    else:
        baseline = agg.dearest_cost_usd
    return {
        "requests": n,
        "errors": agg.errors,
        "error_rate": agg.errors / n if n else None,
        "prompt_tokens": agg.prompt_tokens,
        "completion_tokens": agg.completion_tokens,
        "cost_usd": round(agg.cost_usd, 10),
        "baseline_cost_usd": round(baseline, 10),
        "savings_usd": round(baseline - agg.cost_usd, 10),
        "energy_j": round(agg.energy_j, 6),  # estimated (docs/routing.md#energy)
        "energy_j_per_request": round(agg.energy_j / n, 6) if n else None,
        "latency_ms": {"mean": round(agg.latency_sum / n, 3) if n else None,
                       "p50": percentile(agg.latency, 0.5),
                       "p95": percentile(agg.latency, 0.95)},
        "ttft_ms": {"count": agg.ttft_count, "p50": percentile(agg.ttft, 0.5),
                    "p95": percentile(agg.ttft, 0.95)},
        "cache": {"ran": agg.cache_ran, "hits": agg.cache_hits,
                  "hit_rate": agg.cache_hits / agg.cache_ran if agg.cache_ran else None},
        "feedback": {"count": agg.feedback_count,
                     "mean": agg.feedback_sum / agg.feedback_count
                     if agg.feedback_count else None},
    }


ROUTES: list[BaseRoute] = [
    Route("/v1/decisions", list_decisions, methods=["GET"]),
    Route("/v1/decisions/{request_id}", get_decision, methods=["GET"]),
    Route("/v1/stats", stats, methods=["GET"]),
]
