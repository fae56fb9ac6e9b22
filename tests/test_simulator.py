"""The backend simulator, exercised as a real process through real clients."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from simproc import SimulatorProcess, sse_events, start_simulator
from starlette.applications import Starlette
from starlette.routing import Mount

from routeyard.simulator import LatencyModel, ModelProfile, SimulatorConfig, build_simulator_app
from routeyard.simulator import demo_config as make_demo_config
from routeyard.simulator.command import config_from_args, configure_parser
from routeyard.simulator.engine import SimulatorEngine
from routeyard.simulator.replay import ReplayIndex

ROUTERBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "routerbench"
USER = [{"role": "user", "content": "Say something, please."}]
CONFIG = {
    "seed": 7,
    "default": {"output_tokens_mean": 12},
    "models": {
        "fast": {"output_tokens_mean": 20},
        "slow": {"ttft_ms": 300, "tpot_ms": 20, "output_tokens_mean": 10},
        "flaky": {},
        "nousage": {"omit_usage": True},
        "limited": {"error_429_rate": 1.0, "retry_after_s": 7},
        "hangs": {"hang_rate": 1.0, "hang_s": 0.3},
        "cuts": {"disconnect_rate": 1.0, "output_tokens_mean": 10},
        "drops": {"disconnect_before_first_byte_rate": 1.0},
    },
}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    path = tmp_path_factory.mktemp("sim") / "profiles.json"
    path.write_text(json.dumps(CONFIG))
    with start_simulator("--config", str(path)) as process:
        yield process


@pytest.fixture
def client(sim: SimulatorProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.base_url, api_key="unused", max_retries=0)


def chat(client: openai.OpenAI, model: str = "fast", fault: str = "", **kw: Any) -> Any:
    headers = {"x-sim-fault": fault} if fault else {}
    return client.chat.completions.create(model=model, messages=USER, extra_headers=headers, **kw)


def post(sim: SimulatorProcess, path: str, body: Any, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(sim.url + path, content=content, headers=headers, timeout=10)


# OpenAI surface


def test_chat_completion(client: openai.OpenAI) -> None:
    assert set(CONFIG["models"]) <= {m.id for m in client.models.list()}
    reply = chat(client)
    assert reply.object == "chat.completion" and reply.model == "fast"
    choice, usage = reply.choices[0], reply.usage
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert len(choice.message.content.split()) == 20
    assert usage.completion_tokens == 20 and usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


@pytest.mark.parametrize("cap", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_caps_output(client: openai.OpenAI, cap: str) -> None:
    reply = chat(client, **{cap: 5})
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 5
    assert len(reply.choices[0].message.content.split()) == 5


def test_stream_with_usage(client: openai.OpenAI) -> None:
    chunks = list(chat(client, stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks[1:-2]]
    assert len(pieces) == 20 and all(pieces)
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 20
    assert "".join(pieces) == chat(client).choices[0].message.content


async def test_async_client(sim: SimulatorProcess) -> None:
    client = openai.AsyncOpenAI(base_url=sim.base_url, api_key="unused", max_retries=0)
    create = client.chat.completions.create
    replies = await asyncio.gather(*(create(model="fast", messages=USER) for _ in range(8)))
    assert all(r.usage.completion_tokens == 20 for r in replies)
    chunks = [c async for c in await create(model="fast", messages=USER, stream=True, max_tokens=3)]
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.usage is None for c in chunks)  # no include_usage, no usage chunk
    await client.close()


def test_latency_profile(client: openai.OpenAI) -> None:
    start, ttft = time.perf_counter(), None
    for chunk in chat(client, "slow", stream=True):
        if ttft is None and chunk.choices and chunk.choices[0].delta.content:
            ttft = time.perf_counter() - start
    total = time.perf_counter() - start
    assert ttft is not None and 0.28 <= ttft < 1.0
    assert total >= 0.3 + 9 * 0.02 - 0.02  # ttft, then 9 more tokens 20 ms apart
    start = time.perf_counter()
    chat(client, "slow")
    assert 0.46 <= time.perf_counter() - start < 1.5  # non-streaming waits for the last token
    start = time.perf_counter()
    chat(client, "fast")
    assert time.perf_counter() - start < 0.2


def test_omit_usage(sim: SimulatorProcess, client: openai.OpenAI) -> None:
    assert chat(client, "nousage").usage is None
    chunks = list(chat(client, "nousage", stream=True, stream_options={"include_usage": True}))
    assert all(c.usage is None for c in chunks) and chunks[-1].choices
    body = {"model": "nousage", "max_tokens": 50, "messages": USER}
    assert "usage" not in post(sim, "/v1/messages", body).json()


# Bad input


def test_malformed_json(sim: SimulatorProcess) -> None:
    reply = post(sim, "/v1/chat/completions", b'{"model": "fast", ')
    assert reply.status_code == 400
    assert set(reply.json()["error"]) == {"message", "type", "param", "code"}
    reply = post(sim, "/v1/messages", b"[1, 2")
    assert reply.status_code == 400 and reply.json()["type"] == "error"
    assert reply.json()["error"]["type"] == "invalid_request_error"


def test_unknown_model(sim: SimulatorProcess, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        chat(client, "no-such-model")
    assert caught.value.status_code == 404 and caught.value.body["code"] == "model_not_found"
    reply = post(sim, "/v1/messages", {"model": "nope", "max_tokens": 5, "messages": USER})
    assert reply.status_code == 404 and reply.json()["error"]["type"] == "not_found_error"


def test_invalid_requests(sim: SimulatorProcess) -> None:
    body = {"model": "fast", "messages": USER}
    assert post(sim, "/v1/chat/completions", {"model": "fast"}).status_code == 400
    assert post(sim, "/v1/chat/completions", {**body, "max_tokens": 0}).status_code == 400
    assert post(sim, "/v1/chat/completions", body, **{"x-sim-fault": "boom"}).status_code == 400
    assert httpx.get(sim.url + "/v1/chat/completions").status_code == 405
    assert httpx.get(sim.url + "/nowhere").status_code == 404
    reply = post(sim, "/v1/messages", body)  # Anthropic requires max_tokens
    assert reply.status_code == 400
    error = {"type": "invalid_request_error", "message": "max_tokens: Field required"}
    assert reply.json() == {"type": "error", "error": error}


# Anthropic Messages surface


def test_anthropic_message(sim: SimulatorProcess) -> None:
    body = {"model": "fast", "max_tokens": 100, "system": "Be brief.", "messages": USER}
    reply = post(sim, "/v1/messages", body).json()
    assert reply["type"] == "message" and reply["role"] == "assistant"
    assert reply["stop_reason"] == "end_turn" and reply["stop_sequence"] is None
    assert reply["content"][0]["type"] == "text"
    assert len(reply["content"][0]["text"].split()) == 20
    assert reply["usage"]["output_tokens"] == 20 and reply["usage"]["input_tokens"] > 0
    capped = post(sim, "/v1/messages", {**body, "max_tokens": 4}).json()
    assert capped["stop_reason"] == "max_tokens" and capped["usage"]["output_tokens"] == 4


def test_anthropic_stream(sim: SimulatorProcess) -> None:
    body = {"model": "fast", "max_tokens": 100, "messages": USER, "stream": True}
    reply = post(sim, "/v1/messages", body)
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = sse_events(reply.text)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[3:-3] == ["content_block_delta"] * 20
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert all(name == data["type"] for name, data in events)
    assert events[0][1]["message"]["usage"]["input_tokens"] > 0
    assert all(data["delta"]["type"] == "text_delta" for _, data in events[3:-3])
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
    assert events[-2][1]["usage"]["output_tokens"] == 20


# Faults


@pytest.mark.parametrize("status", [500, 503])
def test_fault_header_5xx(client: openai.OpenAI, status: int) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        chat(client, fault=str(status))
    assert caught.value.status_code == status


@pytest.mark.parametrize("status", [400, 422])
def test_fault_header_4xx(sim: SimulatorProcess, client: openai.OpenAI, status: int) -> None:
    before = sim.stats()["outcomes"]["flaky"]["4xx"]
    with pytest.raises(openai.APIStatusError) as caught:
        chat(client, "flaky", fault=str(status))
    assert caught.value.status_code == status
    error = caught.value.response.json()["error"]
    assert error["type"] == "invalid_request_error" and str(status) in error["message"]
    assert sim.stats()["outcomes"]["flaky"]["4xx"] == before + 1


def test_fault_429_with_retry_after(sim: SimulatorProcess, client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        chat(client, "limited")
    assert caught.value.response.headers["retry-after"] == "7"
    body = {"model": "fast", "messages": USER}
    reply = post(sim, "/v1/chat/completions", body, **{"x-sim-fault": "429"})
    assert reply.status_code == 429 and reply.headers["retry-after"] == "1"
    body = {"model": "limited", "max_tokens": 5, "messages": USER}
    assert post(sim, "/v1/messages", body).json()["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize("stream", [False, True])
def test_disconnect_before_first_byte(client: openai.OpenAI, stream: bool) -> None:
    for model, fault in (("drops", ""), ("fast", "disconnect_first")):
        with pytest.raises(openai.APIConnectionError) as caught:
            list(chat(client, model, fault, stream=True)) if stream else chat(client, model, fault)
        # No status line at all: the client never got a response. (The SDK wraps its own
        # httpx fork, so the cause is matched by name.)
        cause = caught.value.__cause__
        assert type(cause).__name__ == "RemoteProtocolError"
        assert "without sending a response" in str(cause)


def test_disconnect_mid_stream(sim: SimulatorProcess, client: openai.OpenAI) -> None:
    chunks: list[Any] = []
    with pytest.raises(openai.APIConnectionError):
        chunks.extend(chat(client, "cuts", stream=True))
    assert len(chunks) == 1 + 5  # role chunk, then half of the 10 tokens
    assert all(c.choices[0].finish_reason is None for c in chunks)
    lines: list[str] = []
    url, body = sim.base_url + "/chat/completions", {"model": "fast", "messages": USER}
    headers = {"x-sim-fault": "disconnect"}
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("POST", url, json={**body, "stream": True}, headers=headers) as reply,
    ):
        assert reply.status_code == 200
        lines.extend(reply.iter_lines())
    assert lines and "data: [DONE]" not in lines
    # Non-streaming: the connection drops before any response bytes.
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        httpx.post(url, json=body, headers=headers)


def test_hang_times_out_after_hang_s(sim: SimulatorProcess) -> None:
    start = time.perf_counter()
    reply = post(sim, "/v1/chat/completions", {"model": "hangs", "messages": USER})
    assert reply.status_code == 504 and 0.25 <= time.perf_counter() - start < 2


def test_hang_ends_when_client_leaves(sim: SimulatorProcess) -> None:
    sim.reset()
    body = {"model": "flaky", "messages": USER, "stream": True}
    url, headers = sim.base_url + "/chat/completions", {"x-sim-fault": "hang"}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, json=body, headers=headers, timeout=0.3)
    # The outcome is counted only when the handler returns: it must not sit out the 3600 s.
    deadline = time.monotonic() + 3
    while sim.stats()["outcomes"]["flaky"]["hang"] != 1:
        assert time.monotonic() < deadline, "the hang outlived its client"
        time.sleep(0.05)


# Run-time control


def test_profile_put_and_stats(sim: SimulatorProcess, client: openai.OpenAI) -> None:
    sim.reset()
    assert sim.set_profile("flaky", error_5xx_rate=1.0)["error_5xx_rate"] == 1.0
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            chat(client, "flaky")
    sim.set_profile("flaky", error_5xx_rate=0)
    chat(client, "flaky")
    stats = sim.stats()
    assert stats["requests"]["flaky"] == 4
    assert stats["outcomes"]["flaky"]["5xx"] == 3 and stats["outcomes"]["flaky"]["ok"] == 1
    sim.reset()
    stats = sim.stats()
    assert stats["requests"]["flaky"] == 0 and not any(stats["outcomes"]["flaky"].values())


def test_profile_put_validation(sim: SimulatorProcess) -> None:
    for bad in ({"error_5xx_rate": 2}, {"nonsense": 1}, {"ttft_ms": "slow"}, [1]):
        reply = httpx.put(sim.url + "/_sim/profiles/flaky", json=bad)
        assert reply.status_code == 400, bad
    profile = httpx.get(sim.url + "/_sim/profiles/flaky").json()
    assert profile["error_5xx_rate"] == 0 and profile["output_tokens_mean"] == 12


def test_killed_backend() -> None:
    with start_simulator("--model", "doomed") as doomed:
        assert httpx.get(doomed.base_url + "/models").status_code == 200
        doomed.kill()
        with pytest.raises(httpx.ConnectError):
            httpx.get(doomed.base_url + "/models")


# Replay mode


@pytest.fixture(scope="module")
def replay_sim() -> Iterator[SimulatorProcess]:
    if not ROUTERBENCH.is_dir():
        pytest.skip(f"routing dataset not found at {ROUTERBENCH}; replay tests need ../shared/data")
    with start_simulator("--replay", str(ROUTERBENCH), "--model", "extra") as process:
        yield process


def _recorded_row() -> dict[str, Any]:
    with (ROUTERBENCH / "test.jsonl").open() as handle:
        rows = (json.loads(line) for line in handle)
        wanted = ("gpt-4-1106-preview", "claude-v1", "claude-v2")
        return next(r for r in rows if all(len(r["responses"].get(m, "")) > 40 for m in wanted))


def test_replay_hit(replay_sim: SimulatorProcess) -> None:
    row = _recorded_row()
    client = openai.OpenAI(base_url=replay_sim.base_url, api_key="unused", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4-1106-preview",
        messages=[{"role": "system", "content": "x"}, {"role": "user", "content": row["prompt"]}],
    )
    assert raw.headers["x-sim-replay"] == "hit"
    assert raw.parse().choices[0].message.content == row["responses"]["gpt-4-1106-preview"]
    # Whitespace-normalised match, another model, streamed.
    messy = [{"role": "user", "content": "  " + row["prompt"].replace(" ", "   ") + "\n"}]
    chunks = client.chat.completions.create(model="claude-v2", messages=messy, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == row["responses"]["claude-v2"]
    # Anthropic surface, with content blocks.
    messages = [{"role": "user", "content": [{"type": "text", "text": row["prompt"]}]}]
    body = {"model": "claude-v1", "max_tokens": 9999, "messages": messages}
    reply = post(replay_sim, "/v1/messages", body)
    assert reply.headers["x-sim-replay"] == "hit"
    assert reply.json()["content"][0]["text"] == row["responses"]["claude-v1"]


def test_replay_miss(replay_sim: SimulatorProcess) -> None:
    models = {m["id"] for m in httpx.get(replay_sim.base_url + "/models").json()["data"]}
    assert {"gpt-4-1106-preview", "mistralai/mistral-7b-chat", "extra"} <= models
    reply = post(replay_sim, "/v1/chat/completions", {"model": "claude-v2", "messages": USER})
    assert reply.status_code == 200 and reply.headers["x-sim-replay"] == "miss"
    assert reply.json()["choices"][0]["message"]["content"]
    # A recorded prompt, but asked of a model without a recording.
    body = {"model": "extra", "messages": [{"role": "user", "content": _recorded_row()["prompt"]}]}
    assert post(replay_sim, "/v1/chat/completions", body).headers["x-sim-replay"] == "miss"


def test_replay_loads_the_whole_routing_dataset() -> None:
    # What it loads, not how fast: a time bound here would only measure the machine.
    if not ROUTERBENCH.is_dir():
        pytest.skip(f"routing dataset not found at {ROUTERBENCH}")
    index = ReplayIndex.load(ROUTERBENCH)
    assert len(index) > 3000 and len(index.models) == 11
    row = _recorded_row()
    answers = index.lookup(row["prompt"])
    assert answers is not None
    assert answers["claude-v2"] == row["responses"]["claude-v2"]


def test_replay_jsonl_file_and_yaml_config(tmp_path: Path) -> None:
    rows = [{"prompt": "What is 2+2?", "responses": {"m1": "4", "m2": "four"}}, {"prompt": "x"}]
    (tmp_path / "tiny.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    yaml_text = "seed: 1\nreplay: tiny.jsonl\ndefault: {ttft_ms: 5}\nmodels: {m3: {tpot_ms: 2}}\n"
    (tmp_path / "sim.yaml").write_text(yaml_text)
    config = SimulatorConfig.from_file(tmp_path / "sim.yaml")
    assert config.replay == str(tmp_path / "tiny.jsonl")  # relative to the config file
    assert config.models["m3"].latency.ttft_ms == 5 and config.models["m3"].latency.tpot_ms == 2
    index = ReplayIndex.load(config.replay)
    assert index.models == ["m1", "m2"] and len(index) == 1
    assert index.lookup(" What  is\n2+2? ") == {"m1": "4", "m2": "four"}
    assert index.lookup("What is 3+3?") is None
    assert SimulatorEngine(config, index).served == ["m1", "m2", "m3"]
    with pytest.raises(ValueError, match="unknown config keys"):
        SimulatorConfig.from_dict({"modles": {}})


# In-process use and configuration


async def test_mounted_under_prefix() -> None:
    app = Starlette(routes=[Mount("/simulator", app=build_simulator_app())])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://router") as http:
        body = {"model": "sim-small", "messages": USER, "max_tokens": 3}
        reply = await http.post("/simulator/v1/chat/completions", json=body)
        assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 3
        models = (await http.get("/simulator/v1/models")).json()["data"]
        assert [m["id"] for m in models] == ["sim-small", "sim-medium", "sim-large"]
    # The demo models are fault-free and ordered fast to slow, with ttft at most 300 ms.
    profiles = make_demo_config().models.values()
    ttfts = [p.latency.ttft_ms for p in profiles]
    assert ttfts == sorted(ttfts) and ttfts[-1] <= 300
    assert not any(any(p.fault_rates) for p in profiles)


def test_profiles_and_latency_model() -> None:
    profile = ModelProfile.from_dict({"ttft_ms": 50, "error_429_rate": 0.5})
    assert profile.latency.ttft_ms == 50 and profile.error_429_rate == 0.5
    assert profile.merged({"omit_usage": True}).to_dict()["omit_usage"] is True
    for bad in ({"hang_rate": -0.1}, {"output_tokens_min": 10, "output_tokens_max": 5}, {"x": 1}):
        with pytest.raises(ValueError):
            ModelProfile.from_dict(bad)
    latency = LatencyModel(100, 10, output_tokens_mean=50, output_tokens_sd=20,
                           output_tokens_min=5, output_tokens_max=60)  # fmt: skip
    assert latency.total_s(11) == pytest.approx(0.2)
    assert len({latency.sample_output_tokens(random.Random(3)) for _ in range(3)}) == 1
    many = [latency.sample_output_tokens(random.Random(i)) for i in range(200)]
    assert min(many) >= 5 and max(many) <= 60 and len(set(many)) > 10


def test_seeded_engine_is_deterministic() -> None:
    models = {"m": {"output_tokens_sd": 30, "error_5xx_rate": 0.3}}
    config = SimulatorConfig.from_dict({"seed": 3, "models": models})

    def run() -> list[tuple[str | None, int]]:
        engine = SimulatorEngine(config)
        state = engine.states["m"]
        plans = [engine.plan("m", state, 10, "", None, None) for _ in range(50)]
        return [(p.fault, p.completion_tokens) for p in plans]

    first = run()
    assert first == run()
    assert 5 < sum(fault == "503" for fault, _ in first) < 30


def test_cli_config() -> None:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = shlex.split("--model a --model b --ttft-ms 40 --output-tokens 9000 --seed 5")
    config = config_from_args(parser.parse_args(args))
    assert list(config.models) == ["a", "b"] and config.seed == 5
    assert config.models["a"].latency.ttft_ms == 40
    assert config.models["b"].latency.sample_output_tokens(random.Random()) == 9000
    assert list(config_from_args(parser.parse_args([])).models) == ["sim-model"]
    assert config_from_args(parser.parse_args(["--accept-any-model"])).accept_any_model
