"""The decision log's query API end to end: a real `routeyard serve` with the simulator behind
it, traffic sent with the openai SDK, and /v1/decisions, /v1/decisions/{id} and /v1/stats
read with the SDK too (its generic `get`), so errors are checked in OpenAI's schema as a client
parses them. Covers what each record explains, feedback joined, pages, stats and savings,
roles (401, 403, viewer, admin), bad input (400), and log_content with pii_redact."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from gateway_support import ADMIN_KEY, SMALL_PRICE, USER_KEY, Admin, config, openai_client
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator

QUESTION = [{"role": "user", "content": "Mail jane@example.com about the plan, please."}]
EXPLORE = [{"role": "user", "content": "explore something new for me"}]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", "large", "--model", "small", "--ttft-ms", "5",
                         "--tpot-ms", "0", "--output-tokens", "40") as process:
        yield process


def _config(sim: SimulatorProcess, **extra: Any) -> dict[str, Any]:
    found = config(sim, server={"api_keys": [USER_KEY]}, **extra)
    found["models"].append({"name": "broken", "pricing": {"input_per_mtok": 1.0},
                            "endpoints": [{"base_url": "http://127.0.0.1:9/v1"}]})
    found["decisions"] = [{
        "name": "explore", "when": {"keywords_any": ["explore"]},
        "candidates": ["small", "large"], "algorithm": "ema",
        "algorithm_options": {"epsilon": 0.5, "lambda": 0.3}}, {
        "name": "failover", "when": {"keywords_any": ["failover"]},
        "candidates": ["broken", "small"]}]
    return found


@pytest.fixture(scope="module")
def router(sim: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RouterProcess]:
    with start_router(_config(sim), tmp_path_factory.mktemp("decisions")) as process:
        yield process


@pytest.fixture(scope="module")
def traffic(router: RouterProcess) -> dict[str, Any]:
    """Known traffic: 4 whole and 2 streamed answers on `everyday` from a virtual key of the
    tenant `acme`, 3 on `explore` from the static user key, and feedback on two of them."""
    admin = Admin(router)
    admin.create_tenant(id="acme")
    user_key, user = admin.create_key(name="app", tenant="acme")
    viewer_key, _ = admin.create_key(name="dash", roles=["viewer"])
    client = openai_client(router, user_key)
    ids: list[str] = []
    for _ in range(4):
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=QUESTION, max_tokens=8)
        ids.append(raw.headers["x-routeyard-request-id"])
    for _ in range(2):
        with client.chat.completions.with_streaming_response.create(
                model="auto", messages=QUESTION, max_tokens=8, stream=True) as response:
            ids.append(response.headers["x-routeyard-request-id"])
            for _chunk in response.iter_lines():
                pass
    static = openai_client(router, USER_KEY)
    for _ in range(3):
        static.chat.completions.create(model="auto", messages=EXPLORE, max_tokens=8)
    feedback = httpx.post(f"{router.base_url}/feedback", json={"request_id": ids[0],
                          "rating": 5}, headers={"authorization": f"Bearer {user_key}"})
    assert feedback.status_code == 200, feedback.text
    httpx.post(f"{router.base_url}/feedback", json={"request_id": ids[4], "score": 0.5},
               headers={"authorization": f"Bearer {user_key}"}).raise_for_status()
    viewer = openai_client(router, viewer_key)
    deadline = time.monotonic() + 10
    while len(get(viewer, "/decisions", limit=100)["data"]) < 9:
        assert time.monotonic() < deadline, "the records were not written"
        time.sleep(0.05)
    return {"ids": ids, "key": user["prefix"], "viewer": viewer, "user_key": user_key}


def get(client: openai.OpenAI, path: str, **params: Any) -> Any:
    return client.get(path, cast_to=object, options={"params": params})


def test_a_record_explains_the_request(traffic: dict[str, Any]) -> None:
    viewer = traffic["viewer"]
    record = get(viewer, f"/decisions/{traffic['ids'][0]}")
    assert record["object"] == "routeyard.decision"
    assert record["surface"] == "chat" and record["tenant"] == "acme"
    assert record["key_id"] == traffic["key"]
    assert record["decision"] == "everyday" and record["model"] == "large"
    assert record["status"] == "ok" and record["feedback"] == 1.0
    assert record["prompt_tokens"] > 0 and record["cost_usd"] > 0
    assert record["dearest_cost_usd"] == pytest.approx(record["cost_usd"])  # large is dearest
    detail = record["detail"]
    assert detail["candidates"] == ["large", "small"]
    assert detail["selection"]["algorithm"] == "static"
    assert detail["selection"]["probability"] == 1.0
    assert detail["attempts"] == [{"model": "large", "endpoint": "large#0", "outcome": "ok",
                                   "error": None}]
    assert "content" not in detail  # log_content is off
    assert traffic["user_key"] not in str(record) and USER_KEY not in str(record)
    streamed = get(viewer, f"/decisions/{traffic['ids'][4]}")
    assert streamed["stream"] is True and streamed["ttft_ms"] >= 5
    assert streamed["feedback"] == 0.5


def test_explored_choices_carry_their_probability(traffic: dict[str, Any]) -> None:
    page = get(traffic["viewer"], "/decisions", decision="explore")
    assert len(page["data"]) == 3
    for record in page["data"]:
        selection = record["detail"]["selection"]
        assert selection["algorithm"] == "ema" and selection["lambda"] == 0.3
        # ε = 0.5 over two candidates: 0.25 for the non-greedy one, 0.75 for the greedy one.
        assert selection["probability"] in (0.25, 0.75)
        assert set(selection["scores"]) == {"small", "large"}
        assert record["detail"]["signals"]["keyword:@explore"] > 0
        assert record["key_id"].startswith("static:") and record["tenant"] is None


def test_a_failover_shows_every_attempt_and_its_error(router: RouterProcess,
                                                      traffic: dict[str, Any]) -> None:
    raw = openai_client(router, USER_KEY).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "failover now"}], max_tokens=8)
    assert raw.headers["x-routeyard-model"] == "small"
    request_id = raw.headers["x-routeyard-request-id"]
    deadline = time.monotonic() + 10
    while True:
        try:
            record = get(traffic["viewer"], f"/decisions/{request_id}")
            break
        except openai.NotFoundError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    failed, *rest = record["detail"]["attempts"]
    assert (failed["model"], failed["outcome"]) == ("broken", "connect")
    assert failed["error"]
    assert rest[-1] == {"model": "small", "endpoint": "small#0", "outcome": "ok", "error": None}
    assert record["model"] == "small" and record["endpoint"] == "small#0"


def test_filters_and_pages(traffic: dict[str, Any]) -> None:
    viewer = traffic["viewer"]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 4, "tenant": "acme"}
        if cursor:
            params["cursor"] = cursor
        page = get(viewer, "/decisions", **params)
        seen += [r["request_id"] for r in page["data"]]
        cursor = page["next_cursor"]
        assert page["has_more"] == (cursor is not None)
        if cursor is None:
            break
    assert sorted(seen) == sorted(traffic["ids"]) and len(seen) == 6
    with_feedback = get(viewer, "/decisions", has_feedback="true")["data"]
    assert {r["request_id"] for r in with_feedback} == {traffic["ids"][0], traffic["ids"][4]}
    assert len(get(viewer, "/decisions", key=traffic["key"], surface="chat")["data"]) == 6
    assert get(viewer, "/decisions", since="2000-01-01", until="2000-01-02")["data"] == []


def test_stats(traffic: dict[str, Any]) -> None:
    viewer = traffic["viewer"]
    stats = get(viewer, "/stats", group_by="tenant")
    acme = next(row for row in stats["data"] if row["tenant"] == "acme")
    assert acme["requests"] == 6 and acme["errors"] == 0 and acme["error_rate"] == 0
    assert acme["ttft_ms"]["count"] == 2 and acme["ttft_ms"]["p50"] >= 5
    assert acme["feedback"] == {"count": 2, "mean": 0.75}
    assert acme["latency_ms"]["p50"] > 0 and acme["latency_ms"]["p95"] >= acme[
        "latency_ms"]["p50"]
    assert acme["savings_usd"] == pytest.approx(0, abs=1e-9)  # every answer from the dearest
    total = stats["total"]["requests"]  # 9, and 10 once the failover test ran
    assert total in (9, 10) and sum(row["requests"] for row in stats["data"]) == total
    assert stats["savings_baseline"] == "dearest_candidate"
    by_model = get(viewer, "/stats", group_by="model", decision="explore")
    assert sum(row["requests"] for row in by_model["data"]) == 3
    hours = get(viewer, "/stats", group_by="hour")["data"]
    assert sum(row["requests"] for row in hours) == total and hours[0]["hour"].endswith(":00Z")


@pytest.mark.parametrize(("path", "params", "param"), [
    ("/decisions", {"since": "yesterday"}, "since"),
    ("/decisions", {"since": "2026-01-02", "until": "2026-01-01"}, "since"),
    ("/decisions", {"cursor": "bm90LWEtY3Vyc29y"}, "cursor"),
    ("/decisions", {"status": "fine"}, "status"),
    ("/decisions", {"limit": "0"}, "limit"),
    ("/decisions", {"has_feedback": "maybe"}, "has_feedback"),
    ("/decisions", {"colour": "blue"}, "colour"),
    ("/stats", {"group_by": "colour"}, "group_by"),
    ("/stats", {"until": "-5"}, "until"),
])
def test_bad_input_is_a_400(traffic: dict[str, Any], path: str, params: dict[str, Any],
                            param: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        get(traffic["viewer"], path, **params)
    body: Any = caught.value.body
    assert body["param"] == param and body["type"] == "invalid_request_error"


def test_roles(router: RouterProcess, traffic: dict[str, Any]) -> None:
    for path in ("/decisions", "/stats", f"/decisions/{traffic['ids'][0]}"):
        # No key at all (the SDK always sends one): 401 in OpenAI's schema.
        refused = httpx.get(router.base_url + path)
        assert refused.status_code == 401
        assert refused.json()["error"]["type"] == "authentication_error"
        with pytest.raises(openai.PermissionDeniedError):
            get(openai_client(router, traffic["user_key"]), path)
        get(openai_client(router, ADMIN_KEY), path)  # admin includes viewer
    with pytest.raises(openai.NotFoundError):
        get(traffic["viewer"], "/decisions/req_nope")


def test_an_open_server_keeps_its_log_closed(sim: SimulatorProcess,
                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    cfg = config(sim)
    cfg["server"] = {"watch_config_s": 0}  # no key anywhere
    with start_router(cfg, tmp_path_factory.mktemp("open")) as process:
        client = openai.OpenAI(base_url=process.base_url, api_key="x", max_retries=0)
        client.chat.completions.create(model="auto", messages=QUESTION, max_tokens=8)
        with pytest.raises(openai.AuthenticationError) as caught:
            get(client, "/stats")
        assert "server.admin_keys" in str(caught.value)


def test_log_content_keeps_the_redacted_prompt_and_answer(
        sim: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory) -> None:
    cfg = _config(sim, state={"log_content": True, "savings_reference": "small"})
    cfg["default"]["plugins"] = [{"type": "pii_redact"}]
    with start_router(cfg, tmp_path_factory.mktemp("content")) as process:
        raw = openai_client(process, USER_KEY).chat.completions.with_raw_response.create(
            model="auto", messages=QUESTION, max_tokens=8)
        request_id = raw.headers["x-routeyard-request-id"]
        admin = openai_client(process, ADMIN_KEY)
        deadline = time.monotonic() + 10
        while True:
            try:
                record = get(admin, f"/decisions/{request_id}")
                break
            except openai.NotFoundError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        content = record["detail"]["content"]
        prompt = content["prompt"][0]["content"]
        assert "jane@example.com" not in prompt and "<EMAIL_ADDRESS_1>" in prompt
        assert isinstance(content["answer"], str) and content["answer"]
        assert record["detail"]["plugins"] == ["pii_redact"]
        # Savings against the reference model: its price of the same tokens.
        stats = get(admin, "/stats")
        assert stats["savings_baseline"] == {"reference_model": "small"}
        total = stats["total"]
        small = (total["prompt_tokens"] * SMALL_PRICE["input_per_mtok"]
                 + total["completion_tokens"] * SMALL_PRICE["output_per_mtok"]) / 1e6
        assert total["baseline_cost_usd"] == pytest.approx(small)
        assert total["savings_usd"] == pytest.approx(small - total["cost_usd"]) and small > 0
        assert total["savings_usd"] < 0  # the traffic went to `large`, dearer than `small`


def test_state_settings_are_checked() -> None:
    from routeyard.catalog import build_config
    from routeyard.config import ConfigError

    models = [{"name": "m", "endpoints": [{"base_url": "http://h/v1"}]}]
    config_ok = build_config({"models": models, "state": {
        "retention_days": 30, "log_content": True, "savings_reference": "m"}})
    assert config_ok.state.retention_days == 30 and config_ok.state.log_content
    for state, where in (({"savings_reference": "nope"}, "state.savings_reference"),
                         ({"retention_days": 0}, "state.retention_days"),
                         ({"log_content": "yes please"}, "state.log_content")):
        with pytest.raises(ConfigError) as caught:
            build_config({"models": models, "state": state})
        assert where in str(caught.value)


def test_records_with_numpy_numbers_render_as_json() -> None:
    """A memory store hands back the detail's own objects: the read APIs still answer JSON."""
    import numpy as np

    from routeyard.api import admin, decisions

    data = {"detail": {"signals": {"domain:code": np.float64(0.25)}, "n": np.int64(2)}}
    for render in (admin._json, decisions.json_response):
        response = render(data)
        assert response.status_code == 200
        assert orjson.loads(response.body) == {"detail": {"signals": {"domain:code": 0.25},
                                                          "n": 2}}
