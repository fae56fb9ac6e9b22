"""The simulator's prefix-cache model: a cached prefix shortens the time to first token."""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest
import yaml
from simproc import start_simulator

from routeyard.simulator import ModelProfile, SimulatorConfig
from routeyard.simulator.engine import Plan, SimulatorEngine
from routeyard.simulator.prefix_cache import PrefixCache, prompt_blocks
from routeyard.simulator.text import estimate_prompt_tokens

SYSTEM = {"role": "system", "content": "You are a careful coding agent. " * 50}  # ~400 tokens


def turns(n: int, salt: str = "") -> list[dict[str, str]]:
    """A session's messages after `n` user turns (each ~250 tokens)."""
    messages = [SYSTEM]
    for i in range(n):
        messages.append({"role": "user", "content": f"{salt}step {i}: " + "read the file. " * 60})
        if i < n - 1:
            messages.append({"role": "assistant", "content": f"done with step {i}"})
    return messages


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def engine(clock: Clock, **profile: float) -> tuple[SimulatorEngine, str]:
    config = SimulatorConfig(models={"m": ModelProfile().merged(profile)})
    return SimulatorEngine(config, clock=clock), "m"


def plan(sim: SimulatorEngine, messages: list[dict[str, str]]) -> Plan:
    tokens, last = estimate_prompt_tokens(messages)
    return sim.plan("m", sim.states["m"], tokens, last, None, None,
                    blocks=prompt_blocks(messages))


def test_blocks_add_up_to_the_prompt_estimate_and_key_the_whole_prefix() -> None:
    messages = turns(3)
    blocks = prompt_blocks(messages)
    assert len(blocks) == len(messages)
    assert sum(tokens for _, tokens in blocks) == estimate_prompt_tokens(messages)[0]
    # Equal prefixes have equal keys; a changed early message changes every later key.
    assert prompt_blocks(turns(4))[:4] == blocks[:4]
    changed = [SYSTEM, {"role": "user", "content": "other"}, *messages[2:]]
    assert all(a[0] != b[0] for a, b in zip(prompt_blocks(changed)[1:], blocks[1:],
                                               strict=True))
    with_system = prompt_blocks(messages[1:], system="be brief")
    assert len(with_system) == len(messages)  # the Anthropic system prompt is a block too


def test_lru_keeps_prefixes_longer_than_their_extensions_and_respects_capacity() -> None:
    cache = PrefixCache(capacity_tokens=1000)
    first = prompt_blocks(turns(2))
    cache.admit(first)
    assert cache.cached_tokens(first) == sum(t for _, t in first)
    grown = prompt_blocks(turns(3))
    assert cache.cached_tokens(grown) == sum(t for _, t in first)  # the session grew
    other = prompt_blocks(turns(2, salt="other "))
    cache.admit(other)  # over capacity: the oldest leaves go first
    assert cache.tokens <= 1000
    assert cache.cached_tokens(other) > 0
    assert cache.cached_tokens(first) < sum(t for _, t in first)
    assert cache.cached_tokens(first[:1]) == first[0][1]  # the shared system prompt stays
    cache.resize(0)
    assert cache.tokens == 0 and len(cache) == 0


def test_cached_prefix_shortens_ttft_to_the_uncached_tokens_prefill() -> None:
    clock = Clock()
    sim, _ = engine(clock, ttft_ms=20, prefill_ms_per_1k_tokens=100,
                    prefix_cache_tokens=100_000)
    cold = plan(sim, turns(2))
    assert cold.cached_tokens == 0
    assert cold.first_token_s == pytest.approx(0.020 + cold.prompt_tokens * 0.0001)
    clock.now += 10  # the first prefill is long done
    warm = plan(sim, turns(3))
    uncached = warm.prompt_tokens - warm.cached_tokens
    assert 0 < uncached < warm.prompt_tokens / 2
    assert warm.first_token_s == pytest.approx(0.020 + uncached * 0.0001)
    assert warm.total_s == pytest.approx(warm.first_token_s + (warm.completion_tokens - 1)
                                         * warm.profile.latency.tpot_s)
    stats = sim.stats()["prefix_cache"]["m"]
    assert stats["cached_tokens"] == warm.cached_tokens
    assert stats["prefilled_tokens"] == cold.prompt_tokens + uncached


def test_one_endpoint_prefills_one_prompt_at_a_time() -> None:
    clock = Clock()
    sim, _ = engine(clock, ttft_ms=0, prefill_ms_per_1k_tokens=1000)  # no cache: 1 ms/token
    first = plan(sim, turns(1, salt="a "))
    second = plan(sim, turns(1, salt="b "))  # same instant: waits for the first's prefill
    assert second.first_token_s == pytest.approx(first.first_token_s + second.prompt_tokens
                                                 / 1000)
    assert second.cached_tokens == 0


def test_without_a_prefill_model_nothing_changes() -> None:
    clock = Clock()
    sim, _ = engine(clock, ttft_ms=30)
    found = plan(sim, turns(2))
    assert found.cached_tokens is None and found.first_token_s == pytest.approx(0.030)
    assert "m" not in sim.stats()["prefix_cache"]


def test_profile_keys_are_checked() -> None:
    with pytest.raises(ValueError, match="prefix_cache_tokens"):
        ModelProfile().merged({"prefix_cache_tokens": -1})
    with pytest.raises(ValueError, match="prefill_ms_per_1k_tokens"):
        ModelProfile().merged({"prefill_ms_per_1k_tokens": -5})
    assert ModelProfile().merged({"prefix_cache_tokens": 5000.0}).prefix_cache_tokens == 5000


def _streamed_ttft(client: openai.OpenAI, messages: list[dict[str, str]]
                   ) -> tuple[float, int]:
    started = time.perf_counter()
    stream = client.chat.completions.create(model="agent", messages=messages, stream=True,
                                            stream_options={"include_usage": True})
    ttft, cached = None, -1
    for chunk in stream:
        if ttft is None and chunk.choices and chunk.choices[0].delta.content:
            ttft = time.perf_counter() - started
        if chunk.usage is not None:
            cached = chunk.usage.prompt_tokens_details.cached_tokens
    assert ttft is not None
    return ttft, cached


def test_a_real_simulator_reports_cached_tokens_and_answers_warm_prefixes_sooner(
        tmp_path: Path) -> None:
    config = tmp_path / "sim.yaml"
    config.write_text(yaml.safe_dump({"models": {"agent": {
        "ttft_ms": 10, "tpot_ms": 1, "output_tokens_mean": 5,
        "prefill_ms_per_1k_tokens": 400, "prefix_cache_tokens": 50_000}}}))
    with start_simulator("--config", str(config)) as sim:
        client = openai.OpenAI(base_url=sim.base_url, api_key="unused", max_retries=0)
        cold_ttft, cold_cached = _streamed_ttft(client, turns(4))  # ~1500 tokens: ~0.6 s
        warm_ttft, warm_cached = _streamed_ttft(client, turns(5))
        whole = client.chat.completions.create(model="agent", messages=turns(5))
        assert cold_cached == 0
        assert warm_cached > 1000
        assert warm_ttft < cold_ttft / 2
        assert whole.usage.prompt_tokens_details.cached_tokens == whole.usage.prompt_tokens
        stats = sim.stats()["prefix_cache"]["agent"]
        assert stats["blocks"] > 0 and stats["cached_tokens"] >= warm_cached
