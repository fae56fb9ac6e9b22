"""The embedded default, the library API, the dry-run CLI, Anthropic backends, Redis state."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
from routerproc import start_router
from simproc import SimulatorProcess, start_simulator
from stores import REDIS_URL, needs_redis

from routeyard import Router
from routeyard.catalog import build_config
from routeyard.config.defaults import discover_providers
from routeyard.errors import ModelNotFound
from routeyard.state import MemoryStore

MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", "m1", "--model", "claude-sim", "--ttft-ms", "0",
                         "--tpot-ms", "0", "--output-tokens", "10") as process:
        yield process


def test_serve_without_config_runs_the_demo_pool(tmp_path: Path) -> None:
    with start_router(None, tmp_path, "--no-discover") as gateway:
        banner = "".join(gateway.output)
        assert "built-in demo pool" in banner and "OPENAI_API_KEY" in banner
        client = openai.OpenAI(base_url=gateway.base_url, api_key="k", max_retries=0)
        ids = [m.id for m in client.models.list()]
        assert ids[0] == "auto" and {"sim-small", "sim-medium", "sim-large"} <= set(ids)
        raw = client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES)
        assert raw.headers["x-routeyard-model"] == "sim-small"
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "Prove Fermat's little theorem"}])
        assert raw.headers["x-routeyard-model"] == "sim-large"
        chunks = list(client.chat.completions.create(model="sim-medium", messages=MESSAGES,
                                                     stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_provider_keys_are_discovered_and_never_shown(tmp_path: Path) -> None:
    secret = "sk-discovered-" + uuid.uuid4().hex
    with start_router(None, tmp_path, "--no-discover",
                      env={"OPENAI_API_KEY": secret, "ANTHROPIC_API_KEY": secret}) as gateway:
        listing = httpx.get(f"{gateway.base_url}/models").text
        assert "gpt-4o-mini" in listing and "claude-3-5-haiku-latest" in listing
        assert secret not in listing and secret not in "".join(gateway.output)
        assert "OPENAI_API_KEY is set" in "".join(gateway.output)


def test_local_server_discovery_lists_its_models(sim: SimulatorProcess) -> None:
    from routeyard.config import defaults

    found = defaults._list_local_models(sim.base_url)
    assert {name for name, _ in found} >= {"m1", "claude-sim"}
    assert defaults._list_local_models("http://127.0.0.1:9/v1") == []
    models, notes = discover_providers({}, probe_local=False)
    assert models == [] and notes == []


def test_route_cli_prints_the_dry_run() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "routeyard", "route", "Please prove that primes are infinite"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["decision"] == "reasoning" and plan["model"] == "sim-large"
    assert plan["prompt_tokens"] > 0 and "keyword" in plan["signals"]
    assert "prove" in plan["reason"]


def _config(sim: SimulatorProcess, **extra: Any) -> dict[str, Any]:
    return {
        "models": [
            {"name": "m1", "endpoints": [{"base_url": sim.base_url}],
             "pricing": {"input_per_mtok": 1, "output_per_mtok": 2}},
            {"name": "claude", "endpoints": [{"base_url": sim.base_url, "provider": "anthropic",
                                              "upstream_model": "claude-sim", "api_key": "k"}]},
        ],
        "decisions": [{"name": "to-claude", "when": {"keywords_any": ["claude"]},
                       "candidates": ["claude"]}],
        "default": {"candidates": ["m1"]},
        "pool": {"health_check": {"interval_s": 0}},
        **extra,
    }


async def test_library_router_in_process(sim: SimulatorProcess) -> None:
    store = MemoryStore()
    async with Router(build_config(_config(sim)), store=store) as router:
        reply = await router.chat({"model": "auto", "messages": MESSAGES})
        assert reply["choices"][0]["message"]["content"]
        chunks = [c async for c in router.chat_stream(
            {"model": "auto", "messages": [{"role": "user", "content": "hi claude"}]})]
        assert "".join(c["choices"][0]["delta"].get("content") or ""
                       for c in chunks if c.get("choices"))
        plan = await router.route("ask claude")
        assert plan["model"] == "claude" and plan["decision"] == "to-claude"
        with pytest.raises(ModelNotFound):
            await router.chat({"model": "nope", "messages": MESSAGES})
        await store.flush()
        records = await store.recent_decisions(10)
        assert [r.model for r in records[:2]] == ["claude", "m1"]
        assert records[1].cost_usd > 0


def test_anthropic_backend_through_the_gateway(sim: SimulatorProcess, tmp_path: Path) -> None:
    with start_router(_config(sim), tmp_path) as gateway:
        client = openai.OpenAI(base_url=gateway.base_url, api_key="k", max_retries=0)
        completion = client.chat.completions.create(
            model="claude", max_tokens=5,
            messages=[{"role": "system", "content": "be brief"}, *MESSAGES])
        assert completion.choices[0].finish_reason == "length"
        assert completion.usage is not None and completion.usage.completion_tokens == 5
        chunks = list(client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "hey claude"}], stream=True,
            stream_options={"include_usage": True}))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


@needs_redis
def test_redis_state_records_decisions(sim: SimulatorProcess, tmp_path: Path) -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    prefix = f"routeyard-test-{uuid.uuid4().hex[:8]}"
    state = {"backend": "redis", "redis_url": REDIS_URL, "key_prefix": prefix}
    try:
        with start_router(_config(sim, state=state), tmp_path) as gateway:
            oai = openai.OpenAI(base_url=gateway.base_url, api_key="k", max_retries=0)
            raw = oai.chat.completions.with_raw_response.create(model="m1", messages=MESSAGES)
            request_id = raw.headers["x-routeyard-request-id"]
            deadline = time.monotonic() + 5
            stored = None
            while stored is None and time.monotonic() < deadline:
                time.sleep(0.1)
                stored = client.get(f"{prefix}:decision:{request_id}")
            assert stored is not None
            record = json.loads(stored)
            assert record["model"] == "m1" and record["decision"] == "direct"
            assert record["status"] == "ok"
    finally:
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)


def test_redis_down_requests_still_succeed(sim: SimulatorProcess, tmp_path: Path) -> None:
    state = {"backend": "redis", "redis_url": "redis://127.0.0.1:6399/0"}  # nothing listens
    with start_router(_config(sim, state=state), tmp_path) as gateway:
        oai = openai.OpenAI(base_url=gateway.base_url, api_key="k", max_retries=0)
        for _ in range(3):
            assert oai.chat.completions.create(model="m1", messages=MESSAGES).choices
        ready = httpx.get(f"{gateway.url}/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded" and ready.json()["store_ok"] is False


def test_client_api_keys_are_enforced(sim: SimulatorProcess, tmp_path: Path) -> None:
    config = _config(sim, server={"api_keys": ["team-key-1"]})
    with start_router(config, tmp_path) as gateway:
        denied = openai.OpenAI(base_url=gateway.base_url, api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            denied.chat.completions.create(model="m1", messages=MESSAGES)
        allowed = openai.OpenAI(base_url=gateway.base_url, api_key="team-key-1", max_retries=0)
        assert allowed.chat.completions.create(model="m1", messages=MESSAGES).choices
        assert httpx.get(f"{gateway.url}/healthz").status_code == 200  # probes stay open


def test_client_leaving_mid_stream_frees_the_backend(sim: SimulatorProcess, tmp_path: Path
                                                     ) -> None:
    httpx.put(f"{sim.url}/_sim/profiles/m1",
              json={"tpot_ms": 50, "output_tokens_mean": 200, "output_tokens_min": 200}
              ).raise_for_status()
    try:
        with start_router(_config(sim), tmp_path) as gateway:
            httpx.post(f"{sim.url}/_sim/reset").raise_for_status()
            with httpx.stream("POST", f"{gateway.base_url}/chat/completions", json={
                    "model": "m1", "messages": MESSAGES, "stream": True}) as response:
                lines = response.iter_lines()
                assert next(lines).startswith("data: ")
            # The router must notice, close the upstream stream and log the request.
            deadline = time.monotonic() + 5
            outcomes: dict[str, int] = {}
            while time.monotonic() < deadline:
                outcomes = httpx.get(f"{sim.url}/_sim/stats").json()["outcomes"].get("m1", {})
                if outcomes.get("client_disconnect"):
                    break
                time.sleep(0.1)
            assert outcomes.get("client_disconnect") == 1, outcomes
            metrics = httpx.get(f"{gateway.url}/metrics").text
            assert 'status="client_disconnect"' in metrics
    finally:
        httpx.put(f"{sim.url}/_sim/profiles/m1",
                  json={"tpot_ms": 0, "output_tokens_mean": 10, "output_tokens_min": 1}
                  ).raise_for_status()
