"""The simulator's logprobs (OpenAI's wire format, streamed and not), its stepped answers with a
configurable first-token entropy per step, and `stop`; through the openai SDK against a real
simulator process."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import yaml
from simproc import SimulatorProcess, start_simulator

from routeyard.simulator.logprobs import TOKEN_ENTROPY, StepEntropy, distribution
from routeyard.simulator.text import stepped_text

N, STEP = 12, 4
STEPS = [0.1, 1.5, 0.3]
GENERATOR = {"mean": 0.2, "spread": 0.1, "seed": 3, "hard_share": 0.5, "hard_mean": 1.4}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    path = tmp_path_factory.mktemp("sim") / "sim.yaml"
    base = {"output_tokens_mean": N, "step_tokens": STEP}
    path.write_text(yaml.safe_dump({"models": {
        "listed": {**base, "step_entropy": STEPS},
        "drawn": {**base, "step_entropy": GENERATOR},
        "mute": {**base, "logprobs": False},
        "plain": {"output_tokens_mean": N}}}))
    with start_simulator("--config", str(path)) as process:
        yield process


@pytest.fixture
def oai(sim: SimulatorProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.base_url, api_key="k", max_retries=0)


def entropy(top: list[Any]) -> float:
    probabilities = [math.exp(t.logprob) for t in top]
    total = sum(probabilities)
    return -sum(p / total * math.log(p / total) for p in probabilities)


def user(text: str = "think") -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def test_distribution_has_the_entropy_asked_for() -> None:
    for k in (2, 5, 20):
        for wanted in (0.0, 0.05, 0.5, 1.2):
            probabilities = distribution(wanted, k)
            assert sum(probabilities) == pytest.approx(1.0)
            assert probabilities[0] == max(probabilities)
            got = -sum(p * math.log(p) for p in probabilities if p > 0)
            assert got == pytest.approx(min(wanted, math.log(k)), abs=1e-6)
    assert distribution(9.0, 3) == pytest.approx([1 / 3] * 3)  # clipped to ln 3


def test_a_whole_answer_gives_each_steps_first_token_its_entropy(oai: openai.OpenAI) -> None:
    answer = oai.chat.completions.create(model="listed", messages=user(), logprobs=True,
                                         top_logprobs=5)
    choice = answer.choices[0]
    assert choice.message.content == stepped_text(N, STEP)
    assert choice.logprobs is not None and choice.logprobs.content is not None
    tokens = choice.logprobs.content
    assert "".join(t.token for t in tokens) == choice.message.content
    assert all(len(t.top_logprobs) == 5 and t.top_logprobs[0].token == t.token for t in tokens)
    assert all(bytes(t.bytes or []) == t.token.encode() for t in tokens)
    starts = [entropy(t.top_logprobs) for i, t in enumerate(tokens) if i % STEP == 0]
    assert starts == pytest.approx(STEPS, abs=1e-6)
    others = [entropy(t.top_logprobs) for i, t in enumerate(tokens) if i % STEP]
    assert others == pytest.approx([TOKEN_ENTROPY] * len(others), abs=1e-6)


def test_logprobs_stream_with_each_token(oai: openai.OpenAI) -> None:
    chunks = [c for c in oai.chat.completions.create(model="listed", messages=user(),
                                                     logprobs=True, top_logprobs=3,
                                                     stream=True) if c.choices]
    tokens = [t for c in chunks if c.choices[0].logprobs and c.choices[0].logprobs.content
              for t in c.choices[0].logprobs.content]
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == stepped_text(N, STEP)
    assert "".join(t.token for t in tokens) == text
    # 1.5 nats is more than 3 alternatives can hold: clipped to ln 3.
    assert entropy(tokens[STEP].top_logprobs) == pytest.approx(math.log(3))
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_no_logprobs_unless_asked_or_when_the_model_has_none(oai: openai.OpenAI,
                                                            sim: SimulatorProcess) -> None:
    assert oai.chat.completions.create(model="listed", messages=user()
                                       ).choices[0].logprobs is None
    assert oai.chat.completions.create(model="mute", messages=user(), logprobs=True,
                                       top_logprobs=5).choices[0].logprobs is None
    with pytest.raises(openai.BadRequestError, match="top_logprobs requires logprobs"):
        oai.chat.completions.create(model="listed", messages=user(), top_logprobs=2)
    with pytest.raises(openai.BadRequestError, match="top_logprobs must be"):
        oai.chat.completions.create(model="listed", messages=user(), logprobs=True,
                                    top_logprobs=21)


def test_stop_ends_the_answer_and_says_why(oai: openai.OpenAI) -> None:
    cut = oai.chat.completions.create(model="listed", messages=user(), stop=["\n\n"])
    assert cut.choices[0].message.content == "Routing sends each request"
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].model_extra["stop_reason"] == "\n\n"  # vLLM's field
    whole = oai.chat.completions.create(model="plain", messages=user(), stop="never said")
    assert whole.choices[0].message.content == oai.chat.completions.create(
        model="plain", messages=user()).choices[0].message.content
    assert whole.choices[0].model_extra["stop_reason"] is None  # ended by itself
    assert "stop_reason" not in (oai.chat.completions.create(
        model="plain", messages=user()).choices[0].model_extra or {})


def test_a_continued_step_starts_with_that_steps_entropy(oai: openai.OpenAI) -> None:
    first_two = "Routing sends each request\n\nto the model that\n\n"
    answer = oai.chat.completions.create(
        model="listed", messages=[*user(), {"role": "assistant", "content": first_two}],
        logprobs=True, top_logprobs=5, stop=["\n\n"],
        extra_body={"continue_final_message": True, "add_generation_prompt": False})
    choice = answer.choices[0]
    assert choice.message.content == "fits it best. A"
    assert choice.model_extra["stop_reason"] is None  # the last step: the answer is complete
    assert choice.logprobs is not None and choice.logprobs.content is not None
    assert entropy(choice.logprobs.content[0].top_logprobs) == pytest.approx(STEPS[2])
    # Given back whole (and a blank line), the answer has nothing more to say.
    done = oai.chat.completions.create(
        model="listed", messages=[*user(), {"role": "assistant",
                                            "content": stepped_text(N, STEP) + "\n\n"}],
        extra_body={"continue_final_message": True, "add_generation_prompt": False})
    assert done.choices[0].message.content == ""


def test_a_drawn_profile_is_the_same_for_a_prompt_and_differs_across_prompts(
        oai: openai.OpenAI) -> None:
    def starts(prompt: str) -> list[float]:
        tokens = oai.chat.completions.create(model="drawn", messages=user(prompt),
                                             logprobs=True, top_logprobs=5
                                             ).choices[0].logprobs.content  # type: ignore[union-attr]
        return [entropy(t.top_logprobs) for i, t in enumerate(tokens) if i % STEP == 0]

    assert starts("a") == pytest.approx(starts("a"))
    assert starts("a") != pytest.approx(starts("b"))
    profile = StepEntropy.parse(GENERATOR)
    assert starts("a") == pytest.approx([profile.of_step(i, "a") for i in range(3)])
    # The mixture: about hard_share of the steps are hard.
    drawn = [profile.of_step(step, f"prompt {i}") for i in range(400) for step in range(3)]
    hard = sum(value > 0.8 for value in drawn) / len(drawn)
    assert hard == pytest.approx(0.5, abs=0.05)
    assert all(0.1 <= v <= 0.3 or 1.3 <= v <= 1.5 for v in drawn)


def test_profiles_take_and_show_the_entropy_settings(sim: SimulatorProcess) -> None:
    shown = httpx.get(sim.url + "/_sim/profiles/listed").json()
    assert shown["step_entropy"] == STEPS and shown["step_tokens"] == STEP
    assert shown["logprobs"] is True
    for bad, message in (([], "at least one"), ([-1], "step_entropy\\[0\\]"),
                         ({"mean": 1, "typo": 2}, "unknown key"), ("high", "must be a list")):
        reply = httpx.put(sim.url + "/_sim/profiles/scratch", json={"step_entropy": bad})
        assert reply.status_code == 400
        assert re.search(message, reply.json()["error"]["message"])
    reply = httpx.put(sim.url + "/_sim/profiles/scratch", json={"step_entropy": GENERATOR,
                                                               "step_tokens": 3})
    assert reply.status_code == 200 and reply.json()["step_entropy"] == GENERATOR
