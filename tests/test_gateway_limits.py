"""Rate limits and budgets of virtual keys over HTTP, with the openai and anthropic SDKs against
a real `routeyard serve` and the simulator, once with in-process counters (the embedded
default) and once with Redis counters.

Every answer has 8 completion tokens (max_tokens=8); the prompt counts 13 tokens here and 10
at the simulator, so a request uses 18 tokens once its answer is in, and `large` costs $0.26.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from gateway_support import (
    ANSWER_TOKENS,
    BACKEND_PROMPT_TOKENS,
    COUNTED_PROMPT_TOKENS,
    MESSAGES,
    USER_KEY,
    Admin,
    chat,
    config,
    large_cost,
    openai_client,
)
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator
from stores import REDIS_URL, needs_redis, unique_prefix

USED = BACKEND_PROMPT_TOKENS + ANSWER_TOKENS  # tokens one request uses in the end
SLOW_MS = 1500


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", "large", "--model", "small", "--model", "slow",
                         "--model", "drip", "--model", "text-embed", "--ttft-ms", "0",
                         "--tpot-ms", "0", "--output-tokens", "40") as process:
        process.set_profile("slow", ttft_ms=SLOW_MS)
        process.set_profile("drip", tpot_ms=200)  # a stream of 8 tokens takes 1.6 s
        yield process


@pytest.fixture(scope="module", params=["local", pytest.param("redis", marks=needs_redis)])
def router(request: pytest.FixtureRequest, sim: SimulatorProcess,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    tmp = tmp_path_factory.mktemp(f"limits-{request.param}")
    cfg = config(sim, server={"api_keys": [USER_KEY]},
                 gateway={"static_key_limits": {"rpm": 2}})
    cfg["models"] += [
        {"name": "slow", "endpoints": [{"base_url": sim.base_url}]},
        {"name": "drip", "endpoints": [{"base_url": sim.base_url}]},
        {"name": "text-embed", "kind": "embedding", "pricing": {"input_per_mtok": 1000.0},
         "endpoints": [{"base_url": sim.base_url}]}]
    with unique_prefix("limits") as prefix:
        state: dict[str, Any] = {"backend": "sqlite", "path": str(tmp / "state.db")}
        if request.param == "redis":
            state |= {"redis_url": REDIS_URL, "key_prefix": prefix}
        with start_router({**cfg, "state": state}, tmp) as process:
            yield process


@pytest.fixture
def admin(router: RouterProcess) -> Admin:
    return Admin(router)


def ask(router: RouterProcess, key: str, model: str = "auto", **extra: Any) -> Any:
    return openai_client(router, key).chat.completions.create(
        model=model, messages=MESSAGES, max_tokens=ANSWER_TOKENS, **extra)


def refusal(router: RouterProcess, key: str, **extra: Any) -> openai.RateLimitError:
    with pytest.raises(openai.RateLimitError) as caught:
        ask(router, key, **extra)
    return caught.value


def at_once(count: int, call: Any) -> list[Any]:
    """`call(i)` from `count` threads at the same moment: each result or exception."""
    results: list[Any] = [None] * count
    start = threading.Barrier(count)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = call(i)
        except Exception as error:
            results[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_rpm_refuses_in_both_error_schemas(router: RouterProcess, admin: Admin) -> None:
    key, record = admin.create_key(name="rpm", limits={"rpm": 2})
    assert ask(router, key).choices and ask(router, key).choices
    error = refusal(router, key)
    assert error.status_code == 429
    assert error.body == {"message": error.body["message"], "type": "rate_limit_error",  # type: ignore[index]
                          "param": None, "code": "rate_limit_exceeded"}
    assert f"key {record['prefix']}" in error.message and "2 requests per minute" in error.message
    assert 55 <= int(error.response.headers["retry-after"]) <= 60
    assert 55_000 <= int(error.response.headers["retry-after-ms"]) <= 60_000

    messages = anthropic.Anthropic(base_url=router.url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as caught:
        messages.messages.create(model="auto", max_tokens=8, messages=MESSAGES)
    body: Any = caught.value.body
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert "requests per minute" in body["error"]["message"]
    assert int(caught.value.response.headers["retry-after"]) >= 55


def test_the_sdk_waits_out_retry_after_and_succeeds(router: RouterProcess, admin: Admin
                                                    ) -> None:
    """max_parallel 1: a second request, refused while the first runs, is retried by the
    openai SDK after retry-after (1 s) and then served."""
    key, _ = admin.create_key(name="retrying", limits={"max_parallel": 1})
    client = openai.OpenAI(base_url=router.base_url, api_key=key, max_retries=3)
    results = at_once(2, lambda i: client.chat.completions.create(
        model="slow", messages=MESSAGES, max_tokens=ANSWER_TOKENS))
    assert all(isinstance(r, openai.types.chat.ChatCompletion) for r in results), results


def test_concurrent_requests_are_limited(router: RouterProcess, admin: Admin) -> None:
    key, _ = admin.create_key(name="parallel", limits={"max_parallel": 2})
    results = at_once(5, lambda i: chat(router.base_url, key, model="slow"))
    assert sorted(r.status_code for r in results) == [200, 200, 429, 429, 429]
    refused = next(r for r in results if r.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert "2 concurrent requests" in refused.json()["error"]["message"]
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["x-routeyard-decision"] == "direct"  # planned, then refused
    assert ask(router, key).choices  # the slots came back when the answers ended


def test_streams_hold_their_slot_until_they_end(router: RouterProcess, admin: Admin) -> None:
    key, _ = admin.create_key(name="stream-slot", limits={"max_parallel": 1})
    stream = openai_client(router, key).chat.completions.create(
        model="drip", messages=MESSAGES, max_tokens=ANSWER_TOKENS, stream=True)
    first = next(iter(stream))
    assert first.choices is not None
    assert chat(router.base_url, key).status_code == 429  # the stream is still open
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert chat(router.base_url, key).status_code == 200


def test_tpm_counts_prompts_in_and_answers_out(router: RouterProcess, admin: Admin) -> None:
    """TPM 30: the first request's 13 prompt tokens fit; once its answer is in it has used 18
    (10 prompt tokens by the backend's count, 8 answered), and 18 + 13 > 30."""
    key, _ = admin.create_key(name="tpm", limits={"tpm": 30})
    assert ask(router, key).usage.completion_tokens == ANSWER_TOKENS
    error = refusal(router, key)
    assert f"({USED} used in the last 60 s, {COUNTED_PROMPT_TOKENS} requested)" in error.message

    streamed, _ = admin.create_key(name="tpm-stream", limits={"tpm": 30})
    chunks = list(ask(router, streamed, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == ANSWER_TOKENS
    assert f"({USED} used" in refusal(router, streamed).message


def test_tpm_counts_the_prompt_on_the_way_in(router: RouterProcess, admin: Admin) -> None:
    """TPM 20, two slow requests at once: the second is refused while the first runs."""
    key, _ = admin.create_key(name="tpm-in", limits={"tpm": 20})
    results = at_once(2, lambda i: chat(router.base_url, key, model="slow"))
    assert sorted(r.status_code for r in results) == [200, 429]


def test_a_hard_budget_refuses_once_spent(router: RouterProcess, admin: Admin) -> None:
    key, record = admin.create_key(name="budget", limits={"budgets": [
        {"period": "day", "limit_usd": 0.6, "mode": "hard"}]})
    for _ in range(3):  # $0, $0.26, $0.52 spent before each: all under $0.60
        assert ask(router, key).model == "large"
    client = openai.OpenAI(base_url=router.base_url, api_key=key, max_retries=2)
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="auto", messages=MESSAGES, max_tokens=8)
    assert time.monotonic() - started < 0.5  # x-should-retry: false, so no SDK retries
    error = caught.value
    assert error.code == "budget_exceeded"
    assert f"${3 * large_cost():.4f} of $0.6" in error.message and "day budget" in error.message
    assert error.response.headers["x-should-retry"] == "false"
    assert 0 < int(error.response.headers["retry-after"]) <= 86400  # at the next UTC day
    spend = admin.get("/admin/spend", period="day", key=record["prefix"]).json()
    assert spend["keys"][0]["spend_usd"] == pytest.approx(3 * large_cost())
    assert spend["keys"][0]["budgets"] == [{"period": "day", "mode": "hard", "limit_usd": 0.6,
                                            "remaining_usd": 0.0}]


def test_a_soft_budget_steers_to_cheaper_models(router: RouterProcess, admin: Admin) -> None:
    """$5 a day, soft: `auto` answers with large until about an eighth is spent, then with
    small (1/100 of the price), and never refuses."""
    key, record = admin.create_key(name="soft", limits={"budgets": [
        {"period": "day", "limit_usd": 5.0, "mode": "soft"}]})
    plain, _ = admin.create_key(name="no-budget")
    models = [ask(router, key).model for _ in range(6)]
    assert models[0] == "large" and models[-1] == "small", models
    switched = models.index("small")
    assert 1 < switched < 5 and set(models[switched:]) == {"small"}, models
    dry = httpx.post(f"{router.base_url}/route", json={"prompt": "hi"},
                     headers={"authorization": f"Bearer {key}"}).json()
    assert dry["model"] == "small" and f"soft key:{record['id']} day budget" in dry["reason"]
    assert ask(router, plain).model == "large"  # other keys are not steered


def test_tenant_limits_hold_for_all_its_keys_together(router: RouterProcess, admin: Admin
                                                      ) -> None:
    tenant = f"team-{time.monotonic_ns() % 10**9}"
    admin.create_tenant(id=tenant, limits={"rpm": 3})
    first, _ = admin.create_key(name="a", tenant=tenant, limits={"rpm": 100})
    second, _ = admin.create_key(name="b", tenant=tenant)
    codes = [chat(router.base_url, key).status_code for key in (first, second) * 3]
    assert codes == [200, 200, 200, 429, 429, 429]
    refused = chat(router.base_url, first).json()["error"]["message"]
    assert f"tenant '{tenant}'" in refused
    # Raising the tenant's limit takes effect on this replica at once.
    admin.patch(f"/admin/tenants/{tenant}", {"limits": {"rpm": 10}})
    deadline = time.monotonic() + 5
    while chat(router.base_url, second).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_allowed_models_and_decisions(router: RouterProcess, admin: Admin) -> None:
    routed_only, _ = admin.create_key(name="auto-only", models=["auto"])
    assert ask(router, routed_only).choices
    with pytest.raises(openai.PermissionDeniedError) as caught:
        ask(router, routed_only, model="small")
    assert caught.value.code == "model_not_allowed"
    small_only, _ = admin.create_key(name="small-only", models=["sm*"])
    assert ask(router, small_only, model="small").model == "small"

    elsewhere, _ = admin.create_key(name="other-decision", decisions=["coding"])
    with pytest.raises(openai.PermissionDeniedError) as caught:
        ask(router, elsewhere)
    assert caught.value.code == "decision_not_allowed"
    assert "'everyday'" in caught.value.message


def test_static_keys_get_the_static_limits(router: RouterProcess) -> None:
    codes = [chat(router.base_url, USER_KEY).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_embeddings_count_too(router: RouterProcess, admin: Admin) -> None:
    key, record = admin.create_key(name="embedder", limits={"rpm": 1})
    client = openai_client(router, key)
    assert client.embeddings.create(model="text-embed", input="hello").data
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(model="text-embed", input="hello")
    spend = admin.get("/admin/spend", period="day", key=record["prefix"]).json()
    assert spend["keys"][0]["spend_usd"] > 0


def test_spend_per_key_and_tenant(router: RouterProcess, admin: Admin) -> None:
    tenant = f"spend-{time.monotonic_ns() % 10**9}"
    admin.create_tenant(id=tenant, limits={"budgets": [{"period": "month", "limit_usd": 10}]})
    one, first = admin.create_key(name="one", tenant=tenant)
    two, second = admin.create_key(name="two", tenant=tenant)
    ask(router, one)
    ask(router, two)
    ask(router, two)
    report = admin.get("/admin/spend", tenant=tenant).json()  # the month by default
    assert report["period"] == "month" and len(report["period_id"]) == 7
    by_key = {row["id"]: row["spend_usd"] for row in report["keys"]}
    assert by_key == {first["prefix"]: pytest.approx(large_cost()),
                      second["prefix"]: pytest.approx(2 * large_cost())}
    assert report["tenants"] == [{"id": tenant, "name": None,
                                  "spend_usd": pytest.approx(3 * large_cost()),
                                  "budgets": [{"period": "month", "mode": "hard",
                                               "limit_usd": 10.0,
                                               "remaining_usd": pytest.approx(
                                                   10 - 3 * large_cost())}]}]
    assert report["total_usd"] == pytest.approx(3 * large_cost())
    past = admin.get("/admin/spend", period="day", at="2001-01-01", tenant=tenant).json()
    assert past["period_id"] == "2001-01-01" and past["total_usd"] == 0
