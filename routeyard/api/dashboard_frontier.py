"""GET /dashboard/api/frontier: `routeyard advise`'s (cost, quality) frontier per decision, for
the dashboard's Frontier view.

advise reads the whole window of the log and bootstraps every estimate: seconds of CPU on a
busy log. So the answer is computed off the event loop (the store's own async reads, then
advise in a worker thread), one computation at a time per process, and cached per parameters
for TTL_S. Requests for a key being computed share that one computation; once a key has an
answer, an expired one is served (marked `stale`) while the next is computed in the
background, so a poll never waits twice. A window given as a duration (`since=24h`) keeps one
cache key while the window slides; absolute times are keyed as given.

Without enough feedback the answer is a 200 with `status: "waiting"` and a message ("no
frontier yet: N records with feedback, needs M"), not an error.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from routeyard.api.decisions import json_response, parse_time, query_params
from routeyard.errors import InvalidRequest
from routeyard.eval.advise import AdviseError, Settings, advise
from routeyard.router import Router
from routeyard.state import DecisionRecord, Store
from routeyard.state.query import MAX_PAGE, DecisionQuery

log = logging.getLogger(__name__)

TTL_S = 60.0  # an answer is fresh this long
STALE_S = 900.0  # an expired answer younger than this is served while the next is computed
MAX_KEYS = 32  # cached parameter sets per process (least recently used goes first)
MAX_RECORDS = 100_000  # the newest records of the window read; `complete` says if that was all
MAX_DECISION_CHARS = 200
DEFAULT_SINCE = "24h"
_PARAMS = frozenset({"decision", "since", "until"})
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_MAX_AGO_S = 366 * 86400.0

# (kind, seconds): ("ago", s) is `s` before the computation; ("at", t) is the unix time t.
TimeSpec = tuple[str, float]


@dataclass(frozen=True, slots=True)
class FrontierKey:
    decision: str | None
    since: TimeSpec
    until: TimeSpec | None  # None: up to the computation's time


def _time_spec(value: str, param: str) -> TimeSpec:
    """A duration back from now (30m, 24h, 7d, as `routeyard advise --since`), unix seconds or
    ISO 8601."""
    match = _DURATION.match(value.strip())
    if match:
        seconds = float(match[1]) * _UNIT_S[match[2]]
        if not 0 < seconds <= _MAX_AGO_S:
            raise InvalidRequest(f"{param} must be a duration from 1s to 366d ago, not "
                                 f"{value!r}", param=param)
        return ("ago", seconds)
    return ("at", parse_time(value, param))


def _resolve(spec: TimeSpec, now: float) -> float:
    kind, seconds = spec
    return now - seconds if kind == "ago" else seconds


def frontier_key(request: Request) -> FrontierKey:
    params = query_params(request, _PARAMS)
    decision = params.get("decision")
    if decision is not None:
        if not decision or len(decision) > MAX_DECISION_CHARS \
                or any(ord(c) < 32 for c in decision):
            raise InvalidRequest(f"decision must be a decision's name (1 to "
                                 f"{MAX_DECISION_CHARS} printable characters)",
                                 param="decision")
        if decision == "direct":
            raise InvalidRequest("'direct' requests named their model: there is no choice to "
                                 "advise on", param="decision")
    since = _time_spec(params.get("since", DEFAULT_SINCE), "since")
    until = _time_spec(params["until"], "until") if "until" in params else None
    now = time.time()
    if until is not None and _resolve(since, now) >= _resolve(until, now):
        raise InvalidRequest("since must be before until", param="since")
    return FrontierKey(decision, since, until)


# -- the computation -------------------------------------------------------------------------


async def read_window(store: Store, since: float, until: float | None,
                      decision: str | None) -> tuple[list[DecisionRecord], bool]:
    """The window's records, newest first, up to MAX_RECORDS; and whether that was all. Only
    the store's async query method: the SQLite and PostgreSQL stores do their I/O off the loop,
    and each page gives the loop back."""
    filters = (("decision", decision),) if decision else ()
    found: list[DecisionRecord] = []
    after: tuple[float, str] | None = None
    while len(found) < MAX_RECORDS:
        page = await store.query_decisions(DecisionQuery(
            since, until, filters, None, min(MAX_PAGE, MAX_RECORDS - len(found)), after))
        found += page.records
        if page.cursor is None or not page.records:
            return found, True
        after = page.records[-1].time, page.records[-1].request_id
    return found, False


def waiting(message: str) -> dict[str, Any]:
    return {"status": "waiting", "message": message}


def shape(report: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    """advise's whole-decision groups, each with its state and `on_frontier` per model."""
    out = []
    for group in report["groups"]:
        if group["slice"] is not None:
            continue
        on = set(group["frontier"])
        models = [m | {"on_frontier": m["model"] in on} for m in group["models"]]
        state = {"status": "ready", "message": None} if on else waiting(
            f"no frontier yet: {group['feedback']} records with feedback, needs "
            f"{settings.min_feedback} for a model")
        out.append({"decision": group["decision"], **state, "requests": group["requests"],
                    "feedback": group["feedback"], "needs": settings.min_feedback,
                    "models": models, "frontier": group["frontier"],
                    "suggestions": group["suggestions"]})
    return out


def analyse(records: list[DecisionRecord], settings: Settings) -> dict[str, Any]:
    """The numeric part (run in a worker thread): advise, or the waiting state it implies."""
    routed = [r for r in records if r.decision not in (None, "direct")]
    with_feedback = sum(r.feedback is not None for r in routed)
    counts = {"records": len(routed), "feedback": with_feedback,
              "needs": settings.min_feedback}
    try:
        report = advise(records, slices=(), settings=settings)
    except AdviseError:
        if not routed:
            return counts | waiting("no frontier yet: no routed request in this window") \
                | {"data": []}
        return counts | waiting(f"no frontier yet: {with_feedback} records with feedback, "
                                f"needs {settings.min_feedback} for a model") | {"data": []}
    data = shape(report, settings)
    ready = [d for d in data if d["status"] == "ready"]
    state = {"status": "ready", "message": None} if ready else waiting(
        f"no frontier yet: {with_feedback} records with feedback, needs "
        f"{settings.min_feedback} for a model")
    return counts | state | {"settings": report["settings"], "data": data}


async def compute(router: Router, key: FrontierKey, settings: Settings) -> dict[str, Any]:
    started = time.time()
    since = _resolve(key.since, started)
    until = _resolve(key.until, started) if key.until is not None else None
    records, complete = await read_window(router.store, since, until, key.decision)
    read_s = time.time() - started
    result = await asyncio.to_thread(analyse, records, settings)
    return {"object": "routeyard.dashboard.frontier", "decision": key.decision,
            "since": since, "until": until if until is not None else started,
            "complete": complete, **result, "computed_at": time.time(),
            "read_s": round(read_s, 3), "compute_s": round(time.time() - started, 3)}


# -- the cache -------------------------------------------------------------------------------


@dataclass(slots=True)
class Entry:
    value: dict[str, Any] | None = None
    done_at: float = 0.0
    task: asyncio.Task[dict[str, Any]] | None = None


@dataclass(slots=True)
class FrontierCache:
    """One router's answers by key. A key runs at most one computation at a time; all keys
    share `one_at_a_time`, so a burst of distinct keys queues instead of taking every core."""

    settings: Settings = field(default_factory=Settings)
    entries: OrderedDict[FrontierKey, Entry] = field(default_factory=OrderedDict)
    one_at_a_time: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
    computations: int = 0  # started, for tests and the answer's `computations`

    async def get(self, router: Router, key: FrontierKey) -> tuple[dict[str, Any], bool]:
        """(answer, stale)."""
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = Entry()
            self._evict()
        self.entries.move_to_end(key)
        now = time.time()
        age = now - entry.done_at
        if entry.value is not None and age < TTL_S:
            return entry.value, False
        if entry.task is None:
            entry.task = asyncio.create_task(self._run(router, key, entry))
            entry.task.add_done_callback(_logged)
        if entry.value is not None and age < STALE_S:
            return entry.value, True
        # shield: a client that goes away does not cancel what other waiters share.
        return await asyncio.shield(entry.task), False

    async def _run(self, router: Router, key: FrontierKey, entry: Entry) -> dict[str, Any]:
        try:
            async with self.one_at_a_time:
                self.computations += 1
                value = await compute(router, key, self.settings)
            entry.value, entry.done_at = value, time.time()
            return value
        finally:
            entry.task = None

    def _evict(self) -> None:
        while len(self.entries) > MAX_KEYS:
            oldest = next((k for k, e in self.entries.items() if e.task is None), None)
            if oldest is None:
                return
            del self.entries[oldest]


def _logged(task: asyncio.Task[dict[str, Any]]) -> None:
    """A failed background computation (its waiters, if any, got the error): logged once."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("the dashboard's frontier computation failed: %r", task.exception())


_CACHES: weakref.WeakKeyDictionary[Router, FrontierCache] = weakref.WeakKeyDictionary()


def cache_of(router: Router) -> FrontierCache:
    found = _CACHES.get(router)
    if found is None:
        found = _CACHES[router] = FrontierCache()
    return found


async def frontier(request: Request) -> Response:
    """GET /dashboard/api/frontier?decision&since&until: per decision, each model's estimated
    cost and quality with intervals, the frontier and the suggestions (see the module doc)."""
    key = frontier_key(request)
    router: Router = request.app.state.router
    answer, stale = await cache_of(router).get(router, key)
    return json_response(answer | {"stale": stale,
                                   "age_s": round(time.time() - answer["computed_at"], 3)})
