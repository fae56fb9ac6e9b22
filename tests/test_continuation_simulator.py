"""The simulator continues a partial answer: vLLM's `continue_final_message` on its OpenAI
surface, an assistant prefill on its Anthropic one; filler and recorded answers alike, through
the real SDKs against a real simulator process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from simproc import SimulatorProcess, start_simulator

from routeyard.simulator.text import filler_text

N = 12  # every answer's length in tokens (sd 0)
FULL = filler_text(N)
RECORDED = "Paris is the capital of France, and has been for centuries."
PROMPT = "What is the capital of France?"
CONTINUE = {"continue_final_message": True, "add_generation_prompt": False}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    dataset = tmp_path_factory.mktemp("replay") / "rows.jsonl"
    dataset.write_text(json.dumps({"prompt": PROMPT, "responses": {"rec": RECORDED}}) + "\n")
    with start_simulator("--model", "m", "--output-tokens", str(N), "--replay", str(dataset)
                         ) as process:
        yield process


@pytest.fixture
def oai(sim: SimulatorProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.base_url, api_key="k", max_retries=0)


@pytest.fixture
def claude(sim: SimulatorProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=sim.url, api_key="k", max_retries=0)


def with_prefix(prefix: str, user: str = "hello") -> list[dict[str, Any]]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": prefix}]


def streamed_text(oai: openai.OpenAI, **request: Any) -> tuple[str, list[Any]]:
    chunks = list(oai.chat.completions.create(stream=True, **request))
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks


@pytest.mark.parametrize("cut", [0, 1, 5, 11])
def test_continue_final_message_continues_the_filler_where_it_stopped(
        oai: openai.OpenAI, cut: int) -> None:
    prefix = filler_text(cut)
    answer = oai.chat.completions.create(model="m", messages=with_prefix(prefix),
                                         extra_body=CONTINUE)
    assert prefix + (answer.choices[0].message.content or "") == FULL
    assert answer.usage is not None and answer.usage.completion_tokens == N - cut
    text, chunks = streamed_text(oai, model="m", messages=with_prefix(prefix),
                                 extra_body=CONTINUE)
    assert prefix + text == FULL
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_a_prefix_ending_mid_word_gets_the_rest_of_the_word(oai: openai.OpenAI) -> None:
    prefix = FULL[: FULL.index(" request") + 4]  # "... each req"
    text, _ = streamed_text(oai, model="m", messages=with_prefix(prefix), extra_body=CONTINUE)
    assert text.startswith("uest ") and prefix + text == FULL


def test_a_complete_answer_gets_nothing_more(oai: openai.OpenAI) -> None:
    answer = oai.chat.completions.create(model="m", messages=with_prefix(FULL),
                                         extra_body=CONTINUE)
    assert answer.choices[0].message.content == ""
    assert answer.choices[0].finish_reason == "stop"


def test_a_prefix_that_is_not_the_answer_gets_the_whole_answer_after_it(
        oai: openai.OpenAI) -> None:
    answer = oai.chat.completions.create(model="m", messages=with_prefix("Well"),
                                         extra_body=CONTINUE)
    assert answer.choices[0].message.content == " " + FULL


def test_max_tokens_caps_the_continuation(oai: openai.OpenAI) -> None:
    prefix = filler_text(4)
    answer = oai.chat.completions.create(model="m", messages=with_prefix(prefix),
                                         max_tokens=3, extra_body=CONTINUE)
    assert prefix + (answer.choices[0].message.content or "") == filler_text(7)
    assert answer.choices[0].finish_reason == "length"


def test_without_the_flag_a_final_assistant_message_is_history(oai: openai.OpenAI) -> None:
    answer = oai.chat.completions.create(model="m", messages=with_prefix(filler_text(5)))
    assert answer.choices[0].message.content == FULL


@pytest.mark.parametrize(("extra", "messages", "says"), [
    ({"continue_final_message": True}, with_prefix("Routing"), "add_generation_prompt"),
    ({**CONTINUE, "add_generation_prompt": True}, with_prefix("Routing"),
     "add_generation_prompt"),
    (CONTINUE, [{"role": "user", "content": "hello"}], "final message"),
])
def test_continue_final_message_is_checked_as_vllm_checks_it(
        oai: openai.OpenAI, extra: dict[str, Any], messages: list[dict[str, Any]],
        says: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model="m", messages=messages, extra_body=extra)
    assert says in caught.value.message


def test_a_recorded_answer_is_continued_after_its_prefix(oai: openai.OpenAI) -> None:
    prefix = "Paris is the capital"
    text, _ = streamed_text(oai, model="rec", messages=with_prefix(prefix, PROMPT),
                            extra_body=CONTINUE)
    assert prefix + text == RECORDED
    other = oai.chat.completions.create(model="rec", messages=with_prefix("Lyon", PROMPT),
                                        extra_body=CONTINUE)
    assert other.choices[0].message.content == " " + RECORDED


def test_anthropic_prefill_continues_the_answer(claude: anthropic.Anthropic) -> None:
    prefix = filler_text(5)
    message = claude.messages.create(model="m", max_tokens=100, messages=with_prefix(prefix))
    assert prefix + message.content[0].text == FULL  # type: ignore[union-attr]
    assert message.usage.output_tokens == N - 5
    with claude.messages.stream(model="m", max_tokens=100, messages=with_prefix(prefix)
                                ) as stream:
        streamed = "".join(stream.text_stream)
    assert prefix + streamed == FULL
    blocks = [{"type": "text", "text": "Paris is"}, {"type": "text", "text": " the capital"}]
    recorded = claude.messages.create(model="rec", max_tokens=100, messages=[
        {"role": "user", "content": PROMPT}, {"role": "assistant", "content": blocks}])
    assert "Paris is the capital" + recorded.content[0].text == RECORDED  # type: ignore[union-attr]


def test_anthropic_refuses_a_prefill_ending_in_whitespace(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(model="m", max_tokens=100,
                               messages=with_prefix(filler_text(3) + " "))
    assert "trailing whitespace" in caught.value.message
