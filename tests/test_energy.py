"""Energy as a routing objective: the estimate, located config errors, energy-weighted selection
(cost-aware, budget and online algorithms), the record's `energy_j` on every store and in the
stats aggregates, and end to end through `routeyard serve` with the openai SDK and the
simulator: the efficient model of two equally good ones is chosen, and joules are reported."""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import httpx
import openai
import pytest
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator

from routeyard.config import ConfigError
from routeyard.config.loader import parse_config
from routeyard.config.schema import EnergyConfig, GpuName, ModelConfig
from routeyard.pool.endpoint import PooledModel
from routeyard.pool.energy import GPUS, EnergyRates, estimate, model_energy
from routeyard.selection.base import make_algorithm
from routeyard.state import DecisionRecord, SQLiteStore, Store
from routeyard.state.query import StatsQuery

# Two models of equal quality: `hungry` a 70B model on two H100s (estimated), `frugal` with
# measured figures ten times lower.
ADMIN = "ry-energy-admin-key"
HUNGRY = {"gpu": "H100", "gpus": 2, "params_b": 70}
FRUGAL = {"joules_per_input_token": 0.02, "joules_per_output_token": 0.25}


def model(name: str, energy: dict[str, Any] | None = None, **extra: Any) -> ModelConfig:
    return ModelConfig(name=name, endpoints=[{"base_url": "http://127.0.0.1:9/v1"}],
                       energy=energy, **extra)


def candidates(*configs: ModelConfig) -> list[PooledModel]:
    return [PooledModel(c.name, c) for c in configs]


# -- the estimate ------------------------------------------------------------------------------


def test_the_estimate_follows_the_documented_formula() -> None:
    rates = estimate(EnergyConfig(**HUNGRY))
    h100 = GPUS["H100"]
    params = 70e9
    # decode: P·n / (n·B·0.7 / (2·N) · 16); prefill: P·n / (n·F·0.4 / (2·N))
    assert rates.output_j == pytest.approx(
        700 * 2 / (2 * h100.hbm_bytes_s * 0.7 / (2 * params) * 16))
    assert rates.input_j == pytest.approx(700 * 2 / (2 * h100.bf16_flops * 0.4 / (2 * params)))
    assert 2.0 < rates.output_j < 3.0 and 0.2 < rates.input_j < 0.3  # the documented example
    # A bigger batch spreads a step's weight reads over more tokens; prefill is unaffected.
    batched = estimate(EnergyConfig(**HUNGRY, batch=64))
    assert batched.output_j == pytest.approx(rates.output_j / 4)
    assert batched.input_j == pytest.approx(rates.input_j)
    assert estimate(EnergyConfig(**FRUGAL)) == EnergyRates(0.02, 0.25)


def test_every_gpu_the_schema_accepts_has_figures() -> None:
    assert set(GPUS) == set(get_args(GpuName))
    for profile in GPUS.values():
        assert profile.tdp_w > 0 and profile.hbm_bytes_s > 0 and profile.bf16_flops > 0


def test_an_endpoint_with_its_own_figures_counts_its_own() -> None:
    config = ModelConfig(name="m", energy=FRUGAL, endpoints=[
        {"base_url": "http://a/v1"},
        {"name": "old-gpus", "base_url": "http://b/v1", "energy": {"gpu": "A100", "params_b": 8}}])
    energy = model_energy(config)
    assert energy is not None
    assert energy.served("m#0") == EnergyRates(0.02, 0.25)
    assert energy.served("old-gpus") == estimate(EnergyConfig(gpu="A100", params_b=8))
    # Only endpoints with figures: selection weighs their traffic-weighted mean.
    mixed = ModelConfig(name="n", endpoints=[
        {"base_url": "http://a/v1", "weight": 3, "energy": {"joules_per_input_token": 0.0,
                                                             "joules_per_output_token": 1.0}},
        {"base_url": "http://b/v1", "energy": {"joules_per_input_token": 0.0,
                                               "joules_per_output_token": 2.0}}])
    found = model_energy(mixed)
    assert found is not None and found.rates is not None
    assert found.rates.output_j == pytest.approx(1.25)
    assert model_energy(model("none")) is None


# -- config errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(("energy", "location", "words"), [
    ("{gpu: H200, params_b: 70}", "models[0].energy.gpu", "'H100'"),
    ("{joules_per_input_token: 0.1}", "models[0].energy", "both joules_per_input_token"),
    ("{gpu: H100}", "models[0].energy", "params_b"),
    ("{gpu: H100, params_b: 7, joules_per_input_token: 0.1, joules_per_output_token: 1}",
     "models[0].energy", "not both"),
    ("{joules_per_input_token: -1, joules_per_output_token: 1}",
     "models[0].energy.joules_per_input_token", "greater than or equal"),
    ("{gpu: H100, params_b: 7, mfu: 1.5}", "models[0].energy.mfu", "less than or equal"),
    ("{gpu: H100, params_b: 7, watts: 300}", "models[0].energy.watts", "unknown key"),
])
def test_bad_energy_config_gets_a_located_error(energy: str, location: str, words: str) -> None:
    text = f"""
models:
  - name: m
    energy: {energy}
    endpoints: [{{base_url: "http://x/v1"}}]
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, environ={})
    problems = dict(caught.value.problems)
    assert location in problems, caught.value.render()
    assert words in problems[location], problems[location]


def test_bad_endpoint_energy_is_located_at_the_endpoint() -> None:
    text = """
models:
  - name: m
    endpoints: [{base_url: "http://x/v1", energy: {gpu: L4, params_b: 0}}]
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, environ={})
    assert "models[0].endpoints[0].energy.params_b" in dict(caught.value.problems)


@pytest.mark.parametrize("algorithm", ["quality_cost", "budget", "ema", "elo", "linucb",
                                       "thompson"])
def test_a_bad_lambda_energy_is_refused(algorithm: str) -> None:
    with pytest.raises(ValueError, match="lambda_energy must be a number >= 0"):
        make_algorithm(algorithm, {"lambda_energy": -1})


# -- selection -----------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["quality_cost", "budget"])
def test_energy_weighted_selection_prefers_the_efficient_model_at_equal_quality(
        algorithm: str) -> None:
    pool = candidates(model("hungry", HUNGRY), model("frugal", FRUGAL))
    priors = {"priors": {"hungry": 0.8, "frugal": 0.8}}
    # Without an energy weight the tie goes to the first listed...
    plain = make_algorithm(algorithm, priors).select(pool, 100)
    assert plain is not None and plain.model == "hungry"
    # ...with one, to the model that needs a tenth of the joules.
    chosen = make_algorithm(algorithm, {**priors, "lambda_energy": 0.5}).select(pool, 100)
    assert chosen is not None and chosen.model == "frugal"
    assert "energy" in chosen.reason
    # Quality still wins when the gap is larger than the energy term.
    better = {"priors": {"hungry": 0.95, "frugal": 0.5}, "lambda_energy": 0.2}
    found = make_algorithm(algorithm, better).select(pool, 100)
    assert found is not None and found.model == "hungry"


def test_quality_cost_scores_subtract_the_relative_energy() -> None:
    pool = candidates(model("hungry", HUNGRY), model("frugal", FRUGAL))
    chosen = make_algorithm("quality_cost", {"default_prior": 0.8, "lambda": 0.0,
                                             "lambda_energy": 0.5}).select(pool, 100)
    assert chosen is not None and chosen.scores is not None
    hungry, frugal = estimate(EnergyConfig(**HUNGRY)), estimate(EnergyConfig(**FRUGAL))
    share = frugal.joules(100, 256) / hungry.joules(100, 256)
    assert chosen.scores["hungry"] == pytest.approx(0.8 - 0.5)
    assert chosen.scores["frugal"] == pytest.approx(0.8 - 0.5 * share)


@pytest.mark.parametrize(("algorithm", "options"), [
    ("ema", {"epsilon": 0.0}),
    ("elo", {"epsilon": 0.0, "provisional": 0}),
    ("linucb", {}),
    # Samples lie in [0, 1]: a weight of 2 outweighs any draw.
    ("thompson", {"lambda_energy": 2.0}),
])
def test_online_learners_weigh_energy(algorithm: str, options: dict[str, Any]) -> None:
    pool = candidates(model("hungry", HUNGRY), model("frugal", FRUGAL))
    learner = make_algorithm(algorithm, {"lambda_energy": 0.5, **options})
    picks = {learner.select(pool, 100).model for _ in range(20)}  # type: ignore[union-attr]
    assert picks == {"frugal"}
    chosen = learner.select(pool, 100)
    assert chosen is not None and "λ_energy" in chosen.reason
    # Off, the learners' own (tied) estimates decide: `hungry` is chosen at least sometimes.
    plain = make_algorithm(algorithm, {**options, "lambda_energy": 0.0, "seed": 3})
    assert "hungry" in {plain.select(pool, 100).model for _ in range(40)}  # type: ignore[union-attr]


def test_a_model_without_figures_counts_as_zero_joules() -> None:
    pool = candidates(model("hungry", HUNGRY), model("unknown"))
    chosen = make_algorithm("quality_cost", {"lambda_energy": 1.0}).select(pool, 100)
    assert chosen is not None and chosen.model == "unknown"


# -- the record and the stats --------------------------------------------------------------------


def _record(i: int, model: str, energy: float | None, when: float) -> DecisionRecord:
    return DecisionRecord(request_id=f"e{i}", time=when, decision="d", model=model,
                          endpoint=f"{model}#0", latency_ms=10.0, prompt_tokens=10,
                          completion_tokens=5, cost_usd=0.001, status="ok", energy_j=energy)


async def test_every_store_keeps_energy_and_sums_it_in_the_stats(store: Store) -> None:
    now = math.floor(time.time() / 3600) * 3600 - 1800.0
    records = [_record(0, "hungry", 3.5, now), _record(1, "hungry", 1.5, now + 1),
               _record(2, "frugal", 0.25, now + 2), _record(3, "plain", None, now + 3)]
    for record in records:
        store.record_decision(record)
    await store.flush()
    found = await store.get_decision("e0")
    assert found is not None and found.energy_j == 3.5
    plain = await store.get_decision("e3")
    assert plain is not None and plain.energy_j is None
    total = await store.decision_stats(StatsQuery(now - 10, now + 10, None))
    assert total[None].energy_j == pytest.approx(5.25)
    by_model = await store.decision_stats(StatsQuery(now - 10, now + 10, "model"))
    assert by_model["hungry"].energy_j == pytest.approx(5.0)
    assert by_model["frugal"].energy_j == pytest.approx(0.25)
    assert by_model["plain"].energy_j == 0.0
    # Partial hours read the records (SQLite); the older-file test below reads roll-ups.
    part = await store.decision_stats(StatsQuery(now + 0.5, now + 10, None))
    assert part[None].energy_j == pytest.approx(1.75)


async def test_sqlite_adds_the_energy_columns_to_an_older_file(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = SQLiteStore(path)
    store.record_decision(_record(0, "m", None, time.time() - 60))
    await store.flush()
    await store.decision_stats(StatsQuery(0, time.time() + 10, None))  # make the roll-ups
    await store.close()
    with sqlite3.connect(path) as conn:  # as a file from before energy was recorded
        conn.execute("ALTER TABLE decisions DROP COLUMN energy_j")
        conn.execute("ALTER TABLE decision_rollups DROP COLUMN energy_j")
    reopened = SQLiteStore(path)
    try:
        reopened.record_decision(_record(1, "m", 2.0, time.time() - 30))
        await reopened.flush()
        found = await reopened.get_decision("e1")
        assert found is not None and found.energy_j == 2.0
        stats = await reopened.decision_stats(StatsQuery(0, time.time() + 10, None))
        assert stats[None].energy_j == pytest.approx(2.0) and stats[None].requests == 2
    finally:
        await reopened.close()


# -- end to end ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", "hungry", "--model", "frugal", "--ttft-ms", "0",
                         "--output-tokens", "12") as process:
        yield process


@pytest.fixture(scope="module")
def router(sim: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RouterProcess]:
    endpoint = [{"base_url": sim.base_url}]
    config = {
        "models": [{"name": "hungry", "energy": HUNGRY, "endpoints": endpoint},
                   {"name": "frugal", "energy": FRUGAL, "endpoints": endpoint}],
        "default": {"name": "green", "candidates": ["hungry", "frugal"],
                    "algorithm": "quality_cost",
                    "algorithm_options": {"priors": {"hungry": 0.7, "frugal": 0.7},
                                          "lambda_energy": 0.5}},
        "pool": {"health_check": {"interval_s": 0}},
        "server": {"admin_keys": [ADMIN]},  # /v1/decisions needs a viewer
    }
    with start_router(config, tmp_path_factory.mktemp("energy")) as process:
        yield process


def test_serve_routes_to_the_efficient_model_and_reports_its_joules(
        router: RouterProcess) -> None:
    client = openai.OpenAI(base_url=router.base_url, api_key=ADMIN)
    ids = []
    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "How green is this?"}])
        answer = raw.parse()
        assert answer.model == "frugal"
        ids.append(raw.headers["x-routeyard-request-id"])
    deadline = time.monotonic() + 10
    while len(client.get("/decisions", cast_to=dict)["data"]) < len(ids):  # written in batches
        assert time.monotonic() < deadline, "the records were not written"
        time.sleep(0.05)
    joules = 0.0
    for request_id in ids:
        record: Any = client.get(f"/decisions/{request_id}", cast_to=object)
        usage = (record["prompt_tokens"], record["completion_tokens"])
        assert usage[1] == 12
        assert record["energy_j"] == pytest.approx(0.02 * usage[0] + 0.25 * usage[1])
        assert "energy" in str(record["detail"]["selection"]), record["detail"]
        joules += record["energy_j"]
    metrics = httpx.get(f"{router.url}/metrics", timeout=10).text
    line = next(x for x in metrics.splitlines()
                if x.startswith('routeyard_energy_joules_total{model="frugal"}'))
    assert float(line.split()[-1]) == pytest.approx(joules)
    assert 'routeyard_energy_joules_total{model="hungry"}' not in metrics
    stats: Any = client.get("/stats?group_by=model", cast_to=object)
    assert stats["total"]["energy_j"] == pytest.approx(joules, rel=1e-4)
    assert stats["total"]["energy_j_per_request"] == pytest.approx(joules / 3, rel=1e-4)


# -- eval: the energy-quality frontier -----------------------------------------------------------

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_model_sizes_come_from_the_dataset_then_the_table(tmp_path: Path) -> None:
    from routeyard.eval.energy_eval import model_sizes

    (tmp_path / "models.json").write_text('{"models": {"small": {"size": "7B"}, '
                                          '"mixtral-8x7b-instruct-v0.1": {"size": "45B"}}}')
    sizes, unknown = model_sizes(tmp_path, ["small", "mixtral-8x7b-instruct-v0.1",
                                            "gpt-4-1106-preview", "mystery"])
    assert sizes == {"small": 7.0, "mixtral-8x7b-instruct-v0.1": 12.9,
                     "gpt-4-1106-preview": 280.0}
    assert unknown == ["mystery"]


@pytest.mark.skipif(not (SHARED / "llmrouter").is_dir(), reason="needs ../shared/data/llmrouter")
def test_eval_draws_an_energy_frontier_from_model_sizes() -> None:
    from routeyard.eval.runner import evaluate

    result = evaluate(SHARED / "llmrouter", ["prior"], progress=False, energy=True)
    energy = result["energy"]
    singles = {s["model"]: s for s in energy["single_models"]}
    # Joules grow with size: a 70B model needs several times an 8B one's.
    assert singles["llama3-chatqa-1.5-70b"]["energy_j"] > 5 * singles[
        "llama-3.1-8b-instruct"]["energy_j"]
    curve = energy["algorithms"]["prior"]["curve"]
    assert len(curve) >= 2
    # λ_energy trades quality for joules: the curve's cheapest point uses less energy and no
    # more quality than its best one.
    assert curve[0][0] < curve[-1][0] and curve[0][1] <= max(q for _, q in curve)
    assert 0 < energy["algorithms"]["prior"]["aiq"] <= 1
    assert "energy" not in evaluate(SHARED / "llmrouter", ["prior"], progress=False,
                                    lambdas=[0.0])
