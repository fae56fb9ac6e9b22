"""Shadow traffic (issue 16): the scorers, and the mirror inside a Router against a real
simulator process (sampling, the daily cap, what is and is not mirrored, the body sent)."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from echo_backend import echo_backend
from simproc import SimulatorProcess, start_simulator
from stores import (
    BACKENDS,
    REDIS_URL,
    build_store,
    fresh_database,
    needs_postgres,
    needs_redis,
    require_postgres,
    require_redis,
    run_async,
    unique_prefix,
)

from routeyard.catalog import parse_config
from routeyard.config import RouteyardConfig
from routeyard.config.loader import ConfigError
from routeyard.errors import RouteyardError
from routeyard.eval.shadow_report import report, scan_all, wilson
from routeyard.router import Router
from routeyard.serving.shadow import SHADOW_PREFIX, ShadowMirror, shadow_key
from routeyard.serving.shadow_scoring import (
    ChoiceScorer,
    ExactScorer,
    JudgeFailed,
    JudgeScorer,
    NumericScorer,
    Pair,
    ScorerBuild,
    make_scorer,
    parse_judge_reply,
    reference_of,
)
from routeyard.state import RedisStore, Store
from routeyard.state.postgres import PostgresStore

# -- scorers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("scorer", "served", "shadow", "reference", "outcome"), [
    (ExactScorer(), "Paris.", "  paris ", "Paris", "tie"),
    (ExactScorer(), "Lyon", "Paris", "Paris", "win"),
    (ExactScorer(), "Paris", "Lyon", "Paris", "loss"),
    (ExactScorer(), "Lyon", "Nice", "Paris", "tie"),  # both wrong
    (NumericScorer(), "It is 1,234.", "so x = 1234.0", "1234", "tie"),
    (NumericScorer(), "about 12", "the total is 42", "42", "win"),
    (NumericScorer(), "-3e2", "300", "-300", "loss"),
    (NumericScorer(), "no number here", "none either", "7", "tie"),
    (ChoiceScorer(), "(B)", "The answer is B.", "B", "tie"),
    (ChoiceScorer(), "A) because", "**C**", "c", "win"),
    (ChoiceScorer(), "Answer: D", "E", "D", "loss"),
])
async def test_reference_scorers(scorer: Any, served: str, shadow: str, reference: str,
                                 outcome: str) -> None:
    verdict = await scorer.score(Pair("q", served, shadow, reference))
    assert verdict.outcome == outcome
    assert verdict.judge_cost_usd == 0.0


async def test_reference_scorers_without_a_reference_record_agreement_only() -> None:
    same = await ChoiceScorer().score(Pair("q", "B", "the answer is (b)", None))
    differ = await NumericScorer().score(Pair("q", "3", "4", None))
    assert (same.outcome, same.agree) == (None, True)
    assert (differ.outcome, differ.agree) == (None, False)


def test_the_reference_is_metadata_reference() -> None:
    assert reference_of({"metadata": {"reference": "B"}}) == "B"
    assert reference_of({"metadata": {"reference": 42}}) == "42"
    assert reference_of({"metadata": {"reference": True}}) is None
    assert reference_of({"metadata": "B"}) is None
    assert reference_of({}) is None


@pytest.mark.parametrize(("reply", "said"), [
    ("A", "A"), ("B.", "B"), ("Tie", "tie"), ("**B** is better", "B"),
    ("a better one is B", "B"),  # "a" is an article, not a verdict
    ("I cannot tell", None), ("", None),
])
def test_parse_judge_reply(reply: str, said: str | None) -> None:
    assert parse_judge_reply(reply) == said


async def test_judge_order_is_random_and_verdicts_map_back_to_the_shadow() -> None:
    """A judge that always prefers the answer saying "good" gives the shadow a win whichever
    slot the shadow is shown in; both slots are used."""
    asked: list[str] = []

    async def judge(body: dict[str, Any]) -> tuple[str, float]:
        prompt = body["messages"][0]["content"]
        asked.append(prompt)
        first = prompt.split("[Answer A]")[1].split("[Answer B]")[0]
        return ("A" if "good" in first else "B"), 0.25

    scorer = JudgeScorer(ScorerBuild(judge, random.Random(3)))
    verdicts = [await scorer.score(Pair("q?", "bad answer", "good answer")) for _ in range(40)]
    assert {v.outcome for v in verdicts} == {"win"}
    orders = {v.detail["judge_order"] for v in verdicts}
    assert orders == {"shadow_first", "served_first"}
    assert all(v.judge_cost_usd == 0.25 for v in verdicts)
    assert all("q?" in prompt for prompt in asked)
    losing = await scorer.score(Pair("q?", "good answer", "bad answer"))
    assert losing.outcome == "loss"


async def test_a_failed_or_unparsed_judge_leaves_the_outcome_open() -> None:
    async def failing(body: dict[str, Any]) -> tuple[str, float]:
        raise JudgeFailed("timeout")

    async def rambling(body: dict[str, Any]) -> tuple[str, float]:
        return "well, it depends", 0.1

    failed = await JudgeScorer(ScorerBuild(failing)).score(Pair("q", "x", "y"))
    unparsed = await JudgeScorer(ScorerBuild(rambling)).score(Pair("q", "x", "y"))
    assert (failed.outcome, failed.detail["judge_status"]) == (None, "timeout")
    assert (unparsed.outcome, unparsed.detail["judge_status"]) == (None, "unparsed")
    assert unparsed.judge_cost_usd == 0.1


def test_scorer_registry() -> None:
    assert isinstance(make_scorer("exact", ScorerBuild()), ExactScorer)
    with pytest.raises(ValueError, match="needs a judge"):
        make_scorer("judge", ScorerBuild())
    with pytest.raises(ValueError, match="unknown shadow scorer 'nope'"):
        make_scorer("nope", ScorerBuild())


# -- config ------------------------------------------------------------------------------------


def test_unknown_shadow_models_are_config_errors_with_their_location() -> None:
    text = """
models:
  - {name: a, endpoints: [{base_url: "http://127.0.0.1:9/v1"}]}
  - {name: e, kind: embedding, endpoints: [{base_url: "http://127.0.0.1:9/v1"}]}
decisions:
  - name: d
    candidates: [a]
    shadow: {model: nope, scorer: judge, judge: e}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    problems = dict(caught.value.problems)
    assert problems["decisions[0].shadow.model"] == "unknown model 'nope'"
    assert "embedding model" in problems["decisions[0].shadow.judge"]


# -- the mirror in a Router ----------------------------------------------------------------------

SERVED, SHADOW = "served", "challenger"
TOKENS = 64  # the simulator's default answer length (fixed: sd 0)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", SERVED, "--model", SHADOW) as process:
        yield process


def _config(base_url: str, shadow: dict[str, Any] | None, *, plugins: list[Any] | None = None,
            shadow_price: float = 1.0) -> RouteyardConfig:
    return RouteyardConfig.model_validate({
        "models": [
            {"name": SERVED, "endpoints": [{"base_url": base_url}],
             "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 1.0}},
            {"name": SHADOW, "endpoints": [{"base_url": base_url}],
             # Priced so that one mirrored answer costs `shadow_price` USD exactly.
             "pricing": {"input_per_mtok": 0.0,
                         "output_per_mtok": shadow_price * 1_000_000 / TOKENS}},
            {"name": "broken", "endpoints": [{"base_url": base_url, "upstream_model": SERVED,
                                              "headers": {"x-sim-fault": "503"}}]},
        ],
        "decisions": [{"name": "broken", "when": {"keywords_any": ["breakme"]},
                       "candidates": ["broken"], "shadow": shadow}] if shadow else [],
        "default": {"candidates": [SERVED], "shadow": shadow, "plugins": plugins or []},
        "state": {"backend": "memory"},
        "pool": {"health_check": {"interval_s": 0}, "retry": {"max_retries": 0}},
    })


async def _records(router: Router) -> list[dict[str, Any]]:
    await router.shadow_tasks.drain()
    return [orjson.loads(v) for _, v in await router.store.scan_values(SHADOW_PREFIX, 10_000)]


def _ask(text: str = "hello there") -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}]}


async def test_sample_share_is_drawn_per_request(sim: SimulatorProcess) -> None:
    async with Router(_config(sim.base_url, {"model": SHADOW, "sample": 0.3,
                                             "scorer": "exact"})) as router:
        for _ in range(200):
            await router.chat(_ask())
        found = await _records(router)
    # Binomial(200, 0.3): mean 60, sd 6.5; the bounds are about 3.8 sd away.
    assert 35 <= len(found) <= 85
    assert {r["status"] for r in found} == {"ok"}
    assert {r["shadow_model"] for r in found} == {SHADOW}
    assert all(r["shadow_cost_usd"] == pytest.approx(1.0) for r in found)
    assert all(r["served_model"] == SERVED for r in found)


async def test_the_daily_cap_stops_mirroring_until_the_next_utc_day(
        sim: SimulatorProcess) -> None:
    async with Router(_config(sim.base_url, {"model": SHADOW, "sample": 1.0, "scorer": "exact",
                                             "max_daily_usd": 3.5})) as router:
        assert router.shadow is not None
        for _ in range(6):
            await router.chat(_ask())
        assert len(await _records(router)) == 3  # $1 each: the fourth would pass $3.5
        assert router.shadow.spent_today("default") == pytest.approx(3.0)
        metrics = router.metrics.render().decode()
        assert (f'routeyard_shadow_requests_total{{decision="default",model="{SHADOW}",'
                'outcome="none",status="ok"} 3.0') in metrics
        assert 'routeyard_shadow_cost_dollars_total{decision="default",kind="shadow"} 3.0' \
            in metrics
        tomorrow = router.shadow.clock() + 86400
        router.shadow.clock = lambda: tomorrow
        for _ in range(2):
            await router.chat(_ask())
        assert len(await _records(router)) == 5
        assert router.shadow.spent_today("default") == pytest.approx(2.0)


async def test_failed_direct_and_unsampled_requests_are_not_mirrored(
        sim: SimulatorProcess) -> None:
    async with Router(_config(sim.base_url, {"model": SHADOW, "sample": 1.0,
                                             "scorer": "exact"})) as router:
        with pytest.raises(RouteyardError):  # every endpoint answered 503
            await router.chat(_ask("breakme please"))
        await router.chat({"model": SERVED, "messages": [{"role": "user", "content": "hi"}]})
        assert await _records(router) == []
        await router.chat(_ask())
        assert len(await _records(router)) == 1
    async with Router(_config(sim.base_url, {"model": SHADOW, "sample": 0.0,
                                             "scorer": "exact"})) as router:
        for _ in range(20):
            await router.chat(_ask())
        assert await _records(router) == []


async def test_no_shadow_config_builds_no_mirror(sim: SimulatorProcess) -> None:
    router = Router(_config(sim.base_url, None))
    assert router.shadow is None
    assert not any(isinstance(o, ShadowMirror) for o in router.accountant.observers)


async def test_the_shadow_gets_the_request_as_the_plugins_sent_it() -> None:
    """A redaction and a system prompt apply to the mirrored request too; it is not streamed;
    the masked values are restored in the shadow's answer before it is scored."""
    plugins = [{"type": "pii_redact", "entities": ["EMAIL_ADDRESS"]},
               {"type": "system_prompt", "text": "Be brief."}]
    async with echo_backend(reply="write to the address given") as (base_url, received):
        config = _config(base_url, {"model": SHADOW, "sample": 1.0, "scorer": "exact"},
                         plugins=plugins)
        async with Router(config) as router:
            relay = router.chat_stream({**_ask("mail bob@example.com now"),
                                        "stream_options": {"include_usage": True}})
            text = "".join([c["choices"][0]["delta"].get("content") or ""
                            async for c in relay if c.get("choices")])
            found = await _records(router)
    assert text == "write to the address given"
    served, shadowed = received
    assert served["stream"] is True
    assert shadowed["stream"] is False and "stream_options" not in shadowed
    assert shadowed["messages"] == served["messages"]
    assert shadowed["messages"][0] == {"role": "system", "content": "Be brief."}
    assert "bob@example.com" not in orjson.dumps(shadowed).decode()
    [record] = found
    assert record["stream"] is True and record["agree"] is True  # the same text both ways


# -- reading the records back ------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
async def test_scan_all_pages_through_more_keys_than_a_page(backend: str,
                                                            tmp_path: Path) -> None:
    with unique_prefix("shadow") as prefix:
        store = build_store(backend, tmp_path, prefix.replace("-", "_"))
        await store.start()
        try:
            base = 1_700_000_000.0
            for i in range(300):
                await store.set_value(shadow_key(base + i, f"req_{i}"),
                                      orjson.dumps({"i": i}), ttl_s=3600)
            pairs = await scan_all(store, page=50)
            assert sorted(orjson.loads(v)["i"] for _, v in pairs) == list(range(300))
            floor = shadow_key(base + 250, "")[:len(SHADOW_PREFIX) + 13]
            later = await scan_all(store, floor=floor, page=50)
            kept = {orjson.loads(v)["i"] for _, v in later}
            assert set(range(250, 300)) <= kept and len(kept) < 300  # older ones skipped
        finally:
            await store.close()


def _row(i: int, outcome: str) -> dict[str, Any]:
    return {"request_id": f"req_{i}", "decision": "d", "time": time.time() - 60,
            "shadow_model": "m", "scorer": "exact", "status": "ok", "outcome": outcome,
            "served_cost_usd": 0.001, "shadow_cost_usd": 0.002}


async def _write_rows(store: Store, rows: list[dict[str, Any]]) -> None:
    await store.start()
    try:
        for row in rows:
            await store.set_value(shadow_key(row["time"], row["request_id"]),
                                  orjson.dumps(row), ttl_s=3600)
    finally:
        await store.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "routeyard", "shadow-report", *args],
                          capture_output=True, text=True, timeout=60)


@needs_redis
def test_shadow_report_reads_redis() -> None:
    require_redis()
    with unique_prefix("shadow-cli") as prefix:
        run_async(lambda: _write_rows(RedisStore(REDIS_URL, key_prefix=prefix),
                                      [_row(i, "win" if i < 3 else "loss") for i in range(5)]))
        done = _cli("--redis", REDIS_URL, "--key-prefix", prefix, "--json", "--since", "1h")
        assert done.returncode == 0, done.stderr
        [group] = json.loads(done.stdout)["groups"]
        assert (group["n"], group["win"]["count"], group["loss"]["count"]) == (5, 3, 2)
        later = _cli("--redis", REDIS_URL, "--key-prefix", prefix, "--since", "30s")
        assert later.returncode == 2 and "in this window" in later.stderr


@needs_postgres
def test_shadow_report_reads_postgres() -> None:
    require_postgres()
    with fresh_database() as url:
        run_async(lambda: _write_rows(PostgresStore(url), [_row(i, "tie") for i in range(4)]))
        done = _cli("--postgres", url, "--json")
        assert done.returncode == 0, done.stderr
        [group] = json.loads(done.stdout)["groups"]
        assert (group["n"], group["tie"]["count"]) == (4, 4)


def test_shadow_report_needs_one_source(tmp_path: Path) -> None:
    none = _cli()
    assert none.returncode == 2 and "give exactly one store" in none.stderr
    missing = _cli(str(tmp_path / "absent.db"))
    assert missing.returncode == 2 and "no SQLite decision log" in missing.stderr


def test_report_rates_intervals_and_cost_delta() -> None:
    rows = ([{"outcome": "win"}] * 6 + [{"outcome": "tie"}] * 3 + [{"outcome": "loss"}] * 1)
    records = [{"decision": "d", "shadow_model": "m", "scorer": "exact", "status": "ok",
                "served_cost_usd": 1.0, "shadow_cost_usd": 1.5, "time": 0.0, **r}
               for r in rows]
    records.append({"decision": "d", "shadow_model": "m", "scorer": "exact",
                    "status": "timeout", "served_cost_usd": 1.0, "shadow_cost_usd": 0.0})
    [group] = report(records)["groups"]
    assert (group["n"], group["ok"], group["failed"], group["scored"]) == (11, 10, 1, 10)
    assert group["win"]["rate"] == pytest.approx(0.6)
    assert group["win"]["low"] < 0.6 < group["win"]["high"]
    assert group["win"] == {"count": 6, **wilson(6, 10)}  # type: ignore[dict-item]
    assert group["failure_rate"]["rate"] == pytest.approx(1 / 11)
    assert group["cost_delta_usd"]["mean"] == pytest.approx(0.5)
    assert group["cost_delta_usd"]["low"] == pytest.approx(0.5)  # no spread
    # Wilson for 6/10 (a textbook value).
    assert wilson(6, 10)["low"] == pytest.approx(0.3127, abs=1e-4)  # type: ignore[index]
    assert wilson(0, 0) is None


async def test_closing_the_router_cancels_a_hanging_mirror() -> None:
    """A reload or a shutdown closes the Router: a shadow stuck far past the close must not
    hold it up (the mirror is cancelled, its record never written)."""
    with start_simulator("--model", SERVED, "--model", SHADOW, "--ttft-ms", "0") as hanging:
        hanging.set_profile(SHADOW, hang_rate=1.0, hang_s=30.0)
        router = Router(_config(hanging.base_url, {"model": SHADOW, "sample": 1.0,
                                                   "scorer": "exact", "timeout_s": 60}))
        await router.start()
        await router.chat(_ask())
        await asyncio.sleep(0.2)  # the mirror's call is now waiting on the hung shadow
        assert len(router.shadow_tasks) == 1
        started = time.monotonic()
        await router.close()
        assert time.monotonic() - started < 5.0
        assert len(router.shadow_tasks) == 0
        assert await router.store.scan_values(SHADOW_PREFIX, 10) == []
