"""Implicit feedback end to end: a real router process on the real simulator, the `openai` SDK
as the client. A regeneration and an abandoned stream become implicit feedback in the decision
log; `evaluate-policy` and `advise` count it by default and leave it out with
`--implicit exclude`; with the feature off (the default) neither leaves any feedback."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from gateway_support import ADMIN_KEY, USER_KEY
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator

PROMPT = "Write a haiku about the sea"
STREAMED = "Tell me a very long story about a lighthouse keeper"
EXPLICIT = ["Explain how TCP congestion control works", "What is a monad in Haskell?"]
IMPLICIT_ON = {"regeneration": True, "regeneration_similarity": 0.95,
               "abandoned_streams": True, "abandoned_max_tokens": 20}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    # Slow enough per token that a stream left after its first chunk has few tokens.
    with start_simulator("--model", "a", "--model", "b", "--ttft-ms", "0", "--tpot-ms", "20",
                         "--output-tokens", "200") as process:
        yield process


def _config(sim: SimulatorProcess, implicit: dict[str, Any] | None) -> dict[str, Any]:
    endpoint = [{"base_url": sim.base_url}]
    config: dict[str, Any] = {
        "server": {"admin_keys": [ADMIN_KEY], "api_keys": [USER_KEY], "watch_config_s": 0},
        "models": [{"name": "a", "endpoints": endpoint}, {"name": "b", "endpoints": endpoint}],
        "default": {"name": "chat", "candidates": ["a", "b"], "algorithm": "static"},
        "pool": {"health_check": {"interval_s": 0}},
    }
    if implicit is not None:
        config["feedback"] = {"implicit": implicit}
    return config


def _ask(client: openai.OpenAI, text: str) -> str:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": text}], max_tokens=4)
    raw.parse()
    return raw.headers["x-routeyard-request-id"]


def _abandon(client: openai.OpenAI, text: str) -> str:
    """Open a stream, read its first chunk, and leave."""
    with client.chat.completions.with_streaming_response.create(
            model="auto", messages=[{"role": "user", "content": text}], stream=True,
            max_tokens=200) as response:
        request_id = response.headers["x-routeyard-request-id"]
        for line in response.iter_lines():
            if line.startswith("data: {"):
                break
    return request_id


def _record(admin: openai.OpenAI, request_id: str, ready: Any, timeout: float = 15
            ) -> dict[str, Any]:
    """The logged record of `request_id` once `ready(record)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            record = admin.get(f"/decisions/{request_id}", cast_to=object)
            if ready(record):
                return record  # type: ignore[return-value]
        except openai.NotFoundError:
            pass
        assert time.monotonic() < deadline, f"{request_id}: not logged as expected"
        time.sleep(0.05)


def _routeyard(*argv: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "routeyard", *argv, "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _clients(router: RouterProcess) -> tuple[openai.OpenAI, openai.OpenAI]:
    return (openai.OpenAI(base_url=router.base_url, api_key=USER_KEY, max_retries=0),
            openai.OpenAI(base_url=router.base_url, api_key=ADMIN_KEY, max_retries=0))


def test_regeneration_and_abandoned_stream_become_implicit_feedback(
        sim: SimulatorProcess, tmp_path: Path) -> None:
    with start_router(_config(sim, IMPLICIT_ON), tmp_path) as router:
        client, admin = _clients(router)
        http = httpx.Client(base_url=router.base_url, timeout=10,
                            headers={"authorization": f"Bearer {USER_KEY}"})
        for text in EXPLICIT:  # two requests with explicit feedback
            reply = http.post("/feedback", json={"request_id": _ask(client, text), "score": 1.0})
            assert reply.status_code == 200, reply.text
        first = _ask(client, PROMPT)
        again = _ask(client, PROMPT + ".")  # the caller regenerates
        abandoned = _abandon(client, STREAMED)

        regenerated = _record(admin, first, lambda r: r["feedback"] is not None)
        assert (regenerated["feedback"], regenerated["feedback_implicit"]) == (0.0, True)
        left = _record(admin, abandoned, lambda r: r["feedback"] is not None)
        assert left["status"] == "client_disconnect" and left["stream"]
        assert left["completion_tokens"] < IMPLICIT_ON["abandoned_max_tokens"]
        assert (left["feedback"], left["feedback_implicit"]) == (0.0, True)
        assert _record(admin, again, lambda r: True)["feedback"] is None
        metrics = httpx.get(f"{router.url}/metrics",
                            headers={"authorization": f"Bearer {ADMIN_KEY}"}).text
        for kind in ("regeneration", "abandoned_stream"):
            assert re.search(rf'routeyard_implicit_feedback_total\{{[^}}]*kind="{kind}"'
                             rf'[^}}]*\}} 1\.0', metrics), metrics

        # Explicit feedback given later for the regenerated request replaces the implicit one.
        reply = http.post("/feedback", json={"request_id": first, "rating": 2})
        assert reply.status_code == 200, reply.text
        fixed = _record(admin, first, lambda r: not r["feedback_implicit"])
        assert fixed["feedback"] == 0.25
        reply = http.post("/feedback", json={"request_id": abandoned, "rating": 1})
        assert reply.status_code == 200, reply.text
        assert _record(admin, abandoned, lambda r: not r["feedback_implicit"])["feedback"] == 0

        # Explicit feedback now: 1.0, 1.0, 0.25 and 0.0; one more regeneration gives the one
        # implicit feedback that tells include from exclude.
        log = str(tmp_path / "state.db")
        third = _ask(client, "Name three prime numbers")
        _ask(client, "name three prime numbers!")
        _record(admin, third, lambda r: r["feedback"] is not None)
        included = _routeyard("evaluate-policy", log, "--algorithm", "static",
                              "--resamples", "200")
        excluded = _routeyard("evaluate-policy", log, "--algorithm", "static",
                              "--resamples", "200", "--implicit", "exclude")
        assert included["implicit_feedback"] == "include"
        assert excluded["implicit_feedback"] == "exclude"
        quality_in, quality_ex = (r["groups"]["all"]["quality"] for r in (included, excluded))
        assert quality_in["n"] == 5 and quality_ex["n"] == 4
        assert quality_in["logging"] == pytest.approx((1 + 1 + 0.25 + 0 + 0) / 5)
        assert quality_ex["logging"] == pytest.approx((1 + 1 + 0.25 + 0) / 4)

        advised = _routeyard("advise", log, "--min-feedback", "2", "--resamples", "200")
        advised_ex = _routeyard("advise", log, "--min-feedback", "2", "--resamples", "200",
                                "--implicit", "exclude")
        assert (advised["feedback"], advised_ex["feedback"]) == (5, 4)
        assert advised_ex["implicit_feedback"] == "exclude"


def test_off_by_default_no_implicit_feedback(sim: SimulatorProcess, tmp_path: Path) -> None:
    with start_router(_config(sim, None), tmp_path) as router:
        client, admin = _clients(router)
        first = _ask(client, PROMPT)
        again = _ask(client, PROMPT)
        abandoned = _abandon(client, STREAMED)
        _record(admin, abandoned, lambda r: r["status"] == "client_disconnect")
        time.sleep(0.5)  # what the feature would take to write its feedback, many times over
        for request_id in (first, again, abandoned):
            assert _record(admin, request_id, lambda r: True)["feedback"] is None
        metrics = httpx.get(f"{router.url}/metrics",
                            headers={"authorization": f"Bearer {ADMIN_KEY}"}).text
        assert "routeyard_implicit_feedback_total{" not in metrics
