"""Deep JSON, a bug escaping the executor, and a client leaving mid-body (issue 10, bug 2).

orjson parses JSON nested up to 1,024 levels but serialises at most 254. A body nested 255 to
1,023 levels deep in a pass-through field used to be accepted, then fail toward the backend as
a 500 that also left the endpoint's `outstanding` counter one too high for good.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator

from routeyard import Router
from routeyard.api.body import MAX_JSON_DEPTH
from routeyard.catalog import build_config
from routeyard.state import MemoryStore


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", "m", "--ttft-ms", "0", "--output-tokens", "2") as process:
        yield process


def gateway_config(sim: SimulatorProcess) -> dict[str, Any]:
    return {"models": [{"name": "m", "endpoints": [{"base_url": sim.base_url}]}],
            "pool": {"health_check": {"interval_s": 0}}}


@pytest.fixture(scope="module")
def gateway(sim: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RouterProcess]:
    with start_router(gateway_config(sim), tmp_path_factory.mktemp("deep")) as process:
        yield process


def nested(depth: int) -> str:
    """JSON text of `depth` nested arrays (the outermost counts as one level)."""
    return "[" * depth + "]" * depth


def with_deep_field(field: str, depth: int) -> str:
    """A chat body whose `field` holds JSON nested so that the whole body is `depth` deep."""
    message = '{"role": "user", "content": "hi"}'
    if field == "metadata":  # body > metadata > key
        return ('{"model": "auto", "messages": [' + message + '], "metadata": {"k": ' +
                nested(depth - 2) + '}}')
    if field == "tools":  # body > tools > tool > function > parameters
        return ('{"model": "auto", "messages": [' + message + '], "tools": [{"type": '
                '"function", "function": {"name": "f", "parameters": ' + nested(depth - 4) +
                '}}]}')
    if field == "content":  # body > messages > message > content > part > extra
        return ('{"model": "auto", "messages": [{"role": "user", "content": [{"type": "text", '
                '"text": "hi", "extra": ' + nested(depth - 5) + '}]}]}')
    return f'{{"model": "auto", "messages": [{message}], "unknown_key": {nested(depth - 1)}}}'


@pytest.mark.parametrize("field", ["metadata", "tools", "content", "unknown"])
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 255, 600, 1023])
def test_deep_json_in_any_field_is_a_400_naming_the_depth(gateway: RouterProcess, field: str,
                                                          depth: int) -> None:
    response = httpx.post(f"{gateway.base_url}/chat/completions", timeout=30,
                          content=with_deep_field(field, depth),
                          headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "json_too_deep"
    assert str(MAX_JSON_DEPTH) in error["message"]


def test_depth_at_the_limit_is_served(gateway: RouterProcess) -> None:
    response = httpx.post(f"{gateway.base_url}/chat/completions", timeout=30,
                          content=with_deep_field("metadata", MAX_JSON_DEPTH),
                          headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text


def test_deeper_than_orjson_parses_is_still_a_400(gateway: RouterProcess) -> None:
    response = httpx.post(f"{gateway.base_url}/chat/completions", timeout=30,
                          content=with_deep_field("unknown", 2000),
                          headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_a_bug_escaping_the_executor_releases_the_endpoint(sim: SimulatorProcess
                                                                 ) -> None:
    """A library caller can pass a body orjson cannot serialise (a set): the TypeError still
    escapes as ours, but the endpoint's slot is freed and a half-open breaker's probe slot is
    given back, instead of being held for good."""
    config = build_config({**gateway_config(sim),
                           "pool": {"health_check": {"interval_s": 0},
                                    "breaker": {"failure_threshold": 1, "cooldown_s": 0}}})
    bad = {"model": "m", "messages": [{"role": "user", "content": "hi"}],
           "metadata": {"tags": {"a", "b"}}}
    async with Router(config, store=MemoryStore()) as router:
        endpoint = router.pool.models["m"].endpoints[0]
        endpoint.breaker.on_failure()  # open; with a 0 s cooldown it is half-open at once
        assert endpoint.breaker.state == "half_open"
        with pytest.raises(TypeError):
            await router.chat(bad)
        assert endpoint.outstanding == 0
        assert endpoint.breaker.allows(), "the half-open probe slot was never given back"
        reply = await router.chat({"model": "m", "messages": [{"role": "user", "content": "x"}]})
        assert reply["choices"][0]["message"]["content"]
        assert endpoint.outstanding == 0 and endpoint.breaker.state == "closed"


def test_client_leaving_mid_body_is_not_an_unhandled_error(gateway: RouterProcess) -> None:
    host, port = gateway.url.removeprefix("http://").rsplit(":", 1)
    for _ in range(3):
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                         b"content-type: application/json\r\ncontent-length: 100000\r\n\r\n"
                         b'{"model": "auto", "messages": [')
            time.sleep(0.1)
    time.sleep(0.5)  # let the server notice the disconnects
    ok = httpx.post(f"{gateway.base_url}/chat/completions", timeout=30,
                    json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
    assert ok.status_code == 200
    log = "".join(gateway.output)
    assert "unhandled error" not in log and "Traceback" not in log, log[-3000:]

