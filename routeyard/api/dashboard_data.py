"""The dashboard's own JSON endpoints, under /dashboard/api/ (behind the admin key, see
dashboard.py): what the query API (/v1/decisions, /v1/stats) does not answer in one call.

- `series`: the window cut into equal buckets, each aggregated per group (model mix, cost and
  savings, latency, errors, cache over time), plus failovers counted from the records;
- `quality`: per decision, each model's (mean cost, mean feedback) point;
- `signals`: each signal family's latency, from this process's Prometheus histogram;
- `config`: the loaded decisions as a tree, with nothing secret in it;
- `frontier`: `routeyard advise`'s cost/quality frontier per decision (dashboard_frontier.py).

They read through the store's query methods only. Parameters are checked as strictly as the
query API's: a bad one is a 400 in OpenAI's error schema, naming it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from routeyard.api.dashboard_frontier import frontier
from routeyard.api.decisions import (
    json_response,
    query_filters,
    query_params,
    query_window,
    stats_row,
)
from routeyard.errors import InvalidRequest
from routeyard.router import Router
from routeyard.state import DecisionRecord
from routeyard.state.query import (
    FILTER_FIELDS,
    MAX_PAGE,
    Aggregate,
    DecisionQuery,
    StatsQuery,
)

MAX_BUCKETS = 120
MAX_SCANNED = 5000  # records read to count failovers over a window (the newest first)
SERIES_GROUPS = ("model", "decision", "key", "tenant")
_SERIES_PARAMS = frozenset({"since", "until", "buckets", "group_by", *FILTER_FIELDS})
_QUALITY_PARAMS = frozenset({"since", "until"})
# A config value whose name has one of these words (`api_key`, `admin_keys`, `postgres_url`,
# `headers`) is never shown, whatever it holds; `keywords_any` is not a key.
_SECRET_WORDS = frozenset({"key", "keys", "secret", "secrets", "token", "tokens", "password",
                           "passwd", "credential", "credentials", "auth", "authorization",
                           "url", "urls", "dsn", "header", "headers", "cookie", "cookies"})
REDACTED = "[redacted]"


def _pricing(router: Router) -> Any:
    reference = router.config.state.savings_reference
    return router.pool.models[reference].config.pricing \
        if reference in router.pool.models else None


def _buckets(params: dict[str, str]) -> int:
    raw = params.get("buckets")
    if raw is None:
        return 30
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_BUCKETS:
        raise InvalidRequest(f"buckets must be an integer from 1 to {MAX_BUCKETS}",
                             param="buckets")
    return int(raw)


async def series(request: Request) -> Response:
    """GET /dashboard/api/series?since&until&buckets&group_by&<filters>: the window (default:
    the last hour) in `buckets` equal steps; each step's total and groups as /v1/stats rows,
    and its failovers (`attempts`) counted from up to MAX_SCANNED records."""
    params = query_params(request, _SERIES_PARAMS)
    since, until = query_window(params, 3600.0)
    assert since is not None and until is not None
    group_by = params.get("group_by", "model")
    if group_by not in SERIES_GROUPS:
        raise InvalidRequest(f"group_by must be one of {', '.join(SERIES_GROUPS)}",
                             param="group_by")
    count = _buckets(params)
    filters = query_filters(params)
    router: Router = request.app.state.router
    pricing = _pricing(router)
    step = (until - since) / count
    out = []
    for index in range(count):
        start = since + index * step
        end = until if index == count - 1 else start + step
        groups = await router.store.decision_stats(StatsQuery(start, end, group_by, filters))
        total = Aggregate()
        rows = {}
        for key, agg in groups.items():
            rows[str(key)] = stats_row(agg, pricing)
            total.merge(agg)
        out.append({"start": start, "end": end, "groups": rows,
                    "total": stats_row(total, pricing)})
    attempts, complete = await _attempts(router, since, until, filters, since, step, count)
    for bucket, counted in zip(out, attempts, strict=True):
        bucket["attempts"] = counted
    return json_response({"object": "routeyard.dashboard.series", "since": since, "until": until,
                  "step_s": step, "group_by": group_by, "attempts_complete": complete,
                  "data": out})


def failed_over(record: DecisionRecord) -> bool:
    """Some attempt before the answer failed (a retry, another endpoint or model)."""
    attempts = (record.detail or {}).get("attempts") or []
    return any(isinstance(a, dict) and a.get("outcome") != "ok" for a in attempts)


async def _attempts(router: Router, since: float, until: float,
                    filters: tuple[tuple[str, str], ...], origin: float, step: float,
                    count: int) -> tuple[list[dict[str, int]], bool]:
    counted = [{"requests": 0, "failed_over": 0, "to_other_model": 0} for _ in range(count)]
    after = None
    seen = 0
    while seen < MAX_SCANNED:
        page = await router.store.query_decisions(DecisionQuery(
            since, until, filters, None, min(MAX_PAGE, MAX_SCANNED - seen), after))
        for record in page.records:
            slot = counted[min(count - 1, max(0, int((record.time - origin) // step)))]
            slot["requests"] += 1
            if failed_over(record):
                slot["failed_over"] += 1
                attempts = (record.detail or {}).get("attempts") or []
                first = attempts[0].get("model") if isinstance(attempts[0], dict) else None
                if record.model is not None and first != record.model:
                    slot["to_other_model"] += 1
        seen += len(page.records)
        if page.cursor is None:
            return counted, True
        after = page.records[-1].time, page.records[-1].request_id
    return counted, False


async def quality(request: Request) -> Response:
    """GET /dashboard/api/quality?since&until (default: the last 24 hours): per decision, each
    model's requests, mean cost per request and mean feedback, the points of its cost and
    quality trade-off."""
    params = query_params(request, _QUALITY_PARAMS)
    since, until = query_window(params, 24 * 3600.0)
    assert since is not None and until is not None
    router: Router = request.app.state.router
    store = router.store
    by_decision = await store.decision_stats(StatsQuery(since, until, "decision"))
    data = []
    for decision, agg in sorted(by_decision.items(), key=lambda item: -item[1].requests):
        if decision is None:
            continue
        models = await store.decision_stats(StatsQuery(since, until, "model",
                                                       (("decision", str(decision)),)))
        points = [{"model": model, "requests": m.requests,
                   "mean_cost_usd": m.cost_usd / m.requests if m.requests else None,
                   "feedback_count": m.feedback_count,
                   "feedback_mean": m.feedback_sum / m.feedback_count
                   if m.feedback_count else None}
                  for model, m in sorted(models.items(), key=lambda item: str(item[0]))
                  if model is not None]
        data.append({"decision": decision, "requests": agg.requests,
                     "feedback_count": agg.feedback_count,
                     "feedback_mean": agg.feedback_sum / agg.feedback_count
                     if agg.feedback_count else None, "models": points})
    return json_response({"object": "routeyard.dashboard.quality", "since": since, "until": until,
                  "data": data})


def histogram_summary(metric: Any, label: str) -> list[dict[str, Any]]:
    """count, mean and p50/p95/p99 (interpolated in the bucket, in ms) per label value of a
    Prometheus histogram."""
    found: dict[str, dict[str, Any]] = {}
    for family in metric.collect():
        for sample in family.samples:
            name = sample.labels.get(label)
            if name is None:
                continue
            entry = found.setdefault(name, {"buckets": [], "sum": 0.0, "count": 0})
            if sample.name.endswith("_bucket"):
                entry["buckets"].append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_sum"):
                entry["sum"] = sample.value
            elif sample.name.endswith("_count"):
                entry["count"] = int(sample.value)
    rows = []
    for name, entry in sorted(found.items()):
        count = entry["count"]
        buckets = sorted(entry["buckets"])
        rows.append({label: name, "count": count,
                     "mean_ms": entry["sum"] / count * 1000 if count else None,
                     **{f"p{round(q * 100)}_ms": _quantile(buckets, count, q)
                        for q in (0.5, 0.95, 0.99)}})
    return rows


def _quantile(buckets: list[tuple[float, float]], count: int, q: float) -> float | None:
    if not count:
        return None
    rank = q * count
    lower, below = 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank:
            if upper == float("inf"):
                return lower * 1000
            inside = cumulative - below
            share = (rank - below) / inside if inside else 1.0
            return (lower + (upper - lower) * share) * 1000
        lower, below = upper, cumulative
    return lower * 1000


async def signals(request: Request) -> Response:
    """GET /dashboard/api/signals: each signal family's latency (and each model's TTFT and
    time per output token) since this process started, from its Prometheus histograms."""
    query_params(request, frozenset())
    metrics = request.app.state.router.metrics
    return json_response({"object": "routeyard.dashboard.signals", "time": time.time(),
                  "scope": "this worker process, since it started",
                  "signals": histogram_summary(metrics.signal_latency, "family"),
                  "ttft": histogram_summary(metrics.ttft, "model"),
                  "time_per_output_token": histogram_summary(metrics.time_per_output_token,
                                                             "model")})


def redact(value: Any, name: str = "") -> Any:
    """A config section as JSON data, with every value under a secret-looking name hidden."""
    if _SECRET_WORDS.intersection(re.split(r"[_\-.\s]+", name.lower())) \
            and value not in (None, "", [], {}):
        return REDACTED
    if isinstance(value, dict):
        return {str(k): redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, name) for v in value]
    return value


async def config(request: Request) -> Response:
    """GET /dashboard/api/config: the loaded decisions (priority order), the default, the
    aliases and the models' names and prices; never keys, URLs or headers."""
    query_params(request, frozenset())
    router: Router = request.app.state.router
    conf = router.config
    decisions = [redact(d.model_dump(mode="json", exclude_defaults=True))
                 | {"priority": d.priority}
                 for d in sorted(conf.decisions, key=lambda d: -d.priority)]
    models = [{"name": m.name, "kind": m.kind, "pricing": m.pricing.model_dump(mode="json"),
               "endpoints": len(m.endpoints)} for m in conf.models]
    return json_response({"object": "routeyard.dashboard.config",
                  "decision_strategy": getattr(conf, "decision_strategy", None),
                  "aliases": sorted(router.aliases),
                  "decisions": decisions,
                  "default": redact(conf.default.model_dump(mode="json"))
                  if conf.default is not None else None,
                  "models": models})


ENDPOINTS: dict[str, Callable[[Request], Awaitable[Response]]] = {
    "series": series, "quality": quality, "signals": signals, "config": config,
    "frontier": frontier,
}
