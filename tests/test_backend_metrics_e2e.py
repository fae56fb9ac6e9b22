"""End to end: `routeyard serve` scraping two simulator processes' /metrics for one model.
One simulator is loaded by another client (six requests held in flight, which Routeyard never
sees), the other is idle. With scraping, `load_aware` selection and the endpoint order send
every request to the idle one; without it both look idle to Routeyard, so the first listed
(the loaded one) gets them all: the scraped metrics are what makes the difference."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import openai
import pytest
from routerproc import start_router
from simproc import SimulatorProcess, start_simulator
from test_backend_metrics import held, hold_request, sim_load, wait_for

INTERVAL_S = 0.5  # stale after 1.5 s: room for a slow scrape on a busy machine
HELD = 6


def router_config(loaded: SimulatorProcess, idle: SimulatorProcess,
                  scraping: bool) -> dict[str, Any]:
    def endpoint(name: str, sim: SimulatorProcess) -> dict[str, Any]:
        return {"name": name, "base_url": sim.base_url, "upstream_model": "m"}

    return {
        "models": [
            {"name": "a", "endpoints": [endpoint("a-loaded", loaded)]},
            {"name": "b", "endpoints": [endpoint("b-idle", idle)]},
            # One model, both backends: the endpoint order within a model.
            {"name": "pair", "endpoints": [endpoint("loaded", loaded), endpoint("idle", idle)]},
        ],
        "default": {"candidates": ["a", "b"], "algorithm": "load_aware"},
        "pool": {"backend_metrics": {"enabled": scraping, "interval_s": INTERVAL_S},
                 "health_check": {"interval_s": 0}},
    }


def served(sim: SimulatorProcess) -> int:
    return int(sim.stats()["requests"].get("m", 0))


@pytest.mark.parametrize("scraping", [True, False], ids=["scraping", "not-scraping"])
def test_scraped_load_steers_requests_to_the_idle_backend(tmp_path: Path,
                                                          scraping: bool) -> None:
    with (start_simulator("--model", "m") as loaded, start_simulator("--model", "m") as idle,
          held([hold_request(loaded.base_url, "m", fault="hang") for _ in range(HELD)])):
        wait_for(lambda: sim_load(loaded, "m")["running"] == HELD, "the load is in flight")
        assert sim_load(idle, "m")["running"] == 0
        with start_router(router_config(loaded, idle, scraping), tmp_path) as router:
            time.sleep(3 * INTERVAL_S)  # a few scrapes
            client = openai.OpenAI(base_url=router.base_url, api_key="unused", max_retries=0)
            before = served(loaded), served(idle)
            chosen = []
            for _ in range(4):
                raw = client.chat.completions.with_raw_response.create(
                    model="auto", messages=[{"role": "user", "content": "hi"}],
                    max_tokens=4)
                assert raw.parse().choices[0].message.content
                chosen.append(raw.headers["x-routeyard-model"])
            for _ in range(4):
                answer = client.chat.completions.create(
                    model="pair", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
                assert answer.choices[0].message.content
            to_loaded, to_idle = served(loaded) - before[0], served(idle) - before[1]
    if scraping:
        assert chosen == ["b"] * 4  # load_aware: b's backend reports 0 running, a's 6
        assert (to_loaded, to_idle) == (0, 8)
    else:
        assert chosen == ["a"] * 4  # both look idle to Routeyard: the first listed
        assert (to_loaded, to_idle) == (8, 0)
