"""Decisions, static selection and the circuit breaker: pure logic, no network."""

from __future__ import annotations

from typing import Any

import pytest
from fakeclock import FakeClock

from routeyard import Router
from routeyard.catalog import build_config
from routeyard.errors import ContextTooLong
from routeyard.pool.endpoint import CircuitBreaker
from routeyard.state import MemoryStore


def router(decisions: list[dict[str, Any]], **extra: Any) -> Router:
    endpoint = [{"base_url": "http://127.0.0.1:9/v1"}]
    config = build_config({
        "models": [
            {"name": "small", "context_window": 100, "endpoints": endpoint},
            {"name": "mid", "context_window": 1000, "endpoints": endpoint},
            {"name": "large", "context_window": 100000, "endpoints": endpoint},
        ],
        "decisions": decisions,
        "default": {"candidates": ["small", "mid"], "fallback": ["large"]},
        **extra,
    })
    return Router(config, store=MemoryStore())


def body(text: str, model: str = "auto") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}]}


async def test_keywords_match_whole_words_case_insensitively() -> None:
    r = router([{"name": "hard", "when": {"keywords_any": ["prove", "C++"]},
                 "candidates": ["large"]}])
    assert (await r.plan(body("Please PROVE it"))).decision == "hard"
    assert (await r.plan(body("write some c++ now"))).decision == "hard"
    assert (await r.plan(body("Can you approve my leave?"))).decision == "default"


async def test_priority_then_declaration_order_wins() -> None:
    r = router([
        {"name": "first", "when": {"keywords_any": ["x"]}, "candidates": ["small"]},
        {"name": "urgent", "priority": 9, "when": {"keywords_any": ["x"]},
         "candidates": ["mid"]},
        {"name": "also-urgent", "priority": 9, "when": {"keywords_any": ["x"]},
         "candidates": ["large"]},
    ])
    plan = await r.plan(body("x"), explain=True)
    assert plan.decision == "urgent" and plan.model == "mid"
    considered = plan.explanation["considered"]
    assert [c["name"] for c in considered] == ["urgent", "also-urgent", "first"]
    assert all(c["matched"] for c in considered)


async def test_conditions_are_anded_and_token_bounds_apply() -> None:
    r = router([{"name": "long-code", "when": {"keywords_any": ["code"],
                                                "min_prompt_tokens": 50},
                 "candidates": ["large"]}])
    assert (await r.plan(body("code"))).decision == "default"
    assert (await r.plan(body("code " + "word " * 100))).decision == "long-code"


async def test_failover_order_is_chosen_then_other_candidates_then_fallback() -> None:
    plan = await router([]).plan(body("hello"))
    assert [m.name for m in plan.models] == ["small", "mid", "large"]


async def test_context_window_filters_candidates_and_fallbacks() -> None:
    r = router([])
    plan = await r.plan(body("word " * 300))  # ~300 tokens: too long for small (100)
    assert [m.name for m in plan.models] == ["mid", "large"]
    plan = await r.plan(body("word " * 5000))
    assert [m.name for m in plan.models] == ["large"]
    with pytest.raises(ContextTooLong):
        await r.plan(body("word " * 5000, model="mid"))


async def test_dry_run_works_before_start() -> None:
    r = router([{"name": "hard", "when": {"keywords_any": ["prove"]}, "candidates": ["large"]}])
    result = await r.route("prove it")
    assert result["model"] == "large" and result["decision"] == "hard"
    assert result["prompt_tokens"] > 0
    assert result["signals"]["keyword"]["matches"]["@hard"]["value"] == "prove"


def test_breaker_opens_after_threshold_and_probes_after_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=30, clock=clock)
    breaker.on_failure()
    assert breaker.allows()
    breaker.on_failure()
    assert breaker.state == "open" and not breaker.allows()
    clock.advance(29.9)
    assert breaker.state == "open" and not breaker.allows()  # the cooldown is not over
    clock.advance(0.1)
    assert breaker.state == "half_open" and breaker.allows()
    breaker.on_attempt()
    assert not breaker.allows()  # one probe at a time
    breaker.on_failure()
    assert breaker.state == "open"  # the probe failed: open again
    clock.advance(29.9)
    assert breaker.state == "open"  # a new cooldown, counted from the failed probe
    clock.advance(0.1)
    breaker.on_attempt()
    breaker.on_success()
    assert breaker.state == "closed" and breaker.allows()


def test_abandoned_probe_lets_another_probe_through() -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=0.0)
    breaker.on_failure()
    breaker.on_attempt()
    assert not breaker.allows()
    breaker.on_abandoned()
    assert breaker.allows()


async def test_direct_model_names_can_be_forbidden() -> None:
    from routeyard.errors import Forbidden

    r = router([], allow_direct_models=False)
    with pytest.raises(Forbidden) as caught:
        await r.plan(body("hi", model="large"))
    assert caught.value.status == 403 and "alias" in caught.value.message
    assert (await r.plan(body("hi"))).decision == "default"


async def test_candidate_reasoning_effort_reaches_the_backend() -> None:
    """A decision's per-candidate effort is sent upstream; a client's own value wins."""
    from echo_backend import echo_backend

    async with echo_backend() as (url, received):
        endpoint = [{"base_url": url}]
        config = build_config({
            "models": [{"name": "thinker", "endpoints": endpoint,
                        "capabilities": {"reasoning": True}},
                       {"name": "quick", "endpoints": endpoint}],
            "decisions": [{"name": "hard", "when": {"keywords_any": ["prove"]},
                           "candidates": [{"model": "thinker", "reasoning_effort": "high"}]}],
            "default": {"candidates": ["quick"]},
            "pool": {"health_check": {"interval_s": 0}},
        })
        async with Router(config, store=MemoryStore()) as r:
            await r.chat(body("prove it"))
            await r.chat(body("hello"))
            await r.chat({**body("prove it"), "reasoning_effort": "low"})
            plan = await r.route("prove it")
    assert [b.get("reasoning_effort") for b in received] == ["high", None, "low"]
    assert plan["reasoning_effort"] == "high"
