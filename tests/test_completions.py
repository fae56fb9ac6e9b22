"""POST /v1/completions end to end: the openai SDK's legacy completions against `routeyard
serve` and the simulator. One chat call per prompt, streaming and not, echo, the decision
headers, and what chat cannot express refused with clean 400s in OpenAI's schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import yaml
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator

SIM_OUTPUT_TOKENS = 30  # above the default max_tokens of 16


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    path = tmp_path_factory.mktemp("sim") / "sim.yaml"
    path.write_text(yaml.safe_dump({
        "default": {"output_tokens_mean": SIM_OUTPUT_TOKENS},
        "models": {"m1": {}, "m2": {}, "cutter": {"disconnect_rate": 1.0, "tpot_ms": 1},
                   "down": {"error_5xx_rate": 1.0}, "embed-x": {}}}))
    with start_simulator("--config", str(path)) as process:
        yield process


@pytest.fixture(scope="module")
def gateway(sim: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RouterProcess]:
    def model(name: str, upstream: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "endpoints": [{"base_url": sim.base_url, "upstream_model": upstream}],
                "pricing": {"input_per_mtok": 1, "output_per_mtok": 2}, **extra}

    config = {
        "models": [model("small", "m1"), model("large", "m2"), model("cutter", "cutter"),
                   model("down", "down"), model("vec", "embed-x", kind="embedding")],
        "decisions": [{"name": "hard", "when": {"keywords_any": ["prove"]},
                       "candidates": ["large"]}],
        "default": {"name": "everyday", "candidates": ["small"]},
        "pool": {"health_check": {"interval_s": 0}, "retry": {"max_retries": 0}},
    }
    with start_router(config, tmp_path_factory.mktemp("router")) as process:
        yield process


@pytest.fixture
def client(gateway: RouterProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key="k", max_retries=0)


def test_one_prompt(client: openai.OpenAI) -> None:
    raw = client.completions.with_raw_response.create(model="auto", prompt="hello", max_tokens=5)
    assert raw.headers["x-routeyard-model"] == "small"
    assert raw.headers["x-routeyard-decision"] == "everyday"
    completion = raw.parse()
    assert completion.object == "text_completion"
    assert completion.id == f"cmpl-{raw.headers['x-routeyard-request-id']}"
    [choice] = completion.choices
    assert choice.index == 0 and choice.text.strip() and choice.logprobs is None
    assert choice.finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 5
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 5


def test_max_tokens_defaults_to_16_as_on_openai(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="small", prompt="tell me everything")
    assert completion.usage is not None and completion.usage.completion_tokens == 16
    assert completion.choices[0].finish_reason == "length"
    longer = client.completions.create(model="small", prompt="more", max_tokens=100)
    assert longer.usage is not None and longer.usage.completion_tokens == SIM_OUTPUT_TOKENS
    assert longer.choices[0].finish_reason == "stop"


def test_a_list_of_prompts_is_one_call_each(client: openai.OpenAI) -> None:
    prompts = ["hello", "please prove it", "hi there"]
    raw = client.completions.with_raw_response.create(model="auto", prompt=prompts, max_tokens=4)
    assert raw.headers["x-routeyard-decision"] == "everyday,hard,everyday"
    assert raw.headers["x-routeyard-model"] == "small,large,small"
    assert len(raw.headers["x-routeyard-request-id"].split(",")) == 3
    completion = raw.parse()
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert all(c.text.strip() for c in completion.choices)
    assert completion.usage is not None and completion.usage.completion_tokens == 12
    # With n, prompt i's choice j is i * n + j (the simulator answers one choice each).
    several = client.completions.create(model="auto", prompt=["a", "b"], n=2, max_tokens=2)
    assert [c.index for c in several.choices] == [0, 2]


def test_echo_prefixes_the_prompt(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="small", prompt=["Once", "Twice"], echo=True,
                                           max_tokens=3)
    # The prompt, then the completion right after it, as OpenAI echoes.
    once, twice = (c.text for c in completion.choices)
    assert once.startswith("Once") and twice.startswith("Twice")
    assert once[len("Once"):] == twice[len("Twice"):] != ""  # the same filler answer
    chunks = list(client.completions.create(model="small", prompt="Once upon", echo=True,
                                            max_tokens=3, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices).startswith("Once upon")


def test_streaming(client: openai.OpenAI, gateway: RouterProcess) -> None:
    chunks = list(client.completions.create(model="auto", prompt="hello", max_tokens=6,
                                            stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "text_completion" for c in chunks)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert len(text.split()) == 6
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length" and set(finishes[:-1]) == {None}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("cmpl-req_")
    with httpx.stream("POST", f"{gateway.base_url}/completions", json={
            "model": "auto", "prompt": "prove it", "stream": True, "max_tokens": 2}) as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        assert reply.headers["x-routeyard-model"] == "large"
        frames = [line for line in reply.iter_lines() if line]
    assert frames[-1] == "data: [DONE]"


def test_a_broken_stream_ends_with_an_error(client: openai.OpenAI) -> None:
    stream = client.completions.create(model="cutter", prompt="hello", stream=True,
                                       max_tokens=20)
    with pytest.raises(openai.APIError, match="stream broke"):
        for _ in stream:
            pass


def test_upstream_failures_carry_the_decision_headers(gateway: RouterProcess) -> None:
    for prompt, decisions in (("x", "direct"), (["x", "y"], "direct,direct")):
        reply = httpx.post(f"{gateway.base_url}/completions",
                           json={"model": "down", "prompt": prompt})
        assert reply.status_code == 502, reply.text
        assert reply.json()["error"]["code"] == "upstream_failed"
        assert reply.headers["x-routeyard-decision"] == decisions


@pytest.mark.parametrize(("fields", "param", "code"), [
    ({"suffix": "def f():"}, "suffix", "unsupported_parameter"),
    ({"logprobs": 2}, "logprobs", "unsupported_parameter"),
    ({"best_of": 3}, "best_of", "unsupported_parameter"),
    ({"prompt": [1, 2, 3]}, "prompt", "unsupported_parameter"),
    ({"prompt": [[1, 2], [3]]}, "prompt", "unsupported_parameter"),
    ({"prompt": None}, "prompt", "invalid_request"),
    ({"prompt": 5}, "prompt", "invalid_request"),
    ({"prompt": []}, "prompt", "invalid_request"),
    ({"prompt": ["a", 1]}, "prompt", "invalid_request"),
    ({"prompt": ["a"] * 129}, "prompt", "invalid_request"),
    ({"temperature": "hot"}, "temperature", "invalid_request"),
    ({"max_tokens": 0}, "max_tokens", "invalid_request"),
    ({"echo": "yes"}, "echo", "invalid_request"),
    ({"model": 7}, "model", "invalid_request"),
    ({"prompt": ["a", "b"], "stream": True}, "stream", "invalid_request"),
])
def test_bad_input_is_a_400_naming_the_field(gateway: RouterProcess, fields: dict[str, Any],
                                             param: str, code: str) -> None:
    reply = httpx.post(f"{gateway.base_url}/completions",
                       json={"model": "auto", "prompt": "hi", **fields})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param,
                                                              code)
    assert "x-routeyard-request-id" not in reply.headers


def test_best_of_equal_to_n_is_accepted(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="auto", prompt="hi", best_of=1, max_tokens=2)
    assert completion.choices[0].text


def test_models_and_malformed_bodies(client: openai.OpenAI, gateway: RouterProcess) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.completions.create(model="no-such-model", prompt="hi")
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as wrong_kind:
        client.completions.create(model="vec", prompt="hi")
    assert wrong_kind.value.code == "model_not_supported"
    deep = b'{"model": "auto", "prompt": "hi", "metadata": ' + b"[" * 200 + b"]" * 200 + b"}"
    for raw, code in ((b"{nope", "invalid_request"), (b'"text"', "invalid_request"),
                      (deep, "json_too_deep")):
        reply = httpx.post(f"{gateway.base_url}/completions", content=raw,
                           headers={"content-type": "application/json"})
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["code"] == code


def test_models_list_the_surfaces(gateway: RouterProcess) -> None:
    listing = {m["id"]: m["routeyard"] for m in
               httpx.get(f"{gateway.base_url}/models").json()["data"]}
    assert listing["auto"]["surfaces"] == ["chat.completions", "messages", "responses",
                                           "completions", "embeddings"]
    assert listing["small"]["model_kind"] == "chat" and "completions" in \
        listing["small"]["surfaces"]
    assert (listing["vec"]["model_kind"], listing["vec"]["surfaces"]) == ("embedding",
                                                                          ["embeddings"])

