"""Self-consistency cascades: the offline evaluator and the live cascade against simulators."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import orjson
import pytest
from routerproc import start_router
from simproc import SimulatorProcess, start_simulator

from routeyard.answers import normalise_answer, vote
from routeyard.config import RouteyardConfig
from routeyard.dataset import RoutingDataset, load_split
from routeyard.eval.cascade_eval import CascadeEval, Chain, answer_codes, run_chain
from routeyard.eval.runner import available_algorithms
from routeyard.router import Router
from routeyard.serving.cascade import CascadeOptions
from routeyard.wire import completion_chunks

CHEAP, LARGE = "mistralai/mistral-7b-chat", "gpt-4-1106-preview"  # replayed routerbench models
UNRECORDED = "Write one sentence about routers that nobody ever recorded."


# -- answers and options ------------------------------------------------------------------------

def test_normalise_answer_and_vote() -> None:
    assert [normalise_answer(t) for t in ("B", " (b) ", "['B\\n']", "B) iron", "Answer: c")] \
        == ["b", "b", "b", "b", "c"]
    assert normalise_answer("  A cat sat  ") == "a cat sat"  # a sentence, not a letter
    assert vote(["a", "b", "a"], 3) == (0, pytest.approx(2 / 3))
    assert vote(["a", None], 2) == (0, 0.5)  # a failed probe dissents
    assert vote([None], 2) == (None, 0.0)
    with pytest.raises(ValueError, match="probes"):
        CascadeOptions.parse({"models": ["m"], "probes": 0})
    with pytest.raises(ValueError, match="unknown"):
        CascadeOptions.parse({"models": ["m"], "probs": 2})


def test_completion_replays_as_chunks() -> None:
    response = {"id": "c1", "created": 1, "model": "m", "usage": {"prompt_tokens": 3},
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": " two  words"}}]}
    chunks = [orjson.loads(c) for c in completion_chunks(response)]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == " two  words"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1] == {"id": "c1", "object": "chat.completion.chunk", "created": 1,
                          "model": "m", "choices": [], "usage": {"prompt_tokens": 3}}


# -- offline evaluator ----------------------------------------------------------------------------

def synthetic(n: int = 40) -> RoutingDataset:
    """a, b cheap (0.001, 0.002), big dear (0.1). Even rows: a and b agree and are right;
    odd rows: they disagree and only big is right. The last row has no responses."""
    models = ["a", "b", "big"]
    scores, responses = [], []
    for i in range(n):
        if i % 2 == 0:
            scores.append([1.0, 1.0, 1.0])
            responses.append({"a": "B", "b": "(b)", "big": "B"})
        else:
            scores.append([0.0, 0.0, 1.0])
            responses.append({"a": "A", "b": "C", "big": "D"})
    responses[-1] = {}
    costs = np.tile([0.001, 0.002, 0.1], (n, 1))
    return RoutingDataset("syn", [str(i) for i in range(n)], ["t"] * n, ["p"] * n, models,
                          np.array(scores), costs, responses)


def test_offline_chain_agreement_stays_cheap_and_disagreement_escalates() -> None:
    data = synthetic()
    codes, kept = answer_codes(data)
    assert kept.sum() == len(data) - 1
    cost, quality, escalated = run_chain(Chain((0, 1), 1.0, 2), codes, data.costs, data.scores)
    assert not escalated[0] and escalated[1]
    assert cost[0] == pytest.approx(0.003)  # both voters are paid for
    assert cost[1] == pytest.approx(0.103)  # ... and the final model on escalation
    assert quality[:-1].tolist() == [1.0] * (len(data) - 1)


def test_offline_cascade_curve_is_chosen_on_train() -> None:
    assert "cascade" in available_algorithms()
    algorithm = CascadeEval()
    algorithm.fit(synthetic(), np.zeros((40, 1)))
    points = dict(algorithm.curve(synthetic(20), np.zeros((20, 1)), (0.0, 0.01, 1000.0)))
    assert algorithm.skipped == {"train": 1, "test": 1}
    assert algorithm.chosen[0.01] == "a+b (agree ≥ 1.00) > big"
    # Half the rows stay with the voters, half pay for everything: perfect quality.
    assert points[0.01][1] == 1.0
    assert points[0.01][0] == pytest.approx(0.003 + 0.1 / 2, rel=0.06)
    assert points[1000.0][0] == pytest.approx(0.001)  # cheapest: `a` alone
    assert points[0.0][1] == 1.0


# -- live cascade -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def replay_sim() -> Iterator[SimulatorProcess]:
    data = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "routerbench"
    if not data.is_dir():
        pytest.skip("routerbench data is absent")
    with start_simulator("--replay", str(data), "--ttft-ms", "0", "--tpot-ms", "0",
                         "--seed", "7") as sim:
        # Unrecorded prompts get filler of random length: the cheap model disagrees with itself.
        sim.set_profile(CHEAP, output_tokens_mean=30, output_tokens_sd=15)
        yield sim


@pytest.fixture(scope="module")
def recorded_prompt() -> str:
    path = Path(__file__).resolve().parents[1].parent / "shared/data/routerbench/test.jsonl"
    return load_split(path).prompts[0]


def cascade_config(sim: SimulatorProcess, **extra: Any) -> dict[str, Any]:
    return {
        "models": [{"name": "cheap", "endpoints": [{"base_url": sim.base_url,
                                                    "upstream_model": CHEAP}],
                    "pricing": {"input_per_mtok": 1, "output_per_mtok": 1}},
                   {"name": "large", "endpoints": [{"base_url": sim.base_url,
                                                    "upstream_model": LARGE}],
                    "pricing": {"input_per_mtok": 100, "output_per_mtok": 100}}],
        "default": {"candidates": ["large"], "algorithm_options": {
            "cascade": {"models": ["cheap", "large"], "probes": 3, "agreement": 1.0}}},
        **extra,
    }


def single_usage(sim: SimulatorProcess, model: str, prompt: str) -> dict[str, int]:
    reply = httpx.post(sim.base_url + "/chat/completions", json={
        "model": model, "messages": [{"role": "user", "content": prompt}]})
    return reply.json()["usage"]


def requests_to(sim: SimulatorProcess) -> dict[str, int]:
    counts = sim.stats()["requests"]
    return {CHEAP: counts.get(CHEAP, 0), LARGE: counts.get(LARGE, 0)}


async def test_live_cascade_agrees_or_escalates(replay_sim: SimulatorProcess,
                                                recorded_prompt: str, tmp_path: Path) -> None:
    one = single_usage(replay_sim, CHEAP, recorded_prompt)
    replay_sim.reset()
    config = RouteyardConfig.model_validate(cascade_config(
        replay_sim, state={"backend": "sqlite", "path": str(tmp_path / "s.db")}))
    async with Router(config) as router:
        agreed = await router.complete({"model": "auto", "messages": [
            {"role": "user", "content": recorded_prompt}]})
        assert agreed.headers["x-routeyard-cascade"] == "cheap"
        assert agreed.served.model.name == "cheap"
        assert requests_to(replay_sim) == {CHEAP: 3, LARGE: 0}
        assert agreed.response["usage"]["prompt_tokens"] == 3 * one["prompt_tokens"]
        assert agreed.response["usage"]["completion_tokens"] == 3 * one["completion_tokens"]

        escalated = await router.complete({"model": "auto", "messages": [
            {"role": "user", "content": UNRECORDED}]})
        assert escalated.headers["x-routeyard-cascade"] == "cheap>large"
        assert escalated.served.model.name == "large"
        assert requests_to(replay_sim) == {CHEAP: 6, LARGE: 1}
        usage = escalated.response["usage"]
        final_tokens = len(escalated.response["choices"][0]["message"]["content"].split())
        assert usage["prompt_tokens"] == 4 * single_usage(replay_sim, LARGE, UNRECORDED)[
            "prompt_tokens"]
        assert usage["completion_tokens"] > final_tokens  # the probes' tokens count too
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        # The decision log prices each call at its own model's rate: the cheap probes at
        # $1/Mtok, the large answer at $100/Mtok; not all tokens at the large rate.
        await router.store.flush()
        record = await router.store.get_decision(escalated.plan.request_id)
        assert record is not None and record.model == "large"
        all_at_large_rate = usage["total_tokens"] * 100 / 1e6
        assert 0 < record.cost_usd < all_at_large_rate


def test_streaming_cascade_through_openai_sdk(replay_sim: SimulatorProcess,
                                              recorded_prompt: str, tmp_path: Path) -> None:
    one = single_usage(replay_sim, CHEAP, recorded_prompt)
    with start_router(cascade_config(replay_sim), tmp_path) as gateway:
        client = openai.OpenAI(base_url=gateway.base_url, api_key="k", max_retries=0,
                               timeout=30)
        replay_sim.reset()
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": recorded_prompt}],
            stream=True, stream_options={"include_usage": True})
        assert raw.headers["content-type"].startswith("text/event-stream")
        assert raw.headers["x-routeyard-model"] == "cheap"
        assert raw.headers["x-routeyard-cascade"] == "cheap"
        chunks = list(raw.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == httpx.post(replay_sim.base_url + "/chat/completions", json={
            "model": CHEAP, "messages": [{"role": "user", "content": recorded_prompt}]}
        ).json()["choices"][0]["message"]["content"]
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.prompt_tokens == 3 * one["prompt_tokens"]
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"

        replay_sim.reset()
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": UNRECORDED}], stream=True)
        assert raw.headers["x-routeyard-model"] == "large"
        assert raw.headers["x-routeyard-cascade"] == "cheap>large"
        chunks = list(raw.parse())
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert all(c.usage is None for c in chunks)  # not asked for
        assert requests_to(replay_sim) == {CHEAP: 3, LARGE: 1}
