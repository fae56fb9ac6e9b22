"""Serving-time selection: cheapest, quality_cost, latency_aware, load_aware, sticky.

Unit tests run the algorithms on real PooledModels built from a real config; one end-to-end
test routes through a Router in-process to a real simulator process.
"""

from __future__ import annotations

from typing import Any

import pytest
from simproc import start_simulator

from routeyard import Router
from routeyard.catalog import build_config
from routeyard.metrics import Metrics
from routeyard.pool import Pool, PooledModel
from routeyard.pool.latency import LatencyTracker
from routeyard.preflight import preflight
from routeyard.selection import SELECTION_ALGORITHMS, AlgorithmBuild, make_algorithm
from routeyard.signals import RequestContext
from routeyard.state import MemoryStore

DEAD = "http://127.0.0.1:9/v1"  # never called: unit tests only select


def model(name: str, *, price_in: float = 0.0, price_out: float = 0.0, window: int = 8192,
          weights: tuple[float, ...] = (1.0,)) -> dict[str, Any]:
    return {"name": name, "context_window": window,
            "pricing": {"input_per_mtok": price_in, "output_per_mtok": price_out},
            "endpoints": [{"base_url": DEAD, "weight": w} for w in weights]}


def candidates(*specs: dict[str, Any]) -> list[PooledModel]:
    config = build_config({"models": list(specs),
                           "default": {"candidates": [s["name"] for s in specs]}})
    pool = Pool(config, Metrics())
    return [pool.models[s["name"]] for s in specs]


def ctx(headers: dict[str, str] | None = None, **body: Any) -> RequestContext:
    return RequestContext({"model": "auto", "messages": [{"role": "user", "content": "hi"}],
                           **body}, headers)


def down(m: PooledModel) -> PooledModel:
    for endpoint in m.endpoints:
        endpoint.healthy = False
    return m


def test_all_are_registered() -> None:
    assert {"cheapest", "quality_cost", "latency_aware", "load_aware", "sticky"} <= set(
        SELECTION_ALGORITHMS)


# -- cheapest ------------------------------------------------------------------------------------

def test_cheapest_weighs_prompt_and_expected_output() -> None:
    # a: cheap input, dear output; b: the reverse.
    a, b = candidates(model("a", price_in=1, price_out=100), model("b", price_in=10, price_out=1))
    short_answers = make_algorithm("cheapest", {"expected_output_tokens": 1})
    long_answers = make_algorithm("cheapest", {"expected_output_tokens": 1000})
    assert short_answers.select([a, b], 1000).model == "a"
    chosen = long_answers.select([a, b], 1000)
    assert chosen.model == "b"
    assert chosen.reason.startswith("cheapest: expected $0.011000 for 1000 prompt + 1000 output")
    # The request's own max_tokens caps the expectation.
    assert long_answers.select([a, b], 1000, ctx(max_tokens=1)).model == "a"


def test_cheapest_skips_what_does_not_fit_or_is_down() -> None:
    cheap_small, cheap_down, dear = candidates(
        model("small", price_in=1, window=100), model("down", price_in=2),
        model("dear", price_in=50))
    down(cheap_down)
    algo = make_algorithm("cheapest")
    assert algo.select([cheap_small, cheap_down, dear], 50).model == "small"
    assert algo.select([cheap_small, cheap_down, dear], 500).model == "dear"
    # Nothing available: the cheapest that fits, said so.
    down(dear)
    chosen = algo.select([cheap_small, cheap_down, dear], 500)
    assert chosen.model == "down" and "no candidate is available" in chosen.reason
    assert algo.select([cheap_small], 500) is None


def test_bad_options_are_build_errors() -> None:
    with pytest.raises(ValueError, match="expected_output_tokens"):
        make_algorithm("cheapest", {"expected_output_tokens": "many"})
    with pytest.raises(ValueError, match="priors"):
        make_algorithm("quality_cost", {"priors": {"a": "good"}})
    with pytest.raises(ValueError, match="inner"):
        make_algorithm("sticky", {"inner": "nope"})
    raw = {"models": [model("a")],
           "default": {"candidates": ["a"], "algorithm": "sticky",
                       "algorithm_options": {"inner": "sticky"}}}
    problems = preflight(build_config(raw), None)
    assert any("default.algorithm_options" in where for where, _ in problems)


# -- quality_cost --------------------------------------------------------------------------------

def test_quality_cost_trades_quality_against_relative_cost() -> None:
    good, mid, cheap = candidates(model("good", price_in=10, price_out=30),
                                  model("mid", price_in=1, price_out=3), model("cheap"))
    priors = {"good": 0.9, "cheap": 0.3}  # mid has no prior: 0.5
    quality = make_algorithm("quality_cost", {"priors": priors, "lambda": 0})
    assert quality.select([good, mid, cheap], 100).model == "good"
    # λ=0.5: good 0.9-0.5=0.4, mid 0.5-0.05=0.45, cheap 0.3 → mid.
    balanced = make_algorithm("quality_cost", {"priors": priors, "lambda": 0.5})
    chosen = balanced.select([good, mid, cheap], 100)
    assert chosen.model == "mid"
    assert "quality 0.50" in chosen.reason and "relative cost 0.10" in chosen.reason
    thrifty = make_algorithm("quality_cost", {"priors": priors, "lambda": 10})
    assert thrifty.select([good, mid, cheap], 100).model == "cheap"
    # All free: cost plays no part.
    free_a, free_b = candidates(model("x"), model("y"))
    assert make_algorithm("quality_cost", {"priors": {"y": 0.6}}).select(
        [free_a, free_b], 10).model == "y"


# -- latency tracker and latency_aware -----------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_tracker_ewma_staleness_and_bound() -> None:
    clock = Clock()
    tracker = LatencyTracker(alpha=0.5, stale_s=60, max_models=2, clock=clock)
    assert tracker.estimate("a") is None
    tracker.observe("a", ttft_s=1.0)
    assert tracker.estimate("a") == (1.0, 0.0)
    tracker.observe("a", ttft_s=3.0, tpot_s=0.1)
    assert tracker.estimate("a") == (2.0, 0.1)
    clock.now += 61
    assert tracker.estimate("a") is None  # stale: forgotten
    tracker.observe("a", ttft_s=0.5)
    assert tracker.estimate("a") == (0.5, 0.0)  # a fresh start, not blended with the old
    tracker.observe("b", ttft_s=1)
    tracker.observe("c", ttft_s=1)
    assert len(tracker) == 2 and tracker.estimate("a") is None  # least recently updated dropped


def test_record_attempt_measures_what_each_kind_of_call_gives() -> None:
    a, b, c = candidates(model("a"), model("b"), model("c"))
    tracker = LatencyTracker()
    tracker.record_attempt(a, 0.2, object(), stream=True)  # a stream: the first chunk arrived
    tracker.record_attempt(b, 2.0, {"usage": {"completion_tokens": 100}}, stream=False)
    tracker.record_attempt(c, 1.5, {"choices": []}, stream=False)
    assert tracker.estimate(a) == (0.2, 0.0)
    assert tracker.estimate(b) == (0.0, 0.02)
    assert tracker.estimate(c) == (1.5, 0.0)


def test_latency_aware_tries_unknown_models_then_prefers_the_fastest() -> None:
    slow, fast, small = candidates(model("slow"), model("fast"), model("small", window=10))
    tracker = LatencyTracker()
    algo = make_algorithm("latency_aware", {"expected_output_tokens": 100},
                          AlgorithmBuild(tracker=tracker))
    tracker.observe(slow, ttft_s=0.5)
    chosen = algo.select([slow, fast, small], 100)
    assert chosen.model == "fast" and "no recent latency" in chosen.reason
    tracker.observe(fast, ttft_s=0.1, tpot_s=0.01)  # 0.1 + 100 * 0.01 = 1.1 s
    chosen = algo.select([slow, fast, small], 100)
    assert chosen.model == "slow" and "500 ms" in chosen.reason
    # Shorter expected answers make the low-TTFT model win.
    assert algo.select([slow, fast], 100, ctx(max_tokens=10)).model == "fast"
    # Never a model the prompt does not fit, even an unknown one.
    tracker.observe(small, ttft_s=0.0)
    assert algo.select([small, slow], 100).model == "slow"
    down(slow)
    assert algo.select([slow, fast], 100).model == "fast"


# -- load_aware ----------------------------------------------------------------------------------

def test_load_aware_counts_outstanding_per_unit_weight() -> None:
    one, wide, other = candidates(model("one"), model("wide", weights=(1.0, 3.0)), model("other"))
    algo = make_algorithm("load_aware")
    assert algo.select([one, wide, other], 10).model == "one"  # all idle: the first listed
    one.endpoints[0].outstanding = 2  # 2 per unit weight
    wide.endpoints[0].outstanding = 3  # 3 over weight 4: 0.75
    other.endpoints[0].outstanding = 1  # 1
    chosen = algo.select([one, wide, other], 10)
    assert chosen.model == "wide" and "0.75" in chosen.reason
    # An unavailable endpoint's weight does not count: wide is then 3 per unit weight.
    down(wide).endpoints[1].healthy = True
    wide.endpoints[0].outstanding, wide.endpoints[1].outstanding = 0, 3
    assert algo.select([one, wide, other], 10).model == "wide"  # 3 / 3 = 1.0 ties other; 1st
    wide.endpoints[1].outstanding = 4
    assert algo.select([one, wide, other], 10).model == "other"


# -- sticky --------------------------------------------------------------------------------------

def test_sticky_keeps_a_session_on_its_model() -> None:
    cheap, dear = candidates(model("cheap", price_in=1), model("dear", price_in=5))
    algo = make_algorithm("sticky", {"inner": "cheapest"})
    first = algo.select([cheap, dear], 10, ctx({"X-Session-Id": "s1"}))
    assert first.model == "cheap" and first.reason.startswith("cheapest:")
    assert "sticks" in first.reason
    down(cheap)
    # s1's model is down: the inner algorithm chooses again, and s1 moves.
    assert algo.select([cheap, dear], 10, ctx({"x-session-id": "s1"})).model == "dear"
    cheap.endpoints[0].healthy = True
    again = algo.select([cheap, dear], 10, ctx({"x-session-id": "s1"}))
    assert again.model == "dear" and again.reason.startswith("sticky:")
    # Other ids: the body's metadata.session_id, then its user; no id at all: just the inner.
    assert algo.select([dear, cheap], 10, ctx(metadata={"session_id": "m"})).model == "cheap"
    assert algo.select([dear, cheap], 10, ctx(user="u1")).model == "cheap"
    assert len(algo) == 3
    plain = algo.select([cheap, dear], 10, ctx())
    assert plain.reason.startswith("cheapest:") and len(algo) == 3
    # The remembered model no longer fits the prompt: back to the inner algorithm.
    small, big = candidates(model("small", window=100), model("big", price_in=9))
    assert algo.select([small, big], 50, ctx(user="u2")).model == "small"
    assert algo.select([small, big], 500, ctx(user="u2")).model == "big"


def test_sticky_memory_is_bounded_and_expires() -> None:
    from routeyard.selection.sticky import StickySelection

    a, b = candidates(model("a", price_in=1), model("b", price_in=2))
    clock = Clock()
    algo = StickySelection({"inner": "cheapest", "ttl_s": 60, "max_sessions": 2}, clock=clock)
    for user in ("u1", "u2", "u3"):
        assert algo.select([b, a], 10, ctx(user=user)).model == "a"
    assert len(algo) == 2  # u1 evicted
    assert algo.select([a, b], 10, ctx(user="u2")).reason.startswith("sticky:")
    clock.now += 61
    assert algo.select([a, b], 10, ctx(user="u3")).reason.startswith("cheapest:")
    assert len(algo) == 1  # the expired u2 was dropped too


# -- end to end ----------------------------------------------------------------------------------

async def test_latency_aware_moves_traffic_to_the_faster_model() -> None:
    with start_simulator("--model", "slow", "--model", "fast", "--ttft-ms", "0",
                         "--tpot-ms", "0", "--output-tokens", "4") as sim:
        sim.set_profile("slow", ttft_ms=150)
        ep = {"base_url": sim.base_url}
        config = build_config({
            "models": [{"name": "slow", "endpoints": [ep]}, {"name": "fast", "endpoints": [ep]}],
            "default": {"candidates": ["slow", "fast"], "algorithm": "latency_aware",
                        "algorithm_options": {"expected_output_tokens": 4}},
            "pool": {"health_check": {"interval_s": 0}},
        })
        body = {"model": "auto", "messages": [{"role": "user", "content": "hello"}]}
        served = []
        async with Router(config, store=MemoryStore()) as router:
            for index in range(8):
                if index % 2:  # streams too: their TTFT is recorded when the first chunk lands
                    chunks = [chunk async for chunk in router.chat_stream(body)]
                    served.append(chunks[0]["model"])
                else:
                    served.append((await router.chat(body))["model"])
            reason = (await router.route(body))["reason"]
        assert served[:2] == ["slow", "fast"]  # each unknown model is tried once
        assert set(served[2:]) == {"fast"}, served
        assert "latency_aware: lowest expected latency" in reason
        requests = sim.stats()["requests"]
        assert requests.get("slow") == 1 and requests.get("fast") == 7
