"""Budgets that degrade gracefully: the curve, the steer over a scripted session (cheaper
models, lower reasoning effort), the 429 `budget_exceeded` at exhaustion over HTTP with the
openai SDK, and bad session ids refused cleanly on every surface."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from gateway_support import LARGE_PRICE, SMALL_PRICE
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator

from routeyard import Router
from routeyard.catalog import build_config
from routeyard.config.sessions import SessionBudgetConfig
from routeyard.errors import InvalidRequest
from routeyard.gateway.session_budget import Curve, SessionBudgetExceeded
from routeyard.gateway.sessions import SessionState
from routeyard.signals.session import session_id, session_key
from routeyard.state import MemoryStore

DEAD = "http://127.0.0.1:9/v1"  # never called: these plans are dry runs
USER = [{"role": "user", "content": "Plan the next step of the refactor."}]


def test_curve_interpolates_and_clamps() -> None:
    curve = Curve([(0.5, 0.0), (0.8, 0.5), (1.0, 1.0)])
    assert curve(0.0) == 0.0 and curve(0.49) == 0.0 and curve(0.5) == 0.0
    assert curve(0.65) == pytest.approx(0.25)
    assert curve(0.9) == pytest.approx(0.75)
    assert curve(1.0) == 1.0 and curve(3.0) == 1.0
    assert Curve([(0.2, 0.4)])(0.1) == 0.0 and Curve([(0.2, 0.4)])(0.7) == 0.4


@pytest.mark.parametrize("curve, why", [
    ([[0.5, 1.5]], r"each in \[0, 1\]"),
    ([[0.8, 0.1], [0.5, 0.2]], "must increase"),
    ([], "at least one"),
])
def test_bad_curves_are_config_errors(curve: list[list[float]], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        SessionBudgetConfig(limit=1, curve=curve)


def dry_router(budgets: list[dict[str, Any]], decision: dict[str, Any]) -> Router:
    models = [{"name": "large", "pricing": LARGE_PRICE, "endpoints": [{"base_url": DEAD}]},
              {"name": "small", "pricing": SMALL_PRICE, "endpoints": [{"base_url": DEAD}]}]
    built = build_config({"models": models, "default": decision,
                          "sessions": {"budgets": budgets},
                          "pool": {"health_check": {"interval_s": 0}}})
    return Router(built, store=MemoryStore())


async def route_at(router: Router, session: str, state: SessionState,
                   headers: dict[str, str] | None = None) -> dict[str, Any]:
    await router.store.set_value(session_key("h:" + session, "budget"), state.to_bytes())
    return await router.route({"model": "auto", "messages": USER},
                              {"x-session-id": session, **(headers or {})})


def test_a_draining_session_shifts_to_the_cheaper_model() -> None:
    async def run() -> list[str]:
        router = dry_router([{"scope": "session", "kind": "steps", "limit": 10}],
                            {"candidates": ["large", "small"]})
        chosen = []
        for steps in range(10):
            found = await route_at(router, "agent-1", SessionState(steps=steps))
            chosen.append(found["model"])
            if found["model"] == "small":
                assert "steered by the session h:agent-1 budget" in found["reason"]
        return chosen

    chosen = asyncio.run(run())
    # Default curve: no pressure up to half spent; then λ grows and the cheap model wins.
    assert chosen == ["large"] * 6 + ["small"] * 4


def test_the_reasoning_effort_steps_down_with_pressure() -> None:
    async def run() -> list[str | None]:
        router = dry_router([{"scope": "session", "kind": "usd", "limit": 1.0,
                              "curve": [[0.2, 0.0], [0.8, 1.0]]}],
                            {"candidates": [{"model": "large", "reasoning_effort": "high"}]})
        efforts = []
        for spent in (0.0, 0.2, 0.45, 0.65, 0.85):
            found = await route_at(router, "agent-2", SessionState(usd=spent))
            efforts.append(found["reasoning_effort"])
        return efforts

    # pressure 0, 0, 0.42, 0.75, 1 → 0, 0, 1, 2, 3 levels down
    assert asyncio.run(run()) == ["high", "high", "medium", "low", "minimal"]


def test_task_and_key_budgets_count_their_own_scope() -> None:
    async def run() -> None:
        router = dry_router([{"scope": "task", "kind": "tokens", "limit": 1000}],
                            {"candidates": ["large", "small"]})
        task_state = SessionState(tokens=1000)
        await router.store.set_value(session_key("h:s1", "task:t1"), task_state.to_bytes())
        with pytest.raises(SessionBudgetExceeded, match="task h:s1/t1 budget"):
            await router.route({"model": "auto", "messages": USER},
                               {"x-session-id": "s1", "x-task-id": "t1"})
        # Another task of the same session, and the session without a task, go on.
        found = await router.route({"model": "auto", "messages": USER},
                                   {"x-session-id": "s1", "x-task-id": "t2"})
        assert found["model"] == "large"
        found = await router.route({"model": "auto", "messages": USER, "metadata": {
            "session_id": "s1"}}, {})
        assert found["model"] == "large"
        with pytest.raises(InvalidRequest, match="x-task-id") as bad:
            await router.route({"model": "auto", "messages": USER},
                               {"x-session-id": "s1", "x-task-id": "a b"})
        assert bad.value.param == "x-task-id"

    asyncio.run(run())


def test_no_budget_no_store_read() -> None:
    """Sessions off: the Router builds no tracker and reads nothing."""
    class CountingStore(MemoryStore):
        reads = 0

        async def get_value(self, key: str) -> bytes | None:
            CountingStore.reads += 1
            return await super().get_value(key)

    async def run() -> None:
        models = [{"name": "large", "pricing": LARGE_PRICE, "endpoints": [{"base_url": DEAD}]}]
        router = Router(build_config({"models": models, "default": {"candidates": ["large"]},
                                      "pool": {"health_check": {"interval_s": 0}}}),
                        store=CountingStore())
        assert router.sessions is None
        await router.route({"model": "auto", "messages": USER}, {"x-session-id": "s"})
        assert CountingStore.reads == 0

    asyncio.run(run())


# -- over HTTP, with the real SDKs and the simulator --------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", "large", "--model", "small", "--ttft-ms", "0",
                         "--tpot-ms", "0", "--output-tokens", "8") as process:
        yield process


@pytest.fixture(scope="module")
def router(sim: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RouterProcess]:
    found = {
        "models": [{"name": "large", "pricing": LARGE_PRICE,
                    "endpoints": [{"base_url": sim.base_url}]},
                   {"name": "small", "pricing": SMALL_PRICE,
                    "endpoints": [{"base_url": sim.base_url}]}],
        "default": {"name": "everyday", "candidates": ["large", "small"]},
        "pool": {"health_check": {"interval_s": 0}}, "server": {"watch_config_s": 0},
        "sessions": {"budgets": [{"scope": "session", "kind": "steps", "limit": 10}]}}
    with start_router(found, tmp_path_factory.mktemp("session-budget")) as process:
        yield process


def step(client: openai.OpenAI, session: str) -> str:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=USER, max_tokens=8, extra_headers={"x-session-id": session})
    return raw.headers["x-routeyard-model"]


def test_a_scripted_session_degrades_then_gets_a_429(router: RouterProcess) -> None:
    client = openai.OpenAI(base_url=router.base_url, api_key="unused", max_retries=0)
    chosen = []
    for _ in range(10):
        chosen.append(step(client, "scripted-1"))
        time.sleep(0.05)  # the state is written just after the answer, in the background
    assert chosen == ["large"] * 6 + ["small"] * 4
    with pytest.raises(openai.RateLimitError) as refused:
        step(client, "scripted-1")
    error = refused.value
    assert error.status_code == 429
    assert error.code == "budget_exceeded"
    assert "session h:scripted-1 budget: 10 steps of 10 steps is spent" in error.message
    assert "0 steps remains" in error.message
    assert "The key has no budget of its own" in error.message
    headers = error.response.headers
    assert headers["x-routeyard-budget-spent"] == "10"
    assert headers["x-routeyard-budget-limit"] == "10"
    assert headers["x-routeyard-budget-remaining"] == "0"
    assert headers["x-should-retry"] == "false"
    budget = error.response.json()["error"]["budget"]  # the same figures, as JSON fields
    assert (budget["scope"], budget["kind"]) == ("session", "steps")
    assert (budget["spent"], budget["limit"], budget["remaining"]) == (10, 10, 0)
    # Another session is unaffected.
    assert step(client, "scripted-2") == "large"


@pytest.mark.parametrize("headers, body, param", [
    ({"x-session-id": "bad id!"}, {}, "x-session-id"),
    ({"x-session-id": "x" * 129}, {}, "x-session-id"),
    ({}, {"metadata": {"session_id": 42}}, "metadata.session_id"),
    ({}, {"metadata": {"session_id": ""}}, "metadata.session_id"),
])
def test_bad_session_ids_get_a_400(router: RouterProcess, headers: dict[str, str],
                                   body: dict[str, Any], param: str) -> None:
    response = httpx.post(f"{router.base_url}/chat/completions", headers=headers, timeout=10,
                          json={"model": "auto", "messages": USER, **body})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param and param in error["message"]


def test_any_anthropic_user_id_names_a_session(router: RouterProcess) -> None:
    """Anthropic's user_id is the client's opaque identifier, not a session id of ours: any
    string is taken (hashed with the first turn), never refused."""
    client = anthropic.Anthropic(base_url=router.url, api_key="unused", max_retries=0)
    answer = client.messages.with_raw_response.create(
        model="auto", max_tokens=8, messages=USER,  # type: ignore[arg-type]
        metadata={"user_id": "has spaces and é"})
    assert answer.status_code == 200


def test_the_anthropic_session_is_the_user_and_the_conversation() -> None:
    def sid(user: str, first: str, later: str | None = None) -> str | None:
        messages = [{"role": "user", "content": first}]
        if later is not None:
            messages += [{"role": "assistant", "content": "ok"},
                         {"role": "user", "content": later}]
        return session_id({"metadata": {"user_id": user}, "messages": messages})

    assert sid("u 1", "plan a trip") == sid("u 1", "plan a trip", "and the hotel?")
    assert sid("u 1", "plan a trip") != sid("u 2", "plan a trip")
    assert sid("u 1", "plan a trip") != sid("u 1", "write a poem")
    assert (sid("u 1", "plan a trip") or "").startswith("a:")

