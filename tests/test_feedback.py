"""Feedback: errors for bad, unknown and duplicate ids; online learners learn from it, keep it
across restarts and share it across replicas through Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator
from stores import REDIS_URL, needs_redis

from routeyard import Router
from routeyard.catalog import build_config
from routeyard.serving.feedback import DuplicateFeedback
from routeyard.state import RedisStore, SQLiteStore, Store


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", "a", "--model", "b", "--ttft-ms", "0",
                         "--output-tokens", "3") as process:
        yield process


def config(sim: SimulatorProcess, **extra: Any) -> dict[str, Any]:
    endpoint = [{"base_url": sim.base_url}]
    return {
        "models": [{"name": "a", "endpoints": endpoint}, {"name": "b", "endpoints": endpoint}],
        "default": {"name": "learning", "candidates": ["a", "b"], "algorithm": "ema",
                    "algorithm_options": {"epsilon": 0.0}},
        "pool": {"health_check": {"interval_s": 0}},
        **extra,
    }


@pytest.fixture(scope="module")
def gateway(sim: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RouterProcess]:
    with start_router(config(sim), tmp_path_factory.mktemp("fb")) as process:
        yield process


def ask(gateway: RouterProcess) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}/chat/completions", timeout=30, json={
        "model": "auto", "messages": [{"role": "user", "content": "hi"}]})


def feedback(gateway: RouterProcess, body: Any) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}/feedback", json=body, timeout=30)


def test_feedback_is_counted_once_and_errors_are_clear(gateway: RouterProcess) -> None:
    request_id = ask(gateway).headers["x-routeyard-request-id"]
    first = feedback(gateway, {"request_id": request_id, "rating": 5})
    assert first.status_code == 200, first.text
    assert first.json()["learner"] == "ema" and first.json()["reward"] == 1.0
    again = feedback(gateway, {"request_id": request_id, "score": 0.2})
    assert again.status_code == 409 and again.json()["error"]["code"] == "duplicate_feedback"
    unknown = feedback(gateway, {"request_id": "req_nope", "correct": True})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_request_id"
    for bad in ({"request_id": request_id}, {"request_id": request_id, "rating": 9},
                {"request_id": request_id, "rating": 5, "score": 1.0},
                {"request_id": 7, "correct": True}, {"request_id": request_id, "correct": "yes"},
                [1, 2]):
        response = feedback(gateway, bad)
        assert response.status_code == 400, (bad, response.text)
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_preference_between_two_requests(gateway: RouterProcess) -> None:
    one = ask(gateway).headers["x-routeyard-request-id"]
    two = ask(gateway).headers["x-routeyard-request-id"]
    response = feedback(gateway, {"request_id": one, "preferred_over": two})
    assert response.status_code == 200, response.text
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'routeyard_feedback_total{decision="learning"}' in metrics


async def _teach(router: Router, good: str, rounds: int = 12) -> None:
    """Reward `good` and punish the other until the learner prefers `good`."""
    for _ in range(rounds):
        plan = await router.plan({"model": "auto",
                                  "messages": [{"role": "user", "content": "hi"}]})
        result = await router.complete({"model": "auto",
                                        "messages": [{"role": "user", "content": "hi"}]}, plan)
        served = result.served.model.name
        await router.submit_feedback({"request_id": plan.request_id,
                                      "score": 1.0 if served == good else 0.0})


async def _choice(router: Router) -> str:
    return (await router.route("hi"))["model"]


async def test_learned_state_survives_a_restart(sim: SimulatorProcess, tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    async with Router(build_config(config(sim)), store=SQLiteStore(path)) as first:
        await _teach(first, "b")
        assert await _choice(first) == "b"
    async with Router(build_config(config(sim)), store=SQLiteStore(path)) as second:
        assert await _choice(second) == "b"


def _redis_store(prefix: str) -> Store:
    return RedisStore(REDIS_URL, key_prefix=prefix)


@needs_redis
async def test_replicas_share_learning_through_redis(sim: SimulatorProcess) -> None:
    prefix = f"routeyard-fb-{uuid.uuid4().hex[:8]}"
    try:
        async with Router(build_config(config(sim)), store=_redis_store(prefix)) as one, \
                Router(build_config(config(sim)), store=_redis_store(prefix)) as two:
            await _teach(one, "b")
            await two.feedback.load_states()  # what the periodic refresh does
            assert await _choice(two) == "b"
            # Feedback for a request served by the other replica is found and counted once.
            plan = await one.plan({"model": "auto",
                                   "messages": [{"role": "user", "content": "x"}]})
            await one.complete({"model": "auto",
                                "messages": [{"role": "user", "content": "x"}]}, plan)
            await one.store.flush()
            assert plan.model == "b"  # `one` learned that b is better
            assert (await two.submit_feedback({"request_id": plan.request_id,
                                               "rating": 4}))["model"] == "b"
            with pytest.raises(DuplicateFeedback):
                await one.submit_feedback({"request_id": plan.request_id, "rating": 4})
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)


def test_preference_across_decisions_is_refused_and_learns_nothing(
        sim: SimulatorProcess, tmp_path: Path) -> None:
    learning = {"algorithm": "ema", "algorithm_options": {"epsilon": 0.0}}
    cfg = config(sim, decisions=[{"name": "elsewhere", "when": {"keywords_any": ["elsewhere"]},
                                  "candidates": ["a", "b"], **learning}])

    def ask_for(gateway: RouterProcess, text: str, decision: str) -> str:
        response = httpx.post(f"{gateway.base_url}/chat/completions", timeout=30, json={
            "model": "auto", "messages": [{"role": "user", "content": text}]})
        assert response.status_code == 200, response.text
        assert response.headers["x-routeyard-decision"] == decision
        return response.headers["x-routeyard-request-id"]

    async def learned(decision: str) -> bytes | None:
        # The learner's state as the gateway persists it, read from its own SQLite file.
        store = SQLiteStore(tmp_path / "state.db")
        await store.start()
        try:
            return await store.get_value(f"online:{decision}")
        finally:
            await store.close()

    with start_router(cfg, tmp_path) as gateway:
        here = ask_for(gateway, "hi", "learning")
        there = ask_for(gateway, "go elsewhere", "elsewhere")
        refused = feedback(gateway, {"request_id": here, "preferred_over": there})
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["param"] == "preferred_over" and "preferred_over" in error["message"]
        assert error["type"] == "invalid_request_error"
        for decision in ("learning", "elsewhere"):
            assert asyncio.run(learned(decision)) is None, decision
        # The refusal did not use up the request's one feedback: a valid preference counts.
        again = ask_for(gateway, "hi again", "learning")
        accepted = feedback(gateway, {"request_id": here, "preferred_over": again})
        assert accepted.status_code == 200, accepted.text
        assert asyncio.run(learned("learning")) is not None
        assert asyncio.run(learned("elsewhere")) is None
