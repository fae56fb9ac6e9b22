"""Step-level collaboration end to end: `routeyard serve` in front of a real simulator process,
the openai SDK as the client; and `routeyard validate` refusing a small model without logprobs."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator

from routeyard.simulator.text import stepped_text

N, STEP = 12, 4
ANSWER = stepped_text(N, STEP)
PROFILE = {"output_tokens_mean": N, "step_tokens": STEP, "step_entropy": [0.1, 1.5, 0.2]}
LARGE_TTFT_MS = 600  # the large model is slow to start: the hard step arrives late


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    path = tmp_path_factory.mktemp("sim") / "sim.yaml"
    path.write_text(yaml.safe_dump({"models": {
        "sim-s": PROFILE, "sim-l": {**PROFILE, "ttft_ms": LARGE_TTFT_MS}}}))
    with start_simulator("--config", str(path)) as process:
        yield process


def config(sim: SimulatorProcess, *, small_logprobs: bool = True) -> dict[str, Any]:
    def model(name: str, price: float, logprobs: bool) -> dict[str, Any]:
        return {"name": name, "continuation": "continue_final_message",
                "capabilities": {"logprobs": logprobs},
                "pricing": {"input_per_mtok": price, "output_per_mtok": price},
                "endpoints": [{"base_url": sim.base_url}]}

    return {"models": [model("sim-s", 1, small_logprobs), model("sim-l", 100, False)],
            "decisions": [{"name": "think", "candidates": ["sim-s"],
                           "collaborate": {"small": "sim-s", "large": "sim-l",
                                           "entropy_threshold": 1.0, "top_logprobs": 5}}],
            "default": {"candidates": ["sim-s"]},
            "model_routes": [{"match": "think", "decision": "think"}],
            "pool": {"health_check": {"interval_s": 0}}}


@pytest.fixture(scope="module")
def gateway(sim: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RouterProcess]:
    with start_router(config(sim), tmp_path_factory.mktemp("router")) as process:
        yield process


@pytest.fixture
def client(gateway: RouterProcess, sim: SimulatorProcess) -> openai.OpenAI:
    sim.reset()
    return openai.OpenAI(base_url=gateway.base_url, api_key="k", max_retries=0, timeout=30)


MESSAGES = [{"role": "user", "content": "Work it out step by step."}]


def test_a_whole_answer_names_each_models_steps(client: openai.OpenAI,
                                                sim: SimulatorProcess) -> None:
    raw = client.chat.completions.with_raw_response.create(model="think", messages=MESSAGES)
    assert raw.headers["x-routeyard-steps"] == "small=2,large=1"
    answer = raw.parse()
    assert answer.choices[0].message.content == ANSWER
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.completion_tokens == 16  # 3 drafts + 1
    assert sim.stats()["requests"] == {"sim-s": 3, "sim-l": 1}


def test_a_stream_sends_steps_as_they_complete(client: openai.OpenAI) -> None:
    started = time.monotonic()
    arrivals: list[tuple[float, str]] = []
    chunks = []
    for item in client.chat.completions.create(model="think", messages=MESSAGES, stream=True,
                                               stream_options={"include_usage": True}):
        chunks.append(item)
        if item.choices and item.choices[0].delta.content:
            arrivals.append((time.monotonic() - started, item.choices[0].delta.content))
    assert "".join(text for _, text in arrivals) == ANSWER
    assert [text for _, text in arrivals] == ["Routing sends each request",
                                              "\n\nto the model that", "\n\nfits it best. A"]
    # The first step (the fast small model's) came before the large model had even begun
    # the second.
    first, second = arrivals[0][0], arrivals[1][0]
    assert second - first >= LARGE_TTFT_MS / 1000 * 0.9
    finishing = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert finishing.model_extra["routeyard"]["collaborate"]["steps"] == {"small": 2,
                                                                          "large": 1}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 16


def test_validate_refuses_a_small_model_without_logprobs(sim: SimulatorProcess,
                                                         tmp_path: Path) -> None:
    path = tmp_path / "routeyard.yaml"
    path.write_text(yaml.safe_dump(config(sim, small_logprobs=False)))
    result = subprocess.run([sys.executable, "-m", "routeyard", "validate", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "decisions[0].collaborate.small" in result.stderr
    assert "decision 'think': model 'sim-s' does not return logprobs" in result.stderr
