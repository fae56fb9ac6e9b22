"""Sessions across two `routeyard serve` replicas on the real Redis: a session's steps counted
on one replica steer and refuse it on the other, and a Responses chain continued on the other
replica stays one session."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import openai
import orjson
import pytest
import redis
from gateway_support import LARGE_PRICE, SMALL_PRICE
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator
from stores import REDIS_URL, needs_redis, unique_prefix

USER = [{"role": "user", "content": "Run the tests and fix what fails."}]
LIMIT = 6


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", "large", "--model", "small", "--ttft-ms", "0",
                         "--tpot-ms", "0", "--output-tokens", "8") as process:
        yield process


@pytest.fixture(scope="module")
def prefix() -> Iterator[str]:
    with unique_prefix("sessions") as found:
        yield found


@pytest.fixture(scope="module")
def replicas(sim: SimulatorProcess, prefix: str, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[list[RouterProcess]]:
    config: dict[str, Any] = {
        "models": [{"name": "large", "pricing": LARGE_PRICE,
                    "endpoints": [{"base_url": sim.base_url}]},
                   {"name": "small", "pricing": SMALL_PRICE,
                    "endpoints": [{"base_url": sim.base_url}]}],
        "default": {"name": "everyday", "candidates": ["large", "small"]},
        "pool": {"health_check": {"interval_s": 0}}, "server": {"watch_config_s": 0},
        "state": {"backend": "redis", "redis_url": REDIS_URL, "key_prefix": prefix},
        # Steps: no pressure up to 3 of 6, then λ rises; the 7th step is refused.
        "sessions": {"idle_ttl_s": 120,
                     "budgets": [{"scope": "session", "kind": "steps", "limit": LIMIT}]}}
    with ExitStack() as stack:
        yield [stack.enter_context(start_router(dict(config),
                                                tmp_path_factory.mktemp(f"replica{i}")))
               for i in range(2)]


def stored_steps(prefix: str, session: str) -> int:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        raw = client.get(f"{prefix}:kv:session:{session}:budget")
    finally:
        client.close()
    return int(orjson.loads(raw)["steps"]) if raw is not None else 0


def wait_for_steps(prefix: str, session: str, steps: int) -> None:
    """The state is written just after each answer, in the background."""
    deadline = time.monotonic() + 5
    while stored_steps(prefix, session) < steps:
        assert time.monotonic() < deadline, f"step {steps} of {session} never counted"
        time.sleep(0.01)


@needs_redis
def test_a_session_is_shared_by_both_replicas(replicas: list[RouterProcess], prefix: str
                                              ) -> None:
    clients = [openai.OpenAI(base_url=r.base_url, api_key="unused", max_retries=0)
               for r in replicas]
    chosen = []
    for step in range(LIMIT):
        raw = clients[step % 2].chat.completions.with_raw_response.create(
            model="auto", messages=USER, max_tokens=8,  # type: ignore[arg-type]
            extra_headers={"x-session-id": "shared-1"})
        chosen.append(raw.headers["x-routeyard-model"])
        wait_for_steps(prefix, "h:shared-1", step + 1)
    # Fractions 0, 1/6, 2/6, 3/6 spent: no pressure; 4/6 and 5/6: the cheap model.
    assert chosen == ["large"] * 4 + ["small"] * 2
    ttl = redis.Redis.from_url(REDIS_URL).ttl(f"{prefix}:kv:session:h:shared-1:budget")
    assert 0 < ttl <= 120
    for client in clients:  # spent on both, whichever replica counted the steps
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model="auto", messages=USER,  # type: ignore[arg-type]
                                           extra_headers={"x-session-id": "shared-1"})
        assert refused.value.code == "budget_exceeded"
        assert "6 steps of 6 steps is spent" in refused.value.message


@needs_redis
def test_a_response_chain_continues_on_the_other_replica(replicas: list[RouterProcess],
                                                         prefix: str) -> None:
    clients = [openai.OpenAI(base_url=r.base_url, api_key="unused", max_retries=0)
               for r in replicas]
    first = clients[0].responses.create(model="auto", input="Start.")
    previous = first.id
    for turn in range(3):
        previous = clients[(turn + 1) % 2].responses.create(
            model="auto", input="Go on.", previous_response_id=previous).id
        wait_for_steps(prefix, f"r:{first.id}", turn + 1)
    assert stored_steps(prefix, f"r:{first.id}") == 3
