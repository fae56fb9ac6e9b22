"""Exploration with logged propensities (issue 16): a decision's `exploration:` block.

The explorers' logged probabilities are checked against the frequencies they actually produce
(20,000 seeded draws, within 4 standard errors), the daily cost cap pauses exploring, and a real
`routeyard serve` with the simulator behind it logs, for every request sent with the openai SDK,
the probability of the model it served, which matches the served frequencies."""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from gateway_support import ADMIN_KEY, USER_KEY
from routerproc import start_router
from simproc import SimulatorProcess, start_simulator

from routeyard.catalog import build_config
from routeyard.config import ConfigError
from routeyard.config.schema import ExplorationConfig
from routeyard.eval.policy import Event
from routeyard.eval.policy_config import config_probabilities, load_policy
from routeyard.selection.base import Selection
from routeyard.selection.exploration import LEDGER_PREFIX, make_explorer
from routeyard.selection.ledger import BudgetLedger

DRAWS = 20_000


class Candidate:
    def __init__(self, name: str, available: bool = True) -> None:
        self.name = name
        self.available = available

    def is_available(self) -> bool:
        return self.available

    def fits(self, prompt_tokens: int) -> bool:
        return True


def _draws(config: ExplorationConfig, selection: Selection, candidates: list[Candidate],
           ledger: BudgetLedger | None = None) -> tuple[Counter[str], list[dict[str, Any]]]:
    explorer = make_explorer(config, "d", random.Random(7), ledger)
    counts: Counter[str] = Counter()
    records = []
    for _ in range(DRAWS):
        drawn = explorer.apply(selection, candidates)
        counts[drawn.selection.model] += 1
        records.append({"model": drawn.selection.model,
                        "probability": drawn.selection.probability, **drawn.record})
    return counts, records


def _assert_frequencies(counts: Counter[str], probabilities: dict[str, float]) -> None:
    assert sum(probabilities.values()) == pytest.approx(1.0)
    for name, p in probabilities.items():
        error = math.sqrt(p * (1 - p) / DRAWS)
        assert abs(counts[name] / DRAWS - p) <= 4 * error + 1e-9, (name, counts, probabilities)


def test_epsilon_over_a_deterministic_choice_logs_exact_probabilities() -> None:
    candidates = [Candidate("a"), Candidate("b"), Candidate("c")]
    counts, records = _draws(ExplorationConfig(epsilon=0.3), Selection("b", "best"),
                             candidates)
    expected = {"a": 0.1, "b": 0.8, "c": 0.1}
    _assert_frequencies(counts, expected)
    for record in records:
        assert record["probabilities"] == pytest.approx(expected)
        assert record["probability"] == pytest.approx(expected[record["model"]])
        assert record["explored"] is (record["model"] != "b")


def test_epsilon_never_draws_an_unavailable_candidate() -> None:
    candidates = [Candidate("a"), Candidate("b", available=False), Candidate("c")]
    counts, _ = _draws(ExplorationConfig(epsilon=0.5), Selection("a", "best"),
                             candidates)
    assert counts["b"] == 0
    _assert_frequencies(counts, {"a": 0.75, "c": 0.25})


def test_epsilon_over_a_randomised_choice_keeps_its_probability() -> None:
    """The algorithm chose `a` with probability 0.6 (Thompson, say): serving `a` has
    ε/n + (1-ε)·0.6; a uniform draw of another model is logged with ε/n (a lower bound), and
    no per-candidate table is claimed."""
    candidates = [Candidate("a"), Candidate("b")]
    _, records = _draws(ExplorationConfig(epsilon=0.2), Selection("a", "t", 0.6), candidates)
    for record in records:
        assert "probabilities" not in record
        expected = 0.1 + 0.8 * 0.6 if record["model"] == "a" else 0.1
        assert record["probability"] == pytest.approx(expected)


def test_softmax_draws_as_its_logged_probabilities() -> None:
    candidates = [Candidate("a"), Candidate("b"), Candidate("c")]
    scores = {"a": 0.9, "b": 0.7, "c": 0.2}
    counts, records = _draws(ExplorationConfig(temperature=0.2),
                             Selection("a", "best", scores=scores), candidates)
    weights = {m: math.exp(s / 0.2) for m, s in scores.items()}
    expected = {m: w / sum(weights.values()) for m, w in weights.items()}
    _assert_frequencies(counts, expected)
    assert records[0]["probabilities"] == pytest.approx(expected)
    for record in records[:200]:
        assert record["probability"] == pytest.approx(expected[record["model"]])


def test_softmax_without_scores_keeps_the_choice() -> None:
    counts, records = _draws(ExplorationConfig(temperature=0.2), Selection("a", "best"),
                             [Candidate("a"), Candidate("b")])
    assert counts == {"a": DRAWS}
    assert all(r["probability"] == 1.0 and not r["explored"] for r in records)


def test_the_daily_cap_pauses_exploring() -> None:
    ledger = BudgetLedger()
    config = ExplorationConfig(epsilon=1.0, max_daily_usd=0.5)
    explorer = make_explorer(config, "d", random.Random(1), ledger)
    candidates = [Candidate("a"), Candidate("b")]
    assert {explorer.apply(Selection("a", "x"), candidates).selection.model
            for _ in range(200)} == {"a", "b"}
    ledger.record(LEDGER_PREFIX + "d", 0.5)
    for _ in range(200):
        drawn = explorer.apply(Selection("a", "x"), candidates)
        assert drawn.selection.model == "a" and drawn.selection.probability == 1.0
        assert drawn.record == {"kind": "epsilon", "explored": False, "paused": True}


# -- config ---------------------------------------------------------------------------------

def _raw(decision_extra: dict[str, Any], algorithm: str = "static") -> dict[str, Any]:
    return {"models": [{"name": n, "endpoints": [{"base_url": "http://127.0.0.1:1/v1"}]}
                       for n in ("a", "b")],
            "decisions": [{"name": "d", "candidates": ["a", "b"], "algorithm": algorithm,
                           "when": {"keywords_any": ["x"]}, **decision_extra}]}


@pytest.mark.parametrize("exploration, message", [
    ({"epsilon": 0.1, "temperature": 1.0}, "exactly one of epsilon or temperature"),
    ({}, "exactly one of epsilon or temperature"),
    ({"epsilon": 1.5}, "less than or equal to 1"),
    ({"epsilon": 0}, "greater than 0"),
    ({"temperature": 0.5}, "a softmax exploration needs an algorithm that scores"),
    ({"epsilon": 0.1, "max_daily_usd": -1}, "greater than or equal to 0"),
    ({"epsilon": 0.1, "bogus": 1}, "bogus"),
])
def test_bad_exploration_config_is_a_located_error(exploration: dict[str, Any],
                                                   message: str) -> None:
    with pytest.raises(ConfigError) as error:
        build_config(_raw({"exploration": exploration}))
    assert message in str(error.value)
    assert "exploration" in str(error.value)


def test_softmax_is_accepted_over_a_scoring_algorithm() -> None:
    config = build_config(_raw({"exploration": {"temperature": 0.5},
                                "algorithm_options": {"priors": {"a": 0.9, "b": 0.5}}},
                               algorithm="quality_cost"))
    assert config.decisions[0].exploration is not None


def test_a_candidate_config_with_epsilon_is_evaluated_with_it(tmp_path: Path) -> None:
    path = tmp_path / "candidate.yaml"
    path.write_text("models:\n  - {name: a, endpoints: [{base_url: 'http://127.0.0.1:1/v1'}]}\n"
                    "  - {name: b, endpoints: [{base_url: 'http://127.0.0.1:1/v1'}]}\n"
                    "default: {candidates: [a, b], exploration: {epsilon: 0.4}}\n")
    event = Event(decision="default", candidates=("a", "b"), model="a", propensity=1.0,
                  quality=1.0, cost=0.0, latency=10.0, signals={}, prompt=None)
    probabilities = config_probabilities(load_policy(str(path)), [event])
    assert probabilities[0] == pytest.approx({"a": 0.8, "b": 0.2})


# -- end to end -----------------------------------------------------------------------------

MODELS = ("model-a", "model-b", "model-c")


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator(*[a for m in MODELS for a in ("--model", m)], "--ttft-ms", "0",
                         "--output-tokens", "4") as process:
        yield process


def _serve(sim: SimulatorProcess, tmp_path: Path, exploration: dict[str, Any], n: int
           ) -> list[dict[str, Any]]:
    """Send `n` requests with the openai SDK; return each one's decision record."""
    config = {
        "server": {"admin_keys": [ADMIN_KEY], "api_keys": [USER_KEY], "watch_config_s": 0},
        "models": [{"name": name, "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 1.0},
                    "endpoints": [{"base_url": sim.base_url}]} for name in MODELS],
        "default": {"candidates": list(MODELS), "exploration": exploration},
        "pool": {"health_check": {"interval_s": 0}},
    }
    with start_router(config, tmp_path) as router:
        client = openai.OpenAI(base_url=router.base_url, api_key=USER_KEY, max_retries=0)
        admin = openai.OpenAI(base_url=router.base_url, api_key=ADMIN_KEY, max_retries=0)
        served = []
        for i in range(n):
            raw = client.chat.completions.with_raw_response.create(
                model="auto", messages=[{"role": "user", "content": f"question {i}"}],
                max_tokens=8)
            served.append((raw.headers["x-routeyard-request-id"],
                           raw.headers["x-routeyard-model"]))
        records = []
        deadline = time.monotonic() + 20
        for request_id, model in served:
            while True:
                try:
                    record = admin.get(f"/decisions/{request_id}", cast_to=object)
                    break
                except openai.NotFoundError:
                    assert time.monotonic() < deadline, f"{request_id} was not logged"
                    time.sleep(0.05)
            assert record["model"] == model  # type: ignore[index]
            records.append(record)  # type: ignore[arg-type]
    return records


def test_served_requests_log_the_probability_of_their_model(sim: SimulatorProcess,
                                                            tmp_path: Path) -> None:
    records = _serve(sim, tmp_path, {"epsilon": 0.6}, 150)
    expected = {"model-a": 0.4 + 0.2, "model-b": 0.2, "model-c": 0.2}
    counts = Counter(r["model"] for r in records)
    for record in records:
        selection = record["detail"]["selection"]
        assert selection["probability"] == pytest.approx(expected[record["model"]])
        assert selection["exploration"]["probabilities"] == pytest.approx(expected)
        assert selection["exploration"]["explored"] is (record["model"] != "model-a")
    for model, p in expected.items():  # 150 draws: within 4 standard errors
        assert abs(counts[model] / 150 - p) <= 4 * math.sqrt(p * (1 - p) / 150)
    assert counts["model-b"] and counts["model-c"]


def test_exploration_stops_at_its_daily_cap(sim: SimulatorProcess, tmp_path: Path) -> None:
    """A cap below one request's cost: the first explored request spends it, and every later
    one serves the static choice, logged as paused with probability 1."""
    records = _serve(sim, tmp_path, {"epsilon": 1.0, "max_daily_usd": 1e-9}, 40)
    explored = [i for i, r in enumerate(records)
                if r["detail"]["selection"]["exploration"]["explored"]]
    assert len(explored) == 1, explored
    for record in records[explored[0] + 1:]:
        selection = record["detail"]["selection"]
        assert record["model"] == "model-a"
        assert selection["probability"] == 1.0
        assert selection["exploration"]["paused"] is True


async def test_a_conversation_kept_on_its_model_logs_no_exploration() -> None:
    """A Responses chain stays on its model: that choice was not drawn, so its record claims
    probability 1 and no exploration (nor explored spend)."""
    from routeyard.router import Router

    config = build_config({
        "models": [{"name": n, "endpoints": [{"base_url": "http://127.0.0.1:1/v1"}]}
                   for n in ("a", "b")],
        "default": {"candidates": ["a", "b"], "exploration": {"epsilon": 1.0}},
        "state": {"backend": "memory"}})
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    async with Router(config) as router:
        drawn = {(await router.plan(body)).model for _ in range(40)}
        assert drawn == {"a", "b"}  # ε = 1: both are drawn
        for _ in range(20):
            plan = await router.plan(body, prefer="b")
            assert plan.model == "b"
            assert plan.selection is not None
            assert plan.selection["probability"] == 1.0
            assert "exploration" not in plan.selection
