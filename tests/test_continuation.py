"""Streams that survive a dying backend, through the openai SDK: `routeyard serve` over two
simulator processes, one of which breaks off mid-stream (a `disconnect_rate`, or SIGKILL under
load). Every stream that has an alternative able to continue it reaches the client whole, as
one stream; the decision log records the failover, and usage and cost count both calls."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from continuation_setup import (
    CUT,
    FULL,
    PARTIAL,
    SIM_ARGS,
    TOKENS,
    decision_records,
    endpoint,
    model,
    openai_client,
    router_config,
)
from openai.types.chat import ChatCompletionChunk
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator

from routeyard.simulator.text import estimate_prompt_tokens
from routeyard.tokens import count_prompt_tokens, count_text_tokens

CFM = "continue_final_message"


@pytest.fixture(scope="module")
def sims() -> Iterator[tuple[SimulatorProcess, SimulatorProcess]]:
    with start_simulator(*SIM_ARGS) as a, start_simulator(*SIM_ARGS) as b:
        yield a, b


@pytest.fixture(autouse=True)
def healthy(sims: tuple[SimulatorProcess, SimulatorProcess]) -> None:
    for sim in sims:
        sim.set_profile("sim", disconnect_rate=0.0, omit_usage=False)
        sim.reset()


@pytest.fixture(scope="module")
def gateway(sims: tuple[SimulatorProcess, SimulatorProcess],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    a, b = sims
    config = router_config([
        model("primary", endpoint(a.base_url, "a"), continuation=CFM),
        model("backup", endpoint(b.base_url, "b"), continuation=CFM),
        # The same model on both backends, A much preferred.
        model("dual", endpoint(a.base_url, "dual-a", weight=1000),
              endpoint(b.base_url, "dual-b"), continuation=CFM),
        model("stuck", endpoint(a.base_url, "stuck-a"), continuation=CFM),
        model("nocont", endpoint(b.base_url, "nocont-b"), continuation="none"),
        model("default-openai", endpoint(b.base_url, "plain-b"), continuation=None),
        # Refused unless the request's header edits reach it (see the `edited` decision).
        model("guarded", endpoint(b.base_url, "guarded-b", headers={"x-sim-fault": "503"}),
              continuation=CFM),
    ], candidates=["primary"], fallback=["backup"])
    config["decisions"] = [
        {"name": "same-model", "when": {"keywords_any": ["dual"]}, "candidates": ["dual"],
         "fallback": ["backup"]},
        {"name": "dead-end", "when": {"keywords_any": ["stuck"]}, "candidates": ["stuck"],
         "fallback": ["nocont", "default-openai"]},
        {"name": "edited", "when": {"keywords_any": ["edited"]}, "candidates": ["stuck"],
         "fallback": ["guarded"],
         "plugins": [{"type": "headers", "upstream_remove": ["x-sim-fault"]}]},
        {"name": "unedited", "when": {"keywords_any": ["unedited"]}, "candidates": ["stuck"],
         "fallback": ["guarded"]},
    ]
    with start_router(config, tmp_path_factory.mktemp("continuation")) as process:
        yield process


@pytest.fixture
def client(gateway: RouterProcess) -> openai.OpenAI:
    return openai_client(gateway)


def ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


@dataclass
class Streamed:
    request_id: str
    messages: list[dict[str, Any]]
    chunks: list[ChatCompletionChunk]

    @property
    def text(self) -> str:
        return "".join(c.choices[0].delta.content or "" for c in self.chunks if c.choices)

    @property
    def continued(self) -> list[dict[str, Any]] | None:
        """The trailer on the chunk that finished the answer, if the stream was continued."""
        for c in self.chunks:
            extra = c.model_extra or {}
            if c.choices and c.choices[0].finish_reason and "routeyard" in extra:
                return extra["routeyard"]["continued"]
        return None


def stream(client: openai.OpenAI, text: str) -> Streamed:
    messages = ask(text)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=messages, stream=True, stream_options={"include_usage": True})
    return Streamed(raw.headers["x-routeyard-request-id"], messages, list(raw.parse()))


def assert_one_clean_stream(result: Streamed) -> None:
    """Whole, and one stream: one id, one role chunk, one finish, the usage chunk last."""
    chunks = result.chunks
    assert result.text == FULL
    assert len({c.id for c in chunks}) == 1
    assert [c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role
            ] == ["assistant"]
    assert [c.choices[0].finish_reason for c in chunks
            if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


def test_fifty_streams_survive_a_backend_that_breaks_mid_stream(
        sims: tuple[SimulatorProcess, SimulatorProcess], gateway: RouterProcess,
        client: openai.OpenAI) -> None:
    a, b = sims
    a.set_profile("sim", disconnect_rate=0.5)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: stream(client, f"tell me about routing, #{i}"),
                                range(50)))  # any failure would raise here
    for result in results:
        assert_one_clean_stream(result)
    continued = [r for r in results if r.continued]
    whole = [r for r in results if not r.continued]
    cuts = a.stats()["outcomes"]["sim"]
    assert len(continued) == cuts["disconnect"] and len(whole) == cuts["ok"]
    assert len(continued) >= 10 and len(whole) >= 10  # both kinds, so the test means something
    assert b.stats()["requests"]["sim"] == len(continued)  # B only ever continued

    records = decision_records(gateway, [r.request_id for r in results])
    for result in whole:
        record = records[result.request_id]
        assert (record["model"], record["status"]) == ("primary", "ok")
        assert "continued" not in record["detail"]
    for result in continued:
        record = records[result.request_id]
        assert (record["model"], record["endpoint"], record["status"]) == ("primary", "a", "ok")
        hop = record["detail"]["continued"]
        assert hop == result.continued  # the trailer says what the log says
        assert [{k: v for k, v in h.items() if k != "ttft_ms"} for h in hop] == [
            {"from": "primary", "endpoint": "a", "to": "backup", "to_endpoint": "b",
             "after_chars": len(PARTIAL), "error": "disconnect"}]
        assert 0 <= hop[0]["ttft_ms"] < 5000
        # Usage sums both calls: the broken one as counted, the continuation as reported.
        first_prompt = count_prompt_tokens(result.messages)
        first_said = count_text_tokens(PARTIAL)
        second_prompt, _ = estimate_prompt_tokens(
            [*result.messages, {"role": "assistant", "content": PARTIAL}])
        second_said = TOKENS - CUT
        usage = result.chunks[-1].usage
        assert usage is not None
        assert (usage.prompt_tokens, usage.completion_tokens) == (
            first_prompt + second_prompt, first_said + second_said)
        assert (record["prompt_tokens"], record["completion_tokens"]) == (
            usage.prompt_tokens, usage.completion_tokens)
        # Cost: each call at its own model's price (primary 1/2, backup 10/20 per Mtok).
        expected = (first_prompt * 1 + first_said * 2 + second_prompt * 10
                    + second_said * 20) / 1e6
        assert record["cost_usd"] == pytest.approx(expected)
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert f'routeyard_errors_total{{kind="stream_continued"}} {float(len(continued))}' \
        in metrics


def test_a_continuation_without_usage_is_counted_and_summed(
        sims: tuple[SimulatorProcess, SimulatorProcess], gateway: RouterProcess,
        client: openai.OpenAI) -> None:
    """The backend that continued reports no usage: the client still gets the usage chunk it
    asked for, the sum of both calls as Routeyard counts them, and so does the log."""
    a, b = sims
    a.set_profile("sim", disconnect_rate=1.0)
    b.set_profile("sim", omit_usage=True)
    result = stream(client, "count it yourself")
    assert_one_clean_stream(result)
    prompt = count_prompt_tokens(result.messages)
    first_said = count_text_tokens(PARTIAL)
    rest_said = count_text_tokens(FULL[len(PARTIAL):])
    usage = result.chunks[-1].usage
    assert usage is not None
    # The second call was sent the prompt and what the first had said.
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        prompt + prompt + first_said, first_said + rest_said)
    record = decision_records(gateway, [result.request_id])[result.request_id]
    assert (record["prompt_tokens"], record["completion_tokens"]) == (
        usage.prompt_tokens, usage.completion_tokens)
    assert record["cost_usd"] == pytest.approx(
        (prompt + first_said * 2 + (prompt + first_said) * 10 + rest_said * 20) / 1e6)


def test_the_same_model_on_another_endpoint_continues_first(
        sims: tuple[SimulatorProcess, SimulatorProcess], gateway: RouterProcess,
        client: openai.OpenAI) -> None:
    a, _ = sims
    a.set_profile("sim", disconnect_rate=1.0)
    result = stream(client, "the dual one, please")
    assert_one_clean_stream(result)
    assert result.continued is not None
    assert [(h["from"], h["endpoint"], h["to"], h["to_endpoint"]) for h in result.continued
            ] == [("dual", "dual-a", "dual", "dual-b")]


def test_a_raw_sse_client_sees_data_lines_and_a_trailer_comment(
        sims: tuple[SimulatorProcess, SimulatorProcess], gateway: RouterProcess) -> None:
    a, _ = sims
    a.set_profile("sim", disconnect_rate=1.0)
    body = {"model": "auto", "stream": True, "messages": ask("raw bytes")}
    text = httpx.post(f"{gateway.base_url}/chat/completions", json=body, timeout=30).text
    frames = [frame for frame in text.split("\n\n") if frame]
    assert frames[-1] == "data: [DONE]"
    assert frames[-2] == (": routeyard continued primary (a) -> backup (b) after "
                          f"{len(PARTIAL)} chars: disconnect")
    chunks = [json.loads(frame.removeprefix("data: ")) for frame in frames[:-2]]
    assert all(frame.startswith("data: ") for frame in frames[:-2])  # no `event:` lines
    assert all("error" not in chunk for chunk in chunks)  # no error event either
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == FULL


def test_where_no_alternative_can_continue_the_sdk_raises(
        sims: tuple[SimulatorProcess, SimulatorProcess], gateway: RouterProcess,
        client: openai.OpenAI) -> None:
    """The fallbacks cannot continue (`none`, and an OpenAI endpoint by default): the stream
    ends with the error event, as before this feature, and is never silently cut short."""
    a, b = sims
    a.set_profile("sim", disconnect_rate=1.0)
    received: list[str] = []
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=ask("stuck here"), stream=True)
    with pytest.raises(openai.APIError) as caught:
        for chunk in raw.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert "".join(received) == PARTIAL
    assert "stream broke" in str(caught.value)
    assert b.stats()["requests"].get("sim", 0) == 0
    record = decision_records(gateway, [raw.headers["x-routeyard-request-id"]])
    assert next(iter(record.values()))["status"] == "stream_broken"


def test_the_continuation_is_sent_with_the_requests_header_edits(
        sims: tuple[SimulatorProcess, SimulatorProcess], client: openai.OpenAI) -> None:
    """The continuation is opened while the response streams, after the plugin chain has
    returned: it still gets the decision's upstream header edits (here: removing the endpoint
    header that makes the simulator refuse), as the first call did."""
    a, b = sims
    a.set_profile("sim", disconnect_rate=1.0)
    result = stream(client, "edited, please")
    assert_one_clean_stream(result)
    assert result.continued is not None and result.continued[0]["to"] == "guarded"
    assert b.stats()["outcomes"]["sim"]["5xx"] == 0
    with pytest.raises(openai.APIError):  # without the edit, that endpoint refuses
        stream(client, "unedited, please")
    assert b.stats()["outcomes"]["sim"]["5xx"] == 1


def test_streams_survive_sigkill_of_their_backend_mid_load(tmp_path: Path) -> None:
    """SIGKILL the backend with streams in flight: those it was streaming are continued on the
    other one, the ones after fail over before their first byte; none fails."""
    slow = ("--model", "sim", "--output-tokens", "40", "--tpot-ms", "5")
    with start_simulator(*slow) as a, start_simulator(*slow) as b:
        config = router_config([model("primary", endpoint(a.base_url, "a"), continuation=CFM),
                                model("backup", endpoint(b.base_url, "b"), continuation=CFM)],
                               candidates=["primary"], fallback=["backup"])
        with start_router(config, tmp_path) as gateway:
            client = openai_client(gateway)

            def kill_mid_load() -> None:
                # Once a few streams have reached A (each streams for ~0.2 s), not after a
                # fixed delay, which a busy machine can make too early or too late.
                deadline = time.monotonic() + 30
                while a.stats()["requests"].get("sim", 0) < 4 and time.monotonic() < deadline:
                    time.sleep(0.005)
                time.sleep(0.02)
                a.kill()

            killer = threading.Thread(target=kill_mid_load)

            def one(i: int) -> Streamed:
                time.sleep(0.01 * (i % 12))
                return stream(client, f"under load #{i}")

            killer.start()
            with ThreadPoolExecutor(12) as pool:
                results = list(pool.map(one, range(36)))
            killer.join()
    assert a.process.poll() is not None  # it was killed mid-load
    for result in results:
        assert_one_clean_stream(result)
    continued = [r for r in results if r.continued]
    assert continued, "some streams were on the backend when it died"
    assert all(r.continued[0]["to"] == "backup" for r in continued if r.continued)
