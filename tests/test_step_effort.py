"""The `step_effort` plugin: a reasoning effort per step of an agent session, in process against
a recording backend and end to end through `routeyard serve` and the simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from echo_backend import echo_backend
from routerproc import start_router
from simproc import SimulatorProcess, start_simulator

from routeyard.catalog import build_config
from routeyard.plugins import PLUGINS, PluginBuild
from routeyard.plugins.step_effort import DEFAULT_STEP_EFFORTS, STEP_HEADER
from routeyard.router import Router
from routeyard.state import MemoryStore

TOOLS = [{"type": "function", "function": {"name": "run", "parameters": {"type": "object"}}}]
TASK = {"role": "user", "content": "Fix the failing test in tests/test_io.py"}


def call(index: int = 0) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": f"call_{index}", "type": "function",
         "function": {"name": "run", "arguments": '{"cmd": "pytest"}'}}]}


def result(content: str, index: int = 0) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": f"call_{index}", "content": content}


def session() -> list[tuple[str, dict[str, Any]]]:
    """One agent session, step by step: (the step, its request)."""
    plan = [TASK]
    run = [*plan, call(0), result("FAILED tests/test_io.py::test_read - KeyError", 0)]
    failed = [*run, call(1), result("Traceback (most recent call last):\n  KeyError: 'x'", 1)]
    passed = [*failed, call(2), result("4 passed in 0.31s", 2)]
    return [("planning", {"model": "auto", "messages": plan, "tools": TOOLS}),
            ("tool_result", {"model": "auto", "messages": run, "tools": TOOLS}),
            ("error_recovery", {"model": "auto", "messages": failed, "tools": TOOLS}),
            ("final", {"model": "auto", "messages": passed, "tools": TOOLS,
                       "tool_choice": "none"})]


@pytest.fixture
async def echo() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    async with echo_backend() as backend:
        yield backend


def router(url: str, plugin: dict[str, Any], *, reasoning: dict[str, bool] | None = None,
           candidate: Any = "r", signals: dict[str, Any] | None = None) -> Router:
    reasoning = reasoning or {"r": True}
    return Router(build_config({
        "models": [{"name": name, "endpoints": [{"base_url": url}],
                    "capabilities": {"tools": True, "reasoning": reasons}}
                   for name, reasons in reasoning.items()],
        "signals": signals or {},
        "default": {"candidates": [candidate], "plugins": [plugin]},
        "pool": {"health_check": {"interval_s": 0}},
    }), store=MemoryStore())


async def test_the_default_policy_per_step(echo: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = echo
    async with router(url, {"type": "step_effort", "models": ["r"]}) as r:
        for _, request in session():
            await r.chat(request)
    assert [b.get("reasoning_effort") for b in received] == [
        DEFAULT_STEP_EFFORTS[step] for step, _ in session()]
    assert [b.get("reasoning_effort") for b in received] == ["high", "low", "high", "medium"]


async def test_a_partial_mapping_keeps_the_other_defaults(
        echo: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = echo
    plugin = {"type": "step_effort", "models": ["r*"], "efforts": {"tool_result": "minimal"}}
    async with router(url, plugin) as r:
        for _, request in session():
            await r.chat(request)
    assert [b.get("reasoning_effort") for b in received] == ["high", "minimal", "high", "medium"]


async def test_the_client_effort_wins_and_the_candidate_effort_is_refined(
        echo: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = echo
    candidate = {"model": "r", "reasoning_effort": "medium"}
    async with router(url, {"type": "step_effort", "models": ["r"]}, candidate=candidate) as r:
        _, digest = session()[1]
        await r.chat({**digest, "reasoning_effort": "high"})  # the client's own
        await r.chat(digest)  # the candidate says medium, the step says low
    assert [b.get("reasoning_effort") for b in received] == ["high", "low"]


async def test_models_that_do_not_reason_get_no_effort(
        echo: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = echo
    plugin = {"type": "step_effort", "models": ["r"]}
    async with router(url, plugin, reasoning={"plain": False}, candidate="plain") as r:
        await r.chat(session()[0][1])
    assert "reasoning_effort" not in received[0]


async def test_the_step_family_config_is_used_when_it_ran(
        echo: tuple[str, list[dict[str, Any]]]) -> None:
    """A configured family (referenced by a rule) classifies with its own patterns, and the
    plugin follows it; without it the plugin's defaults would call this a plain result."""
    url, received = echo
    flaky = {"model": "auto", "messages": [TASK, call(), result("WARN: 2 tests flaky")],
             "tools": TOOLS}
    config = build_config({
        "models": [{"name": "r", "endpoints": [{"base_url": url}],
                    "capabilities": {"tools": True, "reasoning": True}}],
        "signals": {"step": {"error_patterns": ["flaky"]}},
        "decisions": [{"name": "agent", "rules": {"not": "step:planning"}, "candidates": ["r"],
                       "plugins": [{"type": "step_effort", "models": ["r"]}]}],
        "default": {"candidates": ["r"], "plugins": [{"type": "step_effort", "models": ["r"]}]},
        "pool": {"health_check": {"interval_s": 0}},
    })
    async with Router(config, store=MemoryStore()) as r:
        await r.chat(flaky)
    assert received[0]["reasoning_effort"] == "high"  # error_recovery, by the family's pattern


@dataclass(frozen=True)
class BuildWithModels:
    """PluginBuild as it would be with the Router's reasoning models in it."""

    store: Any = None
    reasoning_models: frozenset[str] = frozenset()


def test_reasoning_models_from_the_build() -> None:
    plugin = PLUGINS["step_effort"]({}, BuildWithModels(reasoning_models=frozenset({"o4"})))
    assert plugin.reasons("o4") and not plugin.reasons("small")  # type: ignore[attr-defined]


@pytest.mark.parametrize(("options", "message"), [
    ({}, "give `models`"),
    ({"models": "r"}, "models must be a non-empty list"),
    ({"models": ["r"], "efforts": {"thinking": "high"}}, "unknown step 'thinking'"),
    ({"models": ["r"], "efforts": {"planning": "max"}}, "efforts.planning must be one of"),
    ({"models": ["r"], "efforts": ["high"]}, "efforts must be a mapping"),
    ({"models": ["r"], "effort": "high"}, "unknown option"),
])
def test_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PLUGINS["step_effort"](options, PluginBuild())


# -- end to end: routeyard serve, the simulator, the openai SDK -------------------------------

@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", "sim-reasoner", "--ttft-ms", "0",
                         "--tpot-ms", "0", "--output-tokens", "4", "--seed", "1") as proc:
        yield proc


def test_effort_sent_upstream_per_step(sim: SimulatorProcess, tmp_path: Path) -> None:
    config = {
        "models": [{"name": "sim-reasoner", "endpoints": [{"base_url": sim.base_url}],
                    "capabilities": {"tools": True, "reasoning": True}}],
        "default": {"candidates": ["sim-reasoner"],
                    "plugins": [{"type": "step_effort", "models": ["sim-reasoner"]}]},
        "pool": {"health_check": {"interval_s": 0}},
    }
    sim.reset()
    with start_router(config, tmp_path) as proc:
        client = openai.OpenAI(base_url=proc.base_url, api_key="unused", max_retries=0)
        steps = []
        for _, request in session():
            raw = client.chat.completions.with_raw_response.create(**request)
            assert raw.parse().choices[0].message is not None
            steps.append(raw.headers.get(STEP_HEADER))
        # The client's own effort is sent as it is.
        client.chat.completions.create(**session()[1][1], reasoning_effort="medium")
        # A stream gets its step's effort too.
        chunks = list(client.chat.completions.create(**session()[2][1], stream=True))
        assert chunks
    assert steps == ["planning", "tool_result", "error_recovery", "final"]
    sent = sim.stats()["reasoning_efforts"]
    assert sent == [["sim-reasoner", "high"], ["sim-reasoner", "low"],
                    ["sim-reasoner", "high"], ["sim-reasoner", "medium"],
                    ["sim-reasoner", "medium"], ["sim-reasoner", "high"]]
