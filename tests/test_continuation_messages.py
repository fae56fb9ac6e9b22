"""Streams that survive a dying backend, through the anthropic SDK (`/v1/messages`, whose events
are built from the relay's chunks) and the openai SDK's Responses API: 50 streams over two
simulator processes, one breaking off mid-stream, reach the client whole with no error event;
over Anthropic-protocol backends (assistant prefill, their default) and OpenAI-protocol ones
(`continue_final_message`)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import anthropic
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
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator

from routeyard.simulator.text import estimate_prompt_tokens
from routeyard.tokens import count_prompt_tokens, count_text_tokens

# backend protocol → the continuation its models are configured with (None: the default).
PROTOCOLS = {"anthropic": None, "openai": "continue_final_message"}


@pytest.fixture(scope="module")
def sims() -> Iterator[tuple[SimulatorProcess, SimulatorProcess]]:
    with start_simulator(*SIM_ARGS) as a, start_simulator(*SIM_ARGS) as b:
        yield a, b


@pytest.fixture(scope="module", params=list(PROTOCOLS))
def gateway(request: pytest.FixtureRequest, sims: tuple[SimulatorProcess, SimulatorProcess],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    a, b = sims
    protocol: str = request.param
    config = router_config([
        model("primary", endpoint(a.base_url, "a", provider=protocol),
              continuation=PROTOCOLS[protocol]),
        model("backup", endpoint(b.base_url, "b", provider=protocol),
              continuation=PROTOCOLS[protocol]),
    ], candidates=["primary"], fallback=["backup"])
    with start_router(config, tmp_path_factory.mktemp(f"messages-{protocol}")) as process:
        yield process


@pytest.fixture(autouse=True)
def one_breaks(sims: tuple[SimulatorProcess, SimulatorProcess]) -> None:
    a, b = sims
    a.set_profile("sim", disconnect_rate=0.5)
    a.reset()
    b.reset()


@dataclass
class Streamed:
    request_id: str
    messages: list[dict[str, Any]]
    events: list[str]
    message: anthropic.types.Message


def stream(client: anthropic.Anthropic, i: int) -> Streamed:
    """One streamed request through the SDK's stream helper, which accumulates the events
    into the final message (and raises on an error event)."""
    messages = [{"role": "user", "content": f"tell me about routing, #{i}"}]
    with client.messages.stream(model="auto", max_tokens=500, messages=messages) as live:
        events = [event.type for event in live]
        message = live.get_final_message()
        request_id = live.response.headers["x-routeyard-request-id"]
    return Streamed(request_id, messages, events, message)


def test_fifty_messages_streams_survive_a_backend_that_breaks_mid_stream(
        sims: tuple[SimulatorProcess, SimulatorProcess], gateway: RouterProcess) -> None:
    a, b = sims
    client = anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0,
                                 timeout=30)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: stream(client, i), range(50)))
    for result in results:  # any error event would have raised in the SDK
        message = result.message
        assert [block.type for block in message.content] == ["text"]
        assert message.content[0].text == FULL  # type: ignore[union-attr]
        assert message.stop_reason == "end_turn"
        assert result.events.count("message_start") == 1
        assert result.events.count("content_block_start") == 1
        assert result.events[-1] == "message_stop"
    cuts = a.stats()["outcomes"]["sim"]
    assert cuts["disconnect"] >= 10 and cuts["ok"] >= 10
    assert b.stats()["requests"]["sim"] == cuts["disconnect"]

    records = decision_records(gateway, [r.request_id for r in results])
    continued = [r for r in results if "continued" in records[r.request_id]["detail"]]
    assert len(continued) == cuts["disconnect"]
    for result in continued:
        record = records[result.request_id]
        assert record["status"] == "ok"
        assert [(h["from"], h["to"], h["after_chars"]) for h in record["detail"]["continued"]
                ] == [("primary", "backup", len(PARTIAL))]
        second_prompt, _ = estimate_prompt_tokens(
            [*result.messages, {"role": "assistant", "content": PARTIAL}])
        usage = result.message.usage
        assert usage.input_tokens == count_prompt_tokens(result.messages) + second_prompt
        assert usage.output_tokens == count_text_tokens(PARTIAL) + TOKENS - CUT


def test_responses_streams_survive_too(sims: tuple[SimulatorProcess, SimulatorProcess],
                                       gateway: RouterProcess) -> None:
    a, _ = sims
    a.set_profile("sim", disconnect_rate=1.0)
    client = openai_client(gateway)
    events = list(client.responses.create(model="auto", input="tell me", stream=True))
    kinds = [event.type for event in events]
    assert "error" not in kinds and kinds[-1] == "response.completed"
    completed = events[-1].response  # type: ignore[union-attr]
    assert completed.output_text == FULL
    assert a.stats()["outcomes"]["sim"]["disconnect"] == 1
