"""The body limit: large enough for vision requests by default, and a 413 past it that every
common client still reads (issue 10, bug 4)."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import requests
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator

from routeyard.config.schema import ServerConfig

LIMIT = ServerConfig().max_body_bytes
OVER = LIMIT + (1 << 20)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", "eye", "--ttft-ms", "0", "--output-tokens", "4") as process:
        yield process


@pytest.fixture(scope="module")
def gateway(sim: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RouterProcess]:
    config = {"models": [{"name": "eye", "capabilities": {"vision": True},
                          "endpoints": [{"base_url": sim.base_url}]}],
              "pool": {"health_check": {"interval_s": 0}}}
    with start_router(config, tmp_path_factory.mktemp("limit")) as process:
        yield process


def photo_part(megabytes: int) -> dict[str, object]:
    """An image_url part holding `megabytes` MB of (random, incompressible) base64 "photo"."""
    data = base64.b64encode(os.urandom(megabytes * 750_000)).decode()
    return {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{data}"}}


def test_default_limit_takes_three_large_photos(gateway: RouterProcess) -> None:
    assert LIMIT >= 50_000_000  # OpenAI-compatible APIs take vision requests of 50 MB
    content = [{"type": "text", "text": "What differs between these?"},
               *(photo_part(9) for _ in range(3))]
    response = httpx.post(f"{gateway.base_url}/chat/completions", timeout=120, json={
        "model": "eye", "messages": [{"role": "user", "content": content}]})
    assert response.status_code == 200, response.text[:500]


def oversized_body() -> bytes:
    return (b'{"model": "eye", "messages": [{"role": "user", "content": "'
            + b"x" * OVER + b'"}]}')


def assert_413(status: int, body: bytes) -> None:
    assert status == 413, body[:300]
    assert b"request_too_large" in body


def test_httpx_reads_the_413(gateway: RouterProcess) -> None:
    response = httpx.post(f"{gateway.base_url}/chat/completions", content=oversized_body(),
                          headers={"content-type": "application/json"}, timeout=60)
    assert_413(response.status_code, response.content)


def test_requests_reads_the_413(gateway: RouterProcess) -> None:
    response = requests.post(f"{gateway.base_url}/chat/completions", data=oversized_body(),
                             headers={"content-type": "application/json"}, timeout=60)
    assert_413(response.status_code, response.content)


def test_openai_sdk_reads_the_413(gateway: RouterProcess) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key="k", max_retries=0, timeout=60)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="eye", messages=[
            {"role": "user", "content": "x" * OVER}])
    assert caught.value.status_code == 413
    assert isinstance(caught.value.body, dict)
    assert caught.value.body.get("code") == "request_too_large"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_reads_the_413(gateway: RouterProcess, tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_bytes(oversized_body())
    out = tmp_path / "out.json"
    result = subprocess.run(
        ["curl", "-sS", "-o", str(out), "-w", "%{http_code}", "-H",
         "content-type: application/json", "--data-binary", f"@{body}",
         f"{gateway.base_url}/chat/completions"],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert_413(int(result.stdout), out.read_bytes())
