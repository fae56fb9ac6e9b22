"""Agent sessions' state: kept in the store by the accounting's observer on every backend,
expiring after the idle time; the decision log's `session` column, filtered and grouped by on
every store (and added to an old SQLite file); the Responses API's chain as a session."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from fakeclock import FakeClock
from gateway_support import LARGE_PRICE, SMALL_PRICE
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator

from routeyard import Router
from routeyard.catalog import build_config
from routeyard.eval.policy import read_log
from routeyard.gateway.sessions import SessionState
from routeyard.signals.session import CHAIN_HEADER
from routeyard.state import DecisionRecord, MemoryStore, SQLiteStore, Store
from routeyard.state.query import DecisionQuery, StatsQuery

USER = [{"role": "user", "content": "Write the next function."}]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", "large", "--model", "small", "--ttft-ms", "0",
                         "--tpot-ms", "0", "--output-tokens", "8") as process:
        yield process


def router_config(sim: SimulatorProcess, sessions: dict[str, Any]) -> dict[str, Any]:
    return {
        "models": [{"name": "large", "pricing": LARGE_PRICE,
                    "endpoints": [{"base_url": sim.base_url, "name": "large-a"}]},
                   {"name": "small", "pricing": SMALL_PRICE,
                    "endpoints": [{"base_url": sim.base_url}]}],
        "default": {"name": "everyday", "candidates": ["large", "small"]},
        "pool": {"health_check": {"interval_s": 0}}, "server": {"watch_config_s": 0},
        "sessions": sessions}


def test_state_survives_an_unreadable_value() -> None:
    state = SessionState(usd=0.5, tokens=30, steps=2, model="large", endpoint="e", updated=1.0)
    assert SessionState.from_bytes(state.to_bytes()) == state
    assert SessionState.from_bytes(b"{not json") == SessionState()
    assert SessionState.from_bytes(None) == SessionState()


async def test_the_observer_keeps_each_sessions_state(sim: SimulatorProcess, store: Store
                                                      ) -> None:
    """A real Router on each store backend answers three steps of one session; the state
    counts them: spend, tokens, steps, the model and endpoint last used."""
    built = build_config(router_config(sim, {"track": True, "idle_ttl_s": 60}))
    router = Router(built, store=store)
    router.owns_store = False  # the fixture closes it
    async with router:
        costs = 0.0
        for _ in range(3):
            body = {"model": "auto", "messages": USER, "max_tokens": 8}
            plan = await router.plan(body, {"x-session-id": "agent-7"})
            assert plan.session == "h:agent-7"
            answer = await router.complete(body, plan)
            usage = answer.response["usage"]
            costs += (usage["prompt_tokens"] * LARGE_PRICE["input_per_mtok"]
                      + usage["completion_tokens"] * LARGE_PRICE["output_per_mtok"]) / 1e6
            await router.background.drain()
        assert router.sessions is not None
        state = await router.sessions.state("h:agent-7")
        assert state is not None
        assert state.steps == 3
        assert state.usd == pytest.approx(costs)
        assert state.tokens == 3 * (usage["prompt_tokens"] + usage["completion_tokens"])
        assert (state.model, state.endpoint) == ("large", "large-a")
        assert await router.sessions.state("h:someone-else") is None
        await store.flush()
        logged = await store.get_decision(plan.request_id)
        assert logged is not None and logged.session == "h:agent-7"  # the log's session column


async def test_state_expires_after_the_idle_time(sim: SimulatorProcess) -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    router = Router(build_config(router_config(sim, {"track": True, "idle_ttl_s": 30})),
                    store=store)
    async with router:
        body = {"model": "auto", "messages": USER, "max_tokens": 8,
                "metadata": {"session_id": "idle-1"}}
        await router.complete(body, await router.plan(body, {}))
        await router.background.drain()
        assert router.sessions is not None
        assert (await router.sessions.state("m:idle-1")) is not None
        clock.advance(31)
        assert (await router.sessions.state("m:idle-1")) is None


# -- the decision log's session column ------------------------------------------------------


def record(i: int, session: str | None, cost: float) -> DecisionRecord:
    return DecisionRecord(
        request_id=f"req_{i:04d}", time=time.time() - 600 + i, decision="everyday",
        model="large", endpoint="e", latency_ms=10.0, prompt_tokens=10, completion_tokens=5,
        cost_usd=cost, status="ok", surface="chat", session=session)


async def test_the_log_filters_and_groups_by_session(store: Store) -> None:
    for i in range(9):
        store.record_decision(record(i, ("h:a", "h:b", None)[i % 3], 0.001 * (i + 1)))
    await store.flush()
    now = time.time()
    groups = await store.decision_stats(StatsQuery(since=now - 3600, until=now + 1,
                                                   group_by="session"))
    assert {k: v.requests for k, v in groups.items()} == {"h:a": 3, "h:b": 3, None: 3}
    assert groups["h:a"].cost_usd == pytest.approx(0.001 * (1 + 4 + 7))
    page = await store.query_decisions(DecisionQuery(filters=(("session", "h:b"),)))
    assert sorted(r.request_id for r in page.records) == ["req_0001", "req_0004", "req_0007"]
    assert all(r.session == "h:b" for r in page.records)
    filtered = await store.decision_stats(StatsQuery(
        since=now - 3600, until=now + 1, group_by="model", filters=(("session", "h:a"),)))
    assert {k: v.requests for k, v in filtered.items()} == {"large": 3}


async def test_an_old_sqlite_file_gets_the_session_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = SQLiteStore(path)
    await old.start()
    old.record_decision(record(1, None, 0.001))
    await old.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP INDEX decisions_session")
        conn.execute("ALTER TABLE decisions DROP COLUMN session")
    store = SQLiteStore(path)
    await store.start()
    try:
        store.record_decision(record(2, "h:new", 0.002))
        await store.flush()
        page = await store.query_decisions(DecisionQuery(filters=(("session", "h:new"),)))
        assert [r.request_id for r in page.records] == ["req_0002"]
        assert (await store.get_decision("req_0001")).session is None  # type: ignore[union-attr]
    finally:
        await store.close()


@pytest.mark.parametrize("also_before_implicit", [False, True])
async def test_an_old_sqlite_file_is_read_without_upgrading(tmp_path: Path,
                                                            also_before_implicit: bool) -> None:
    """evaluate-policy and advise read a log read-only: one written before sessions (and
    before implicit feedback) is read as it is, its records in no session."""
    path = tmp_path / "old.db"
    old = SQLiteStore(path)
    await old.start()
    old.record_decision(record(1, None, 0.001))
    await old.record_feedback("req_0001", 0.5)
    await old.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP INDEX decisions_session")
        conn.execute("ALTER TABLE decisions DROP COLUMN session")
        if also_before_implicit:
            conn.execute("ALTER TABLE decision_feedback DROP COLUMN implicit")
    [found] = read_log(str(path))
    assert (found.request_id, found.session, found.feedback) == ("req_0001", None, 0.5)


# -- the Responses API: a previous_response_id chain is one session ---------------------------


@pytest.fixture(scope="module")
def responses_router(sim: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[RouterProcess]:
    # Two steps per session: a chain's third counted turn is refused.
    found = router_config(sim, {"budgets": [{"scope": "session", "kind": "steps",
                                             "limit": 2}]})
    with start_router(found, tmp_path_factory.mktemp("sessions-responses")) as process:
        yield process


def test_a_response_chain_is_one_session(responses_router: RouterProcess) -> None:
    client = openai.OpenAI(base_url=responses_router.base_url, api_key="unused",
                           max_retries=0)
    first = client.responses.create(model="auto", input="Start the task.")
    previous = first.id
    for _ in range(2):  # counted against r:<first.id>; the first turn itself is not
        turn = client.responses.create(model="auto", input="Next step.",
                                       previous_response_id=previous)
        previous = turn.id
        time.sleep(0.05)  # the state is written just after the answer
    with pytest.raises(openai.RateLimitError) as refused:
        client.responses.create(model="auto", input="Next step.",
                                previous_response_id=previous)
    assert refused.value.code == "budget_exceeded"
    assert f"session r:{first.id} budget" in refused.value.message
    # A new chain is a new session.
    assert client.responses.create(model="auto", input="Another task.").id


def test_a_client_cannot_name_the_chain_itself(responses_router: RouterProcess) -> None:
    """The chain header is Routeyard's own: one a client sends is dropped, so these turns
    belong to no session and are never counted."""
    client = openai.OpenAI(base_url=responses_router.base_url, api_key="unused",
                           max_retries=0)
    for _ in range(4):
        client.responses.create(model="auto", input="Hello.",
                                extra_headers={CHAIN_HEADER: "resp_forged"})
        time.sleep(0.05)


def test_library_sessions_off_keep_no_state() -> None:
    async def run() -> None:
        models = [{"name": "large", "pricing": LARGE_PRICE,
                   "endpoints": [{"base_url": "http://127.0.0.1:9/v1"}]}]
        router = Router(build_config({"models": models, "default": {"candidates": ["large"]},
                                      "pool": {"health_check": {"interval_s": 0}}}),
                        store=MemoryStore())
        assert router.sessions is None
        plan = await router.plan({"model": "auto", "messages": USER}, {"x-session-id": "s"})
        assert plan.session is None

    asyncio.run(run())
