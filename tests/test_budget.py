"""Budget-aware selection and spend tracking: λ rising as a budget drains, scopes, periods,
replicas sharing spend through a store, and a real Router against a real simulator process."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from simproc import start_simulator

from routeyard import Router
from routeyard.catalog import build_config
from routeyard.metrics import Metrics
from routeyard.pool import Pool, PooledModel
from routeyard.selection import AlgorithmBuild, BudgetSelection, make_algorithm
from routeyard.selection.ledger import BudgetLedger, hashed, period_id
from routeyard.signals import RequestContext
from routeyard.state import MemoryStore

DEAD = "http://127.0.0.1:9/v1"  # never called: unit tests only select
DAY = 86400.0
JAN_31 = 1738281600.0  # 2025-01-31T00:00:00Z
PRIORS = {"dear": 0.9, "cheap": 0.3}


def model(name: str, price: float, endpoint: str = DEAD) -> dict[str, Any]:
    return {"name": name, "pricing": {"input_per_mtok": price, "output_per_mtok": price},
            "endpoints": [{"base_url": endpoint}]}


def candidates() -> list[PooledModel]:
    specs = [model("dear", 30.0), model("cheap", 0.3)]
    config = build_config({"models": specs, "default": {"candidates": ["dear", "cheap"]}})
    pool = Pool(config, Metrics())
    return [pool.models["dear"], pool.models["cheap"]]


def ctx(headers: dict[str, str] | None = None, **body: Any) -> RequestContext:
    return RequestContext({"model": "auto", "messages": [{"role": "user", "content": "hi"}],
                           **body}, headers)


def budget_algo(ledger: BudgetLedger, *budgets: dict[str, Any], **options: Any
                ) -> BudgetSelection:
    algo = make_algorithm("budget", {"priors": PRIORS, "budgets": list(budgets), **options},
                          AlgorithmBuild(ledger=ledger))
    assert isinstance(algo, BudgetSelection)
    return algo


def test_lambda_rises_as_the_budget_drains() -> None:
    ledger = BudgetLedger()
    algo = budget_algo(ledger, {"scope": "global", "limit_usd": 1.0, "period": "total"})
    pool = candidates()
    fresh = algo.select(pool, 100, ctx())
    assert fresh.model == "dear" and "λ=0.2 " in fresh.reason and "(0% spent)" in fresh.reason
    # dear 0.9 - λ, cheap 0.3 - 0.01·λ: the switch comes at λ ≈ 0.61, i.e. ~14% spent.
    chosen = []
    for _ in range(8):
        chosen.append(algo.select(pool, 100, ctx()).model)
        ledger.record("global", 0.125)
    assert chosen == ["dear", "dear"] + ["cheap"] * 6
    exhausted = algo.select(pool, 100, ctx())
    assert exhausted.model == "cheap" and "exhausted" in exhausted.reason
    # Exhausted: the cheapest always, even with priors and λ that would pick the dear one.
    greedy = budget_algo(ledger, {"scope": "global", "limit_usd": 1.0},
                         priors={"dear": 100.0}, lambda_max=0.2)
    assert greedy.select(pool, 100, ctx()).model == "cheap"
    # Without a ledger (a bare algorithm) nothing counts as spent.
    bare = make_algorithm("budget", {"priors": PRIORS,
                                     "budgets": [{"scope": "global", "limit_usd": 1e-9}]})
    assert bare.select(pool, 100, ctx()).reason.endswith("no budget applies")


def test_scopes_keep_separate_budgets_and_the_tightest_wins() -> None:
    ledger = BudgetLedger()
    algo = budget_algo(ledger,
                       {"scope": "api_key", "limit_usd": 1.0, "period": "day"},
                       {"scope": "header:X-Team", "limit_usd": 5.0, "period": "month"},
                       {"scope": "global", "limit_usd": 100.0})
    ledger.scopes.update(algo.scopes())
    pool = candidates()
    alice = {"authorization": "Bearer sk-alice"}
    bob = {"authorization": "Bearer sk-bob"}
    ledger.record_request(ctx(alice), 1.0)  # alice's own budget is gone
    assert "exhausted" in algo.select(pool, 100, ctx(alice)).reason
    assert algo.select(pool, 100, ctx(bob)).model == "dear"
    # Keys are never kept in clear.
    assert ledger.spent(f"api_key:{hashed('sk-alice')}", "day") == 1.0
    assert not any("sk-alice" in key for key, _ in ledger._local)
    # header scope: one team's spend squeezes every key in that team (names are case-blind).
    team = {**bob, "X-Team": "red"}
    ledger.record_request(ctx({"x-team": "red"}), 5.0)
    reason = algo.select(pool, 100, ctx(team)).reason
    assert "header:x-team month budget" in reason and "exhausted" in reason
    assert algo.select(pool, 100, ctx({**bob, "x-team": "blue"})).model == "dear"
    # global: all spend counts (1 + 5 so far); 100 in all exhausts every request.
    assert ledger.spent("global") == 6.0
    ledger.record_request(ctx(), 94.0)
    assert "global total budget" in algo.select(pool, 100, ctx(bob)).reason


def test_metadata_scope() -> None:
    ledger = BudgetLedger()
    algo = budget_algo(ledger, {"scope": "metadata:project", "limit_usd": 1.0})
    ledger.scopes.update(algo.scopes())
    ledger.record_request(ctx(metadata={"project": "apollo"}), 1.0)
    pool = candidates()
    assert "exhausted" in algo.select(pool, 100, ctx(metadata={"project": "apollo"})).reason
    assert algo.select(pool, 100, ctx(metadata={"project": "gemini"})).model == "dear"
    assert algo.select(pool, 100, ctx()).reason.endswith("no budget applies")


def test_periods_roll_over_by_utc_day_and_month() -> None:
    now = [JAN_31 + 23 * 3600.0]
    ledger = BudgetLedger(clock=lambda: now[0])
    algo = budget_algo(ledger, {"scope": "global", "limit_usd": 1.0, "period": "day"})
    pool = candidates()
    ledger.record("global", 1.0)
    assert period_id("day", now[0]) == "2025-01-31"
    assert algo.select(pool, 100, ctx()).model == "cheap"
    now[0] += 2 * 3600.0  # 01:00 on 1 February: a new day and a new month
    assert algo.select(pool, 100, ctx()).model == "dear"
    assert ledger.spent("global", "day") == 0.0
    assert ledger.spent("global", "month") == 0.0
    assert ledger.spent("global", "total") == 1.0
    ledger.record("global", 0.5)
    now[0] += DAY
    assert (ledger.spent("global", "day"), ledger.spent("global", "month")) == (0.0, 0.5)


def test_bad_options_are_build_errors() -> None:
    for budgets, match in [("x", "list"), ([{"limit_usd": 0}], "limit_usd"),
                           ([{"limit_usd": 1, "period": "week"}], "period"),
                           ([{"limit_usd": 1, "scope": "user"}], "scope"),
                           ([{"limit_usd": 1, "scope": "header:"}], "scope")]:
        with pytest.raises(ValueError, match=match):
            make_algorithm("budget", {"budgets": budgets})
    with pytest.raises(ValueError, match="lambda_max"):
        make_algorithm("budget", {"lambda": 5, "lambda_max": 1})


async def test_replicas_share_spend_through_the_store() -> None:
    store = MemoryStore()
    one, two = BudgetLedger(store), BudgetLedger(store)
    one.record("global", 1.5)
    two.record("global", 0.25)
    await one.flush()
    await two.flush()
    for ledger in (one, two):
        ledger.spent("global")  # what selection reads is what refresh fetches
        await ledger.refresh()
    assert one.spent("global") == two.spent("global") == 1.75
    # More spend after the first flush overwrites this replica's own slot (no double count).
    one.record("global", 1.0)
    await one.flush()
    await two.refresh()
    assert two.spent("global") == 2.75
    # A replica that restarts takes a new slot: what it wrote before still counts.
    reborn = BudgetLedger(store)
    reborn.spent("global", "day")
    await reborn.refresh()
    assert reborn.spent("global", "day") == 2.75


async def test_the_hot_path_syncs_in_the_background() -> None:
    store = MemoryStore()
    writer = BudgetLedger(store, flush_interval_s=0.05)
    reader = BudgetLedger(store, flush_interval_s=0.05)
    writer.record("global", 0.5)  # schedules a flush; never awaits the store itself
    assert reader.spent("global") == 0.0  # schedules a refresh
    for _ in range(40):
        await asyncio.sleep(0.05)
        if reader.spent("global") == 0.5:
            break
    assert reader.spent("global") == 0.5


async def test_router_moves_from_the_dear_model_to_the_cheap_one() -> None:
    with start_simulator("--model", "dear", "--model", "cheap", "--ttft-ms", "0",
                         "--tpot-ms", "0", "--output-tokens", "4") as sim:
        # About 10 prompt + 4 output tokens: ~$0.014 per request on dear, ~1000x less on cheap.
        config = build_config({
            "models": [model("dear", 1000.0, sim.base_url), model("cheap", 1.0, sim.base_url)],
            "default": {"candidates": ["dear", "cheap"], "algorithm": "budget",
                        "algorithm_options": {
                            "priors": PRIORS, "expected_output_tokens": 4,
                            "budgets": [{"scope": "global", "limit_usd": 0.1,
                                         "period": "day"}]}},
            "pool": {"health_check": {"interval_s": 0}},
        })
        body = {"model": "auto", "messages": [{"role": "user", "content": "hello there"}]}
        store = MemoryStore()
        async with Router(config, store=store) as router:
            served = [(await router.chat(body))["model"] for _ in range(6)]
            ledger = router.budget_ledger
            reason = (await router.route(body))["reason"]
        assert served[0] == "dear" and served[-1] == "cheap", served
        switch = served.index("cheap")
        assert set(served[switch:]) == {"cheap"} and 1 <= switch <= 3, served
        assert "global day budget" in reason
        spent = ledger.spent("global", "day")
        assert 0.01 < spent < 0.1
        # Closing the Router waited for the last flush: a second replica sees the spend.
        replica = BudgetLedger(store)
        replica.spent("global", "day")
        await replica.refresh()
        assert replica.spent("global", "day") == pytest.approx(spent)
        assert sim.stats()["requests"].get("dear") == switch
