"""/v1/responses routes like chat completions (decisions, selection, plugins, failover, headers,
the decision log, metrics, feedback), and a chain of responses stays on its model while its
decision is unchanged."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from routerproc import RouterProcess, start_router
from scripted_backend import scripted_backend
from simproc import SimulatorProcess, start_simulator

MODELS = ("m-a", "m-b")


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator(*[arg for m in MODELS for arg in ("--model", m)], "--ttft-ms", "0",
                         "--tpot-ms", "0", "--output-tokens", "6") as process:
        yield process


def _models(sim: SimulatorProcess) -> list[dict[str, Any]]:
    return [{"name": name, "endpoints": [{"base_url": sim.base_url}]} for name in MODELS]


def _client(gateway: RouterProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key="k", max_retries=0)


def _served(raw: Any) -> str:
    """The model that answered, by header, checked against the Response's own `model`."""
    response = raw.parse()
    assert raw.headers["x-routeyard-model"] == response.model
    return str(response.model)


def test_a_chain_stays_on_its_first_model(sim: SimulatorProcess, tmp_path: Path) -> None:
    """`ema` with epsilon 1 picks at random every time; a chain keeps its first pick."""
    config = {"models": _models(sim), "pool": {"health_check": {"interval_s": 0}},
              "default": {"candidates": list(MODELS), "algorithm": "ema",
                          "algorithm_options": {"epsilon": 1.0}}}
    with start_router(config, tmp_path) as gateway:
        oai = _client(gateway)
        unchained = {_served(oai.responses.with_raw_response.create(model="auto", input="hi"))
                     for _ in range(16)}
        assert unchained == set(MODELS)  # the control: without a chain, both are picked
        for stream in (False, True):
            first = oai.responses.with_raw_response.create(model="auto", input="hi")
            model, previous = _served(first), first.parse().id
            for turn in range(6):
                raw = oai.responses.with_raw_response.create(
                    model="auto", input=f"turn {turn}", previous_response_id=previous,
                    stream=stream)
                assert raw.headers["x-routeyard-model"] == model
                if stream:
                    completed = [e for e in raw.parse() if e.type == "response.completed"]
                    previous = completed[0].response.id
                    assert completed[0].response.model == model
                else:
                    assert _served(raw) == model
                    previous = raw.parse().id


def test_a_new_decision_selects_afresh(sim: SimulatorProcess, tmp_path: Path) -> None:
    """Stickiness holds within a decision: a turn that lands in another decision gets that
    decision's own choice, even when it also lists the conversation's model."""
    config = {
        "models": _models(sim), "pool": {"health_check": {"interval_s": 0}},
        "signals": {"metadata": {"hints": {"fast": {"field": "tier", "equals": ["fast"]}}}},
        "decisions": [{"name": "fast", "rules": {"signal": "metadata:fast"},
                       "candidates": ["m-b", "m-a"]}],
        "default": {"candidates": ["m-a", "m-b"]},
    }
    with start_router(config, tmp_path) as gateway:
        oai = _client(gateway)
        one = oai.responses.with_raw_response.create(model="auto", input="hi")
        assert (one.headers["x-routeyard-decision"], _served(one)) == ("default", "m-a")
        two = oai.responses.with_raw_response.create(
            model="auto", input="quick", metadata={"tier": "fast"},
            previous_response_id=one.parse().id)
        # "fast" lists m-a too, but its own selection (static: m-b first) chooses.
        assert (two.headers["x-routeyard-decision"], _served(two)) == ("fast", "m-b")
        three = oai.responses.with_raw_response.create(
            model="auto", input="slowly now", previous_response_id=two.parse().id)
        assert (three.headers["x-routeyard-decision"], _served(three)) == ("default", "m-a")
        four = oai.responses.with_raw_response.create(
            model="auto", input="and again", previous_response_id=three.parse().id)
        assert (four.headers["x-routeyard-decision"], _served(four)) == ("default", "m-a")


def test_responses_are_routed_like_chat(sim: SimulatorProcess, tmp_path: Path) -> None:
    """Decisions and their plugins, failover, decision headers, metrics and feedback."""
    with scripted_backend() as backend:
        config = {
            "models": [{"name": "down", "endpoints": [{"base_url": "http://127.0.0.1:9/v1"}]},
                       {"name": "up", "endpoints": [{"base_url": backend.url}]},
                       *_models(sim)],
            "pool": {"health_check": {"interval_s": 0}, "retry": {"max_retries": 0}},
            "signals": {"keyword": {"sets": {"proof": {"any": ["prove"]}}}},
            "decisions": [{"name": "math", "rules": {"signal": "keyword:proof"},
                           "candidates": ["down", "up"],
                           "plugins": [{"type": "system_prompt", "mode": "inject",
                                        "text": "Be rigorous."}]}],
            "default": {"candidates": ["m-a"]},
        }
        with start_router(config, tmp_path) as gateway:
            oai = _client(gateway)
            raw = oai.responses.with_raw_response.create(model="auto",
                                                         input="Prove that 2 is prime.")
            assert raw.headers["x-routeyard-decision"] == "math"
            assert raw.headers["x-routeyard-signals"] == "keyword:proof"
            assert _served(raw) == "up"  # failed over from "down"
            assert backend.received[0]["messages"][0] == {"role": "system",
                                                          "content": "Be rigorous."}
            request_id = raw.headers["x-routeyard-request-id"]
            assert re.fullmatch(r"req_[0-9a-f]{25}", request_id)

            with oai.responses.with_streaming_response.create(
                    model="auto", input="Prove it again.", stream=True) as streamed:
                assert streamed.headers["x-routeyard-decision"] == "math"
                assert streamed.headers["x-routeyard-model"] == "up"
                body = streamed.read().decode()
            assert "event: response.completed" in body

            feedback = httpx.post(f"{gateway.base_url}/feedback",
                                  json={"request_id": request_id, "rating": 1},
                                  headers={"authorization": "Bearer k"})
            assert feedback.status_code == 200, feedback.text
            assert feedback.json()["decision"] == "math" and feedback.json()["model"] == "up"
            metrics = httpx.get(f"{gateway.url}/metrics").text
            assert re.search(r'routeyard_requests_total\{decision="math",model="up",'
                             r'status="ok"\} 2\.0', metrics), metrics

            named = oai.responses.with_raw_response.create(model="m-a", input="hello")
            assert named.headers["x-routeyard-decision"] == "direct" and _served(named) == "m-a"
            with pytest.raises(openai.NotFoundError) as caught:
                oai.responses.create(model="no-such-model", input="hi")
            assert caught.value.body["code"] == "model_not_found"  # type: ignore[index]
