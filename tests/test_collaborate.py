"""Step-level collaboration: the small model drafts each step, the large one writes those the
small one is unsure how to begin. A Router in this process against a real simulator process
whose answers are three steps with known first-token entropies."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from simproc import SimulatorProcess, start_simulator

from routeyard.catalog import load_config
from routeyard.config import ConfigError, RouteyardConfig
from routeyard.router import Router
from routeyard.serving.collaborate import first_token_entropy
from routeyard.simulator.text import stepped_text

N, STEP = 12, 4  # every answer: 12 words in 3 steps of 4
ANSWER = stepped_text(N, STEP)  # what either model says, whoever writes which step
ENTROPIES = [0.1, 1.5, 0.2]  # nats: the middle step is hard (threshold 1.0)
PROFILE = {"output_tokens_mean": N, "step_tokens": STEP, "logprobs": True,
           "error_5xx_rate": 0.0, "step_entropy": ENTROPIES}
PRICES = {"sim-s": 1.0, "sim-l": 100.0}  # $ per million tokens, in and out


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    path = tmp_path_factory.mktemp("sim") / "sim.yaml"
    path.write_text(yaml.safe_dump({"models": {"sim-s": PROFILE, "sim-l": PROFILE}}))
    with start_simulator("--config", str(path)) as process:
        yield process


@pytest.fixture
def fresh(sim: SimulatorProcess) -> SimulatorProcess:
    for model in PRICES:
        sim.set_profile(model, **PROFILE)
    sim.reset()
    return sim


def model(name: str, sim: SimulatorProcess, *, logprobs: bool = True) -> dict[str, Any]:
    return {"name": name, "continuation": "continue_final_message",
            "capabilities": {"logprobs": logprobs},
            "pricing": {"input_per_mtok": PRICES[name], "output_per_mtok": PRICES[name]},
            "endpoints": [{"base_url": sim.base_url}]}


def config(sim: SimulatorProcess, tmp_path: Path, **collaborate: Any) -> dict[str, Any]:
    return {
        "models": [model("sim-s", sim), model("sim-l", sim)],
        "default": {"candidates": ["sim-s"], "collaborate": {
            "small": "sim-s", "large": "sim-l", "entropy_threshold": 1.0, **collaborate}},
        "pool": {"retry": {"max_retries": 0}, "health_check": {"interval_s": 0}},
        "state": {"backend": "sqlite", "path": str(tmp_path / "state.db")},
    }


def router(sim: SimulatorProcess, tmp_path: Path, **collaborate: Any) -> Router:
    return Router(RouteyardConfig.model_validate(config(sim, tmp_path, **collaborate)))


def ask(**extra: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": "Think it through."}],
            **extra}


def calls(sim: SimulatorProcess) -> dict[str, int]:
    counts = sim.stats()["requests"]
    return {name: counts.get(name, 0) for name in PRICES}


async def collaboration(router_: Router, request_id: str) -> dict[str, Any]:
    await router_.store.flush()
    record = await router_.store.get_decision(request_id)
    assert record is not None
    return record.detail["collaborate"] | {"_cost": record.cost_usd,
                                                       "_model": record.model}


def test_entropy_is_over_the_renormalised_top_logprobs() -> None:
    def choice(*probabilities: float) -> dict[str, Any]:
        top = [{"token": str(i), "logprob": math.log(p)} for i, p in enumerate(probabilities)]
        return {"logprobs": {"content": [{"token": "0", "logprob": top[0]["logprob"],
                                          "top_logprobs": top}]}}

    # 0.5 and 0.25 renormalise to 2/3 and 1/3.
    expected = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert first_token_entropy(choice(0.5, 0.25)) == pytest.approx(expected)
    assert first_token_entropy(choice(0.25, 0.25, 0.25, 0.25)) == pytest.approx(math.log(4))
    assert first_token_entropy(choice(1.0)) == pytest.approx(0.0)
    assert first_token_entropy({"logprobs": None}) is None
    assert first_token_entropy({"logprobs": {"content": []}}) is None


async def test_the_hard_step_goes_to_the_large_model(fresh: SimulatorProcess,
                                                     tmp_path: Path) -> None:
    async with router(fresh, tmp_path) as r:
        answer = await r.complete(ask())
        record = await collaboration(r, answer.plan.request_id)
    text = answer.response["choices"][0]["message"]["content"]
    assert text == ANSWER
    assert answer.response["choices"][0]["finish_reason"] == "stop"
    assert answer.headers["x-routeyard-steps"] == "small=2,large=1"
    # The small model drafted all three steps; the large one rewrote the middle one.
    assert calls(fresh) == {"sim-s": 3, "sim-l": 1}
    assert record["writers"] == ["small", "large", "small"]
    assert record["entropies"] == pytest.approx(ENTROPIES, abs=1e-3)
    assert record["steps"] == {"small": 2, "large": 1}
    # Usage is every call's; each priced at its own model's rate.
    used = answer.response["usage"]
    assert used["completion_tokens"] == 4 + 4 + 4 + 4  # three drafts and the rewrite
    assert record["_cost"] == pytest.approx(record["cost_usd"])
    all_small = used["total_tokens"] * PRICES["sim-s"] / 1e6
    all_large = used["total_tokens"] * PRICES["sim-l"] / 1e6
    assert all_small < record["_cost"] < all_large


@pytest.mark.parametrize(("threshold", "steps", "expected_calls"), [
    (0.0, "small=0,large=3", {"sim-s": 3, "sim-l": 3}),
    (2.0, "small=3,large=0", {"sim-s": 3, "sim-l": 0}),
])
async def test_the_threshold_moves_steps_between_models(
        fresh: SimulatorProcess, tmp_path: Path, threshold: float, steps: str,
        expected_calls: dict[str, int]) -> None:
    async with router(fresh, tmp_path, entropy_threshold=threshold) as r:
        answer = await r.complete(ask())
    assert answer.response["choices"][0]["message"]["content"] == ANSWER
    assert answer.headers["x-routeyard-steps"] == steps
    assert calls(fresh) == expected_calls


async def test_a_stream_sends_each_step_as_it_is_decided(fresh: SimulatorProcess,
                                                         tmp_path: Path) -> None:
    async with router(fresh, tmp_path) as r:
        relay = await r.open_stream(ask(stream=True, stream_options={"include_usage": True}))
        frames = [frame async for frame in relay.frames()]
        request_id = relay.plan.request_id
        record = await collaboration(r, request_id)
    assert frames[-1] == b"data: [DONE]\n\n"
    chunks = [orjson.loads(f[6:]) for f in frames[:-1]]
    texts = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert [t for t in texts if t] == ["Routing sends each request", "\n\nto the model that",
                                       "\n\nfits it best. A"]
    finishing = next(c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"])
    assert finishing["routeyard"]["collaborate"]["steps"] == {"small": 2, "large": 1}
    assert chunks[-1]["usage"]["completion_tokens"] == 16
    assert record["steps"] == {"small": 2, "large": 1}
    assert record["_model"] == "sim-s"  # the last step's writer
    assert record["_cost"] == pytest.approx(record["cost_usd"])


async def test_a_stream_goes_on_when_the_small_model_fails_mid_way(
        fresh: SimulatorProcess, tmp_path: Path) -> None:
    async with router(fresh, tmp_path) as r:
        relay = await r.open_stream(ask(stream=True))  # the first step is decided here
        fresh.set_profile("sim-s", error_5xx_rate=1.0)
        frames = [frame async for frame in relay.frames()]
        record = await collaboration(r, relay.plan.request_id)
    chunks = [orjson.loads(f[6:]) for f in frames[:-1]]
    texts = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    # The large model wrote everything after the first step, in one call.
    assert [t for t in texts if t] == ["Routing sends each request",
                                       "\n\nto the model that\n\nfits it best. A"]
    assert record["writers"] == ["small", "large"]
    assert record["notes"][0].startswith("step 1: small failed")


async def test_a_stream_no_model_can_go_on_with_ends_with_an_error_event(
        fresh: SimulatorProcess, tmp_path: Path) -> None:
    async with router(fresh, tmp_path) as r:
        relay = await r.open_stream(ask(stream=True))
        for name in PRICES:
            fresh.set_profile(name, error_5xx_rate=1.0)
        frames = [frame async for frame in relay.frames()]
        await relay.finish()  # as the API layer does once the response is sent
        await r.store.flush()
        record = await r.store.get_decision(relay.plan.request_id)
    error = orjson.loads(frames[-1][6:])["error"]
    assert error["code"] == "stream_interrupted"
    assert record is not None and record.status == "stream_broken"
    # What the calls made so far cost is recorded, and what each model wrote.
    assert record.cost_usd > 0
    assert record.detail["collaborate"]["writers"] == ["small"]


async def test_the_large_model_failing_keeps_the_draft(fresh: SimulatorProcess,
                                                       tmp_path: Path) -> None:
    fresh.set_profile("sim-l", error_5xx_rate=1.0)
    async with router(fresh, tmp_path) as r:
        answer = await r.complete(ask())
        record = await collaboration(r, answer.plan.request_id)
    assert answer.response["choices"][0]["message"]["content"] == ANSWER
    assert answer.headers["x-routeyard-steps"] == "small=3,large=0"
    assert record["notes"] and record["notes"][0].startswith("step 1: large failed")


async def test_the_small_model_failing_hands_the_answer_to_the_large(
        fresh: SimulatorProcess, tmp_path: Path) -> None:
    fresh.set_profile("sim-s", error_5xx_rate=1.0)
    async with router(fresh, tmp_path) as r:
        answer = await r.complete(ask())
        record = await collaboration(r, answer.plan.request_id)
    assert answer.response["choices"][0]["message"]["content"] == ANSWER
    assert answer.headers["x-routeyard-steps"] == "small=0,large=1"
    assert calls(fresh) == {"sim-s": 1, "sim-l": 1}
    assert record["notes"][0].startswith("step 0: small failed")
    assert record["_model"] == "sim-l"


async def test_no_logprobs_at_run_time_sends_steps_to_the_large_model(
        fresh: SimulatorProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fresh.set_profile("sim-s", logprobs=False)
    with caplog.at_level(logging.WARNING, "routeyard.collaborate"):
        async with router(fresh, tmp_path, entropy_threshold=5.0) as r:
            first = await r.complete(ask())
            await r.complete(ask())
    assert first.headers["x-routeyard-steps"] == "small=0,large=3"
    warned = [m for m in caplog.messages if "gave no logprobs" in m]
    assert len(warned) == 1  # once, not per step or request


async def test_max_steps_and_the_clients_max_tokens_end_the_answer(
        fresh: SimulatorProcess, tmp_path: Path) -> None:
    async with router(fresh, tmp_path, max_steps=2) as r:
        capped = await r.complete(ask())
        budget = await r.complete(ask(max_tokens=6))
    assert capped.response["choices"][0]["message"]["content"] == stepped_text(8, STEP)
    assert capped.response["choices"][0]["finish_reason"] == "length"
    assert capped.headers["x-routeyard-steps"] == "small=1,large=1"
    # 6 tokens: the first step (4), then 2 of the second, written by the large model.
    assert budget.response["choices"][0]["message"]["content"] == "Routing sends each " \
        "request\n\nto the"
    assert budget.response["choices"][0]["finish_reason"] == "length"


async def test_requests_a_step_loop_cannot_serve_go_direct(fresh: SimulatorProcess,
                                                           tmp_path: Path) -> None:
    async with router(fresh, tmp_path) as r:
        answer = await r.complete(ask(n=2))
    assert "x-routeyard-steps" not in answer.headers
    assert calls(fresh) == {"sim-s": 1, "sim-l": 0}


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "routeyard.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_validation_refuses_a_small_model_without_logprobs(sim: SimulatorProcess,
                                                           tmp_path: Path) -> None:
    data = config(sim, tmp_path)
    data["models"][0] = model("sim-s", sim, logprobs=False)
    data["decisions"] = [{"name": "think", "candidates": ["sim-s"],
                          "collaborate": {"small": "sim-s", "large": "sim-l"}}]
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, data))
    rendered = error.value.render()
    assert "decisions[0].collaborate.small" in rendered
    assert "decision 'think': model 'sim-s' does not return logprobs" in rendered
    assert "default.collaborate.small" in rendered  # the default decision's too


def test_validation_refuses_unknown_models_and_models_that_cannot_continue(
        sim: SimulatorProcess, tmp_path: Path) -> None:
    data = config(sim, tmp_path)
    data["default"]["collaborate"]["small"] = "nope"
    del data["models"][1]["continuation"]  # an OpenAI endpoint cannot continue by default
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, data))
    rendered = error.value.render()
    assert "default.collaborate.small: unknown model 'nope'" in rendered
    assert "model 'sim-l' cannot continue a partial answer" in rendered
