"""GET /dashboard/api/frontier, in-process (httpx's ASGI transport, a memory store) on a
synthetic log with known truth: decision `chat` has `cheap` (cost 0.001) as good as `big`
(0.01) and `poor` (0.005) clearly worse; `fresh` has too little feedback. The cheap model must
be on the frontier and in a suggestion, the dominated one off it; too little feedback is a
"waiting" state, not an error; the dashboard's auth applies; bad parameters are 400s in
OpenAI's schema; and the computation is cached, shared and kept off the event loop.
The browser side is tests/test_dashboard_frontier_browser.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest

from routeyard.api import create_app, dashboard_frontier
from routeyard.config.loader import build_config
from routeyard.router import Router
from routeyard.state import DecisionRecord

ADMIN = "sk-frontier-admin-0001"
USER = "sk-frontier-user-0001"
CSRF = {"x-routeyard-dashboard": "1"}
AUTH = {"authorization": f"Bearer {ADMIN}", **CSRF}
COST = {"cheap": 0.001, "big": 0.01, "poor": 0.005}
QUALITY = {"cheap": 0.8, "big": 0.8, "poor": 0.5}
NOW = time.time()


def _config() -> dict[str, Any]:
    return {"models": [{"name": "m", "endpoints": [{"base_url": "http://127.0.0.1:9/v1"}]}],
            "default": {"name": "chat", "candidates": ["m"]},
            "state": {"backend": "memory"},
            "server": {"admin_keys": [ADMIN], "api_keys": [USER]},
            "pool": {"health_check": {"interval_s": 0}}}


def _record(i: int, decision: str, model: str, rng: np.random.Generator,
            probability: float | None) -> DecisionRecord:
    selection = {"algorithm": "ema", "probability": probability} if probability else None
    return DecisionRecord(
        request_id=f"req_{decision}_{i:06d}", time=NOW - 600 - i, decision=decision,
        model=model, endpoint=f"{model}#0", latency_ms=80.0, prompt_tokens=100,
        completion_tokens=40, cost_usd=COST[model] * float(rng.uniform(0.9, 1.1)),
        status="ok", detail={"selection": selection, "signals": {"domain:chat": 0.9}})


async def write_log(router: Router, chat: int = 900, fresh: int = 30, seed: int = 3) -> None:
    """`chat`: uniform over the three models, feedback on 80% (Beta scores with the true mean);
    `fresh`: cheap and big, feedback on 5 records only; and a few `direct` records."""
    rng = np.random.default_rng(seed)
    store = router.store
    scored: list[tuple[str, float]] = []
    for i in range(chat):
        model = str(rng.choice(list(COST)))
        record = _record(i, "chat", model, rng, 1 / 3)
        store.record_decision(record)
        if rng.random() < 0.8:
            k = 20.0
            scored.append((record.request_id,
                           float(rng.beta(QUALITY[model] * k, (1 - QUALITY[model]) * k))))
    for i in range(fresh):
        record = _record(i, "fresh", ("cheap", "big")[i % 2], rng, None)
        store.record_decision(record)
        if i < 5:
            scored.append((record.request_id, 0.9))
    for i in range(10):
        store.record_decision(_record(i, "direct", "big", rng, None))
    await store.flush()
    for request_id, score in scored:
        await store.record_feedback(request_id, score)


@pytest.fixture
async def router() -> AsyncIterator[Router]:
    found = Router(build_config(_config()))
    try:
        yield found
    finally:
        await found.close()


def client_of(router: Router) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(router)),
                             base_url="http://r", timeout=60)


def _is_error(answer: httpx.Response, status: int, param: str | None = None) -> None:
    assert answer.status_code == status, (answer.url, answer.text)
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param, error


def _decision(body: dict[str, Any], name: str) -> dict[str, Any]:
    return next(d for d in body["data"] if d["decision"] == name)


async def test_the_frontier_of_a_known_log(router: Router) -> None:
    await write_log(router)
    async with client_of(router) as client:
        answer = await client.get("/dashboard/api/frontier?since=1h", headers=AUTH)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["object"] == "routeyard.dashboard.frontier" and body["status"] == "ready"
    assert body["records"] == 930 and body["complete"] is True  # `direct` is no decision's
    assert [d["decision"] for d in body["data"]] == ["chat", "fresh"]
    chat = _decision(body, "chat")
    assert chat["status"] == "ready" and chat["message"] is None
    models = {m["model"]: m for m in chat["models"]}
    assert set(models) == set(COST)
    for name, m in models.items():
        assert m["status"] == "estimated" and m["estimator"] == "snips"
        assert m["cost"]["low"] <= COST[name] <= m["cost"]["high"], m
        assert m["quality"]["low"] - 0.02 <= QUALITY[name] <= m["quality"]["high"] + 0.02, m
        assert m["on_frontier"] == (name in chat["frontier"])
    # cheap is as good as big at a tenth of the cost: on the frontier, first; poor is beaten.
    assert chat["frontier"][0] == "cheap" and "poor" not in chat["frontier"]
    suggestion = next(s for s in chat["suggestions"] if s["model"] == "cheap"
                      and s["baseline"] == "big")
    assert suggestion["kept_quality"]["low"] >= 0.95
    assert suggestion["cost_share"]["low"] <= 0.1 <= suggestion["cost_share"]["high"] < 0.15
    assert suggestion["requests"]["cheap"] == models["cheap"]["requests"] > 250
    assert suggestion["feedback"]["big"] == models["big"]["feedback"] > 200
    assert "cheap would keep" in suggestion["text"] and "of big's quality" in suggestion["text"]
    # fresh: 5 feedback records, 20 needed per model: waiting, with its counts.
    fresh = _decision(body, "fresh")
    assert fresh["status"] == "waiting" and fresh["frontier"] == [] == fresh["suggestions"]
    assert fresh["message"] == "no frontier yet: 5 records with feedback, needs 20 for a model"
    assert {m["status"] for m in fresh["models"]} == {"not enough data"}


async def test_one_decision_and_a_window(router: Router) -> None:
    await write_log(router)
    async with client_of(router) as client:
        only = (await client.get("/dashboard/api/frontier?decision=chat&since=1h",
                                 headers=AUTH)).json()
        assert [d["decision"] for d in only["data"]] == ["chat"] and only["decision"] == "chat"
        # An absolute window before the log: nothing routed in it.
        early = (await client.get("/dashboard/api/frontier", params={
            "since": "2026-01-01T00:00:00", "until": "2026-01-02T00:00:00"},
            headers=AUTH)).json()
        assert early["status"] == "waiting" and early["data"] == []
        assert early["message"] == "no frontier yet: no routed request in this window"
        unknown = (await client.get("/dashboard/api/frontier?decision=nosuch",
                                    headers=AUTH)).json()
        assert unknown["status"] == "waiting" and unknown["records"] == 0


async def test_empty_log_and_no_feedback_are_waiting_states(router: Router) -> None:
    async with client_of(router) as client:
        empty = await client.get("/dashboard/api/frontier", headers=AUTH)
        assert empty.status_code == 200, empty.text
        assert empty.json()["status"] == "waiting" and empty.json()["records"] == 0
        rng = np.random.default_rng(0)
        for i in range(40):
            router.store.record_decision(_record(i, "chat", "cheap", rng, None))
        await router.store.flush()
        # A new key (a different window): the log without feedback.
        body = (await client.get("/dashboard/api/frontier?since=2h", headers=AUTH)).json()
    assert body["status"] == "waiting" and body["records"] == 40 and body["feedback"] == 0
    assert body["message"] == "no frontier yet: 0 records with feedback, needs 20 for a model"
    assert body["needs"] == 20


async def test_it_needs_the_dashboards_auth(router: Router) -> None:
    async with client_of(router) as client:
        _is_error(await client.get("/dashboard/api/frontier"), 401)
        _is_error(await client.get("/dashboard/api/frontier", headers={
            "authorization": f"Bearer {USER}", **CSRF}), 403)
        login = await client.post("/dashboard/login", json={"key": ADMIN}, headers=CSRF)
        assert login.status_code == 200
        # The session cookie counts only with the CSRF header.
        _is_error(await client.get("/dashboard/api/frontier"), 401)
        assert (await client.get("/dashboard/api/frontier", headers=CSRF)).status_code == 200


BAD = [
    ("decision=", "decision"),
    ("decision=direct", "decision"),
    ("decision=" + "d" * 201, "decision"),
    ("decision=a%0Ab", "decision"),
    ("since=yesterday", "since"),
    ("since=0s", "since"),
    ("since=400d", "since"),
    ("since=-5", "since"),
    ("since=1h&until=2h", "since"),
    ("since=2026-01-02&until=2026-01-01", "since"),
    ("until=nan", "until"),
    ("slice=domain:code", "slice"),
    ("decision=a&decision=b", "decision"),
]


@pytest.mark.parametrize(("query", "param"), BAD)
async def test_bad_parameters_are_400s(router: Router, query: str, param: str) -> None:
    async with client_of(router) as client:
        _is_error(await client.get(f"/dashboard/api/frontier?{query}", headers=AUTH), 400,
                  param)


async def test_one_shared_computation_then_the_cache(router: Router,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    await write_log(router, chat=600)
    cache = dashboard_frontier.cache_of(router)
    async with client_of(router) as client:
        answers = await asyncio.gather(*[client.get("/dashboard/api/frontier?since=3h",
                                                    headers=AUTH) for _ in range(5)])
        assert cache.computations == 1
        bodies = [a.json() for a in answers]
        assert len({b["computed_at"] for b in bodies}) == 1
        assert not any(b["stale"] for b in bodies)
        again = (await client.get("/dashboard/api/frontier?since=3h", headers=AUTH)).json()
        assert cache.computations == 1 and again["computed_at"] == bodies[0]["computed_at"]
        # Another key is another computation.
        await client.get("/dashboard/api/frontier?since=3h&decision=chat", headers=AUTH)
        assert cache.computations == 2
        # Expired: the old answer comes back at once, marked stale, and the next one is made
        # in the background.
        monkeypatch.setattr(dashboard_frontier, "TTL_S", 0.0)
        stale = (await client.get("/dashboard/api/frontier?since=3h", headers=AUTH)).json()
        assert stale["stale"] is True and stale["computed_at"] == bodies[0]["computed_at"]
        key = dashboard_frontier.FrontierKey(None, ("ago", 3 * 3600.0), None)
        running = cache.entries[key].task
        assert running is not None
        await running
        assert cache.computations == 3
        monkeypatch.setattr(dashboard_frontier, "TTL_S", 60.0)
        fresh = (await client.get("/dashboard/api/frontier?since=3h", headers=AUTH)).json()
        assert not fresh["stale"] and fresh["computed_at"] > bodies[0]["computed_at"]


async def test_the_event_loop_keeps_serving_during_a_computation(router: Router) -> None:
    """While advise fits a bigger log, the loop still answers other dashboard calls and its
    worst stall stays far below the computation's length."""
    await write_log(router, chat=6000)
    async with client_of(router) as client:
        stalls: list[float] = []
        computing = asyncio.create_task(client.get("/dashboard/api/frontier?since=5h",
                                                   headers=AUTH))
        started = time.perf_counter()
        await asyncio.sleep(0)
        served = 0
        while not computing.done():
            before = time.perf_counter()
            answer = await client.get("/dashboard/api/session", headers=AUTH)
            assert answer.status_code == 200
            served += 1
            stalls.append(time.perf_counter() - before)
            await asyncio.sleep(0.01)
        took = time.perf_counter() - started
        assert (await computing).json()["status"] == "ready"
    assert took > 0.5, took  # long enough for the check to mean something
    assert served >= 5 and max(stalls) < took / 2, (served, max(stalls), took)
