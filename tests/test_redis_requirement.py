"""The Redis guard (stores.require_redis and the needs_redis marker): without Redis the Redis
tests skip, except under ROUTEYARD_REQUIRE_SERVICES=1 (CI), where they fail with a clear
message. Checked by running some of the suite's own Redis tests in a pytest subprocess whose
ROUTEYARD_TEST_REDIS_URL points at a port nobody listens on."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# A marked test, the store fixture's marked param, and one using the marker on a gateway test.
REDIS_TESTS = [
    "test_state_kv.py::test_redis_key_layout_and_ttl",
    "test_state_kv.py::test_get_set_round_trip[redis]",
    "test_surfaces.py::test_redis_state_records_decisions",
]


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_redis_tests(url: str, require: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ROUTEYARD_REQUIRE_SERVICES"}
    env["ROUTEYARD_TEST_REDIS_URL"] = url
    if require:
        env["ROUTEYARD_REQUIRE_SERVICES"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rsE", "-p", "no:cacheprovider",
         *(str(TESTS / t) for t in REDIS_TESTS)],
        cwd=TESTS.parent, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def down_url() -> str:
    return f"redis://127.0.0.1:{unused_port()}/0"


def test_without_redis_the_redis_tests_skip(down_url: str) -> None:
    run = run_redis_tests(down_url, require=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{len(REDIS_TESTS)} skipped" in run.stdout, run.stdout
    assert f"no Redis at {down_url}" in run.stdout


def test_under_ci_the_redis_tests_fail_when_redis_is_down(down_url: str) -> None:
    run = run_redis_tests(down_url, require=True)
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"{len(REDIS_TESTS)} error" in run.stdout, run.stdout  # failed in setup
    assert "skipped" not in run.stdout
    assert (f"Redis is required (ROUTEYARD_REQUIRE_SERVICES=1) but {down_url} does not answer"
            in run.stdout)
