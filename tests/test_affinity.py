"""Prefix-cache affinity: a session stays on the endpoint that served it (docs/sessions.md)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from routerproc import start_router
from simproc import SimulatorProcess, start_simulator
from stores import DOWN_URL, REDIS_URL, require_redis, unique_prefix

from routeyard.config import RouteyardConfig
from routeyard.metrics import Metrics
from routeyard.pool import Pool
from routeyard.pool.preference import EndpointPreference
from routeyard.router import Router
from routeyard.serving.affinity import STORE_BACKOFF_S, AffinityHandler
from routeyard.serving.handler import Accounted
from routeyard.state import make_store

COOLDOWN_S = 0.4
SIM_PROFILE = {"ttft_ms": 0, "tpot_ms": 0, "output_tokens_mean": 4,
               "prefill_ms_per_1k_tokens": 1, "prefix_cache_tokens": 100_000}


# -- the pool: which endpoint goes first ------------------------------------------------------


def pool_config(**sessions: Any) -> RouteyardConfig:
    return RouteyardConfig.model_validate({
        "models": [
            {"name": "m", "endpoints": [{"name": "a", "base_url": "http://127.0.0.1:1/v1"},
                                        {"name": "b", "base_url": "http://127.0.0.1:2/v1"},
                                        {"name": "c", "base_url": "http://127.0.0.1:3/v1"}]},
            {"name": "other", "endpoints": [{"name": "x", "base_url": "http://127.0.0.1:4/v1"},
                                            {"name": "c", "base_url": "http://127.0.0.1:5/v1"}]},
        ],
        "sessions": sessions,
    })


def names(endpoints: list[Any]) -> list[str]:
    return [e.name for e in endpoints]


def test_preferred_endpoint_goes_first_while_it_is_available_and_not_overloaded() -> None:
    pool = Pool(pool_config(), Metrics())
    model = pool.models["m"]
    a, b, c = model.endpoints
    prefer_c = EndpointPreference("m", "c", max_extra_load=2)
    assert names(model.endpoints_in_order()) == ["a", "b", "c"]
    assert names(model.endpoints_in_order(prefer_c)) == ["c", "a", "b"]
    # Busier than the least-loaded, within the bound: kept.
    c.outstanding = 2
    assert names(model.endpoints_in_order(prefer_c)) == ["c", "a", "b"]
    # Past the bound: balanced as usual (the least-loaded first), so the session moves.
    c.outstanding = 3
    assert names(model.endpoints_in_order(prefer_c)) == ["a", "b", "c"]
    # The bound counts against the least-loaded *available* endpoint.
    a.outstanding, b.outstanding = 5, 1
    for _ in range(a.breaker.failure_threshold):
        a.breaker.on_failure()
    assert not a.is_available()
    assert names(model.endpoints_in_order(prefer_c)) == ["c", "b", "a"]
    # Unavailable (breaker open, or a failed health check): ignored.
    c.healthy = False
    assert names(model.endpoints_in_order(prefer_c)) == ["b", "c", "a"]


def test_a_preference_for_another_model_or_a_removed_endpoint_is_ignored() -> None:
    pool = Pool(pool_config(), Metrics())
    model = pool.models["m"]
    # `c` exists in both models: only the model named in the preference honours it.
    assert names(pool.models["other"].endpoints_in_order(
        EndpointPreference("m", "c", 4))) == ["x", "c"]
    assert names(pool.models["other"].endpoints_in_order(
        EndpointPreference("other", "c", 4))) == ["c", "x"]
    # A reload removed the session's endpoint: normal balancing.
    assert names(model.endpoints_in_order(EndpointPreference("m", "gone", 4))) == \
        ["a", "b", "c"]


def test_affinity_is_off_by_default_and_then_wraps_nothing() -> None:
    assert pool_config().sessions.endpoint_affinity is False
    off = Router(pool_config())
    assert off.affinity is None
    assert all(isinstance(stack, Accounted) for stack in off.stacks.values())
    on = Router(pool_config(endpoint_affinity=True, affinity_max_extra_in_flight=0))
    assert on.affinity is not None and on.affinity.max_extra_load == 0
    assert all(isinstance(stack, AffinityHandler) for stack in on.stacks.values())
    with pytest.raises(ValueError, match="affinity_max_extra_in_flight"):
        pool_config(endpoint_affinity=True, affinity_max_extra_in_flight=-1)


# -- end to end: routeyard serve, two simulator endpoints, the openai SDK ---------------------


@pytest.fixture(scope="module")
def sims(tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[SimulatorProcess, SimulatorProcess]]:
    config = tmp_path_factory.mktemp("sim") / "sim.yaml"
    config.write_text(yaml.safe_dump({"models": {"m": SIM_PROFILE}}))
    with start_simulator("--config", str(config)) as a, \
            start_simulator("--config", str(config)) as b:
        yield a, b


@pytest.fixture(autouse=True)
def fresh(request: pytest.FixtureRequest) -> None:
    if "sims" in request.fixturenames:
        for sim in request.getfixturevalue("sims"):
            sim.reset()
            sim.set_profile("m", error_5xx_rate=0)


def router_config(a: SimulatorProcess, b: SimulatorProcess, **sessions: Any
                  ) -> dict[str, Any]:
    """`b` weighs twice `a`: requests one at a time all go to `b` unless something sends them
    elsewhere."""
    return {
        "models": [{"name": "agent", "endpoints": [
            {"name": "a", "base_url": a.base_url, "upstream_model": "m", "weight": 1},
            {"name": "b", "base_url": b.base_url, "upstream_model": "m", "weight": 2}]}],
        "default": {"candidates": ["agent"]},
        "pool": {"retry": {"max_retries": 0},
                 "breaker": {"failure_threshold": 1, "cooldown_s": COOLDOWN_S},
                 "health_check": {"interval_s": 0}},
        "sessions": {"endpoint_affinity": True, **sessions},
    }


def served(a: SimulatorProcess, b: SimulatorProcess) -> tuple[int, int]:
    return a.stats()["requests"].get("m", 0), b.stats()["requests"].get("m", 0)


class Session:
    """An agent session whose context grows by a turn per request."""

    def __init__(self, client: openai.OpenAI, session: str | None) -> None:
        self.client = client
        self.headers = {"x-session-id": session} if session else {}
        self.messages: list[dict[str, str]] = [
            {"role": "system", "content": "You are an agent. " * 200}]

    def step(self) -> Any:
        self.messages.append({"role": "user", "content": f"turn {len(self.messages)}: "
                              + "run the tests. " * 40})
        answer = self.client.chat.completions.create(
            model="auto", messages=self.messages, extra_headers=self.headers)
        self.messages.append({"role": "assistant", "content": answer.choices[0].message.content})
        time.sleep(0.05)  # the endpoint is written after the answer, off the request path
        return answer


def test_a_session_stays_on_its_endpoint_while_healthy_and_moves_when_it_fails(
        sims: tuple[SimulatorProcess, SimulatorProcess], tmp_path: Path) -> None:
    a, b = sims
    with start_router(router_config(a, b), tmp_path) as gateway:
        client = openai.OpenAI(base_url=gateway.base_url, api_key="k", max_retries=0)
        agent = Session(client, "s-1")
        # Its first request finds `b` failing: it fails over to `a`, which opens b's breaker.
        b.set_profile("m", error_5xx_rate=1.0)
        agent.step()
        assert served(a, b) == (1, 1)
        b.set_profile("m", error_5xx_rate=0)
        time.sleep(COOLDOWN_S + 0.1)
        # Requests without a session are balanced as before: to `b`, which weighs more.
        plain = Session(client, None)
        for _ in range(3):
            plain.step()
        assert served(a, b) == (1, 4)
        # The session stays on `a`, where its prefix is cached, though `b` is free.
        for _ in range(4):
            answer = agent.step()
            details = answer.usage.prompt_tokens_details
            assert details is not None and details.cached_tokens > answer.usage.prompt_tokens / 2
        assert served(a, b) == (5, 4)
        # A second session starts where balancing puts it and stays there.
        other = Session(client, "s-2")
        for _ in range(2):
            other.step()
        assert served(a, b) == (5, 6)
        # `a` fails: the session's request fails over to `b` and the session moves there.
        a.set_profile("m", error_5xx_rate=1.0)
        agent.step()
        assert served(a, b) == (6, 7)
        a.set_profile("m", error_5xx_rate=0)
        time.sleep(COOLDOWN_S + 0.1)
        for _ in range(2):
            agent.step()
        assert served(a, b) == (6, 9)  # it stays on `b` now


def test_a_stream_records_its_endpoint_for_the_next_request(
        sims: tuple[SimulatorProcess, SimulatorProcess], tmp_path: Path) -> None:
    a, b = sims
    with start_router(router_config(a, b), tmp_path) as gateway:
        client = openai.OpenAI(base_url=gateway.base_url, api_key="k", max_retries=0)
        b.set_profile("m", error_5xx_rate=1.0)  # the first stream opens on `a`
        messages = [{"role": "user", "content": "plan the change " * 50}]
        for chunk in client.chat.completions.create(
                model="auto", messages=messages, stream=True,
                extra_body={"metadata": {"session_id": "streamed"}}):
            del chunk
        b.set_profile("m", error_5xx_rate=0)
        time.sleep(COOLDOWN_S + 0.1)
        before = served(a, b)
        for _ in range(2):
            text = "".join(chunk.choices[0].delta.content or "" for chunk in
                           client.chat.completions.create(
                               model="auto", messages=messages, stream=True,
                               extra_body={"metadata": {"session_id": "streamed"}})
                           if chunk.choices)
            assert text
            time.sleep(0.05)
        assert served(a, b) == (before[0] + 2, before[1]), "".join(gateway.output[-30:])


def test_with_the_store_down_sessions_are_served_and_balanced_as_usual(
        sims: tuple[SimulatorProcess, SimulatorProcess], tmp_path: Path) -> None:
    a, b = sims
    config = router_config(a, b)
    config["state"] = {"backend": "redis", "redis_url": DOWN_URL}
    with start_router(config, tmp_path) as gateway:
        client = openai.OpenAI(base_url=gateway.base_url, api_key="k", max_retries=0)
        agent = Session(client, "s-down")
        for _ in range(3):
            assert agent.step().choices[0].message.content
        assert served(a, b) == (0, 3)  # no affinity to read: the pool's own balancing
        assert any("session affinity: the store did not answer" in line
                   for line in gateway.output)


def test_replicas_sharing_redis_share_the_sessions_endpoint(
        sims: tuple[SimulatorProcess, SimulatorProcess], tmp_path: Path) -> None:
    require_redis()
    a, b = sims
    with unique_prefix("affinity") as prefix:
        config = router_config(a, b)
        config["state"] = {"backend": "redis", "redis_url": REDIS_URL, "key_prefix": prefix}
        (tmp_path / "one").mkdir()
        (tmp_path / "two").mkdir()
        with start_router(config, tmp_path / "one") as one, \
                start_router(dict(config), tmp_path / "two") as two:
            first = Session(openai.OpenAI(base_url=one.base_url, api_key="k", max_retries=0),
                            "shared")
            b.set_profile("m", error_5xx_rate=1.0)  # on replica one, the session lands on `a`
            first.step()
            b.set_profile("m", error_5xx_rate=0)
            assert served(a, b) == (1, 1)
            # Replica two never saw the session, and b is healthy there: `a` all the same.
            second = Session(openai.OpenAI(base_url=two.base_url, api_key="k", max_retries=0),
                             "shared")
            second.messages = first.messages
            for _ in range(2):
                second.step()
            assert served(a, b) == (3, 1)


def test_a_store_that_is_down_is_left_alone_for_a_while() -> None:
    async def lookups() -> tuple[float, float, float]:
        config = pool_config(endpoint_affinity=True)
        store = make_store("redis", redis_url=DOWN_URL)
        router = Router(config, store=store)
        assert router.affinity is not None
        await store.start()
        try:
            plan = await router.plan({"model": "m", "messages": [{"role": "user", "content": "x"}]},
                                     {"x-session-id": "s"})
            started = time.monotonic()
            assert await router.affinity.preference(plan) is None  # refused or timed out
            waited = time.monotonic() - started
            started = time.monotonic()
            assert await router.affinity.preference(plan) is None  # not even asked
            return waited, time.monotonic() - started, router.affinity._store_back_at - started
        finally:
            await store.close()

    first, second, backoff = asyncio.run(lookups())
    assert first <= 0.5
    assert second < 0.005
    assert 0 < backoff <= STORE_BACKOFF_S


def test_a_bad_session_id_is_the_clients_400(
        sims: tuple[SimulatorProcess, SimulatorProcess], tmp_path: Path) -> None:
    a, b = sims
    with start_router(router_config(a, b), tmp_path) as gateway:
        client = openai.OpenAI(base_url=gateway.base_url, api_key="k", max_retries=0)
        with pytest.raises(openai.BadRequestError) as raised:
            client.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": "hi"}],
                extra_headers={"x-session-id": "not valid!"})
        assert raised.value.body["param"] == "x-session-id"  # type: ignore[index]
        assert served(a, b) == (0, 0)
