"""Two `routeyard serve` replicas on one Redis: limits exact to the request under concurrent
load from three clients, a revoked key refused by the other replica within 5 s, and what
happens when Redis is down (fail_open, fail_closed)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from gateway_support import MESSAGES, Admin, chat, config
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator
from stores import DOWN_URL, REDIS_URL, needs_redis, unique_prefix

CLIENTS, PER_CLIENT = 3, 10


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", "large", "--model", "small", "--model", "slow",
                         "--ttft-ms", "0", "--tpot-ms", "0", "--output-tokens", "40") as process:
        process.set_profile("slow", ttft_ms=1000)  # every request of a burst is in flight
        yield process


def replica_config(sim: SimulatorProcess, state: dict[str, Any], **extra: Any
                   ) -> dict[str, Any]:
    found = config(sim, state=state, **extra)
    found["models"].append({"name": "slow", "pricing": found["models"][0]["pricing"],
                            "endpoints": [{"base_url": sim.base_url}]})
    return found


@pytest.fixture(scope="module")
def shared_state() -> Iterator[dict[str, Any]]:
    """One Redis store (keys, tenants) and its counters, under a prefix of its own."""
    with unique_prefix("replicas") as prefix:
        yield {"backend": "redis", "redis_url": REDIS_URL, "key_prefix": prefix}


@pytest.fixture(scope="module")
def replicas(sim: SimulatorProcess, shared_state: dict[str, Any],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RouterProcess]]:
    with ExitStack() as stack:
        yield [stack.enter_context(start_router(replica_config(sim, shared_state),
                                                tmp_path_factory.mktemp(f"replica{i}")))
               for i in range(2)]


def burst(replicas: list[RouterProcess], key: str, model: str = "slow") -> list[int]:
    """3 clients send 10 requests each, all at once, spread over both replicas."""
    codes: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS * PER_CLIENT)

    def one(client: int, number: int) -> None:
        start.wait()
        target = replicas[(client + number) % len(replicas)]
        response = chat(target.base_url, key, model=model)
        with lock:
            codes.append(response.status_code)

    threads = [threading.Thread(target=one, args=(c, n))
               for c in range(CLIENTS) for n in range(PER_CLIENT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return codes


@needs_redis
@pytest.mark.parametrize(("limits", "admitted"), [
    ({"rpm": 10}, 10),
    ({"max_parallel": 3}, 3),
    ({"tpm": 5 * 13}, 5),  # five prompts of 13 tokens, counted on the way in
    # Each request holds its expected $0.29 until it settles: 0, 0.29, 0.58 and 0.87 are
    # under $1, the fifth would start at 1.16.
    ({"budgets": [{"period": "day", "limit_usd": 1.0}]}, 4),
], ids=["rpm", "parallel", "tpm", "dollars"])
def test_limits_are_exact_across_replicas(replicas: list[RouterProcess], limits: dict[str, Any],
                                          admitted: int) -> None:
    key, _ = Admin(replicas[0]).create_key(name="burst", limits=limits)
    codes = burst(replicas, key)
    assert sorted(codes) == [200] * admitted + [429] * (CLIENTS * PER_CLIENT - admitted)


@needs_redis
def test_spend_is_shared(replicas: list[RouterProcess]) -> None:
    key, record = Admin(replicas[0]).create_key(name="shared-spend")
    for target in replicas:
        assert chat(target.base_url, key).status_code == 200
    for target in replicas:  # both replicas report both requests
        report = Admin(target).get("/admin/spend", period="day", key=record["prefix"]).json()
        assert report["keys"][0]["spend_usd"] == pytest.approx(2 * 0.26)


@needs_redis
def test_a_revoked_key_is_refused_everywhere_within_5_s(replicas: list[RouterProcess]) -> None:
    first, second = replicas
    key, record = Admin(first).create_key(name="to-revoke")
    assert chat(second.base_url, key).status_code == 200  # the second replica caches it
    Admin(first).post(f"/admin/keys/{record['id']}/revoke")
    revoked_at = time.monotonic()
    assert chat(first.base_url, key).status_code == 401  # the replica that revoked: at once
    while (status := chat(second.base_url, key).status_code) == 200:
        assert time.monotonic() - revoked_at < 5, "the other replica still accepts the key"
        time.sleep(0.05)
    assert status == 401
    assert chat(second.base_url, key).json()["error"]["code"] == "revoked_api_key"


@needs_redis
def test_a_replica_without_keys_in_its_config_still_requires_them(
        sim: SimulatorProcess, replicas: list[RouterProcess], shared_state: dict[str, Any],
        tmp_path: Path) -> None:
    """Once a virtual key exists in the shared store, no replica serves without a key, even
    one whose own config names none."""
    key, _ = Admin(replicas[0]).create_key(name="exists")
    bare = replica_config(sim, shared_state, server={"admin_keys": []})
    with start_router(bare, tmp_path) as third:
        response = httpx.post(f"{third.base_url}/chat/completions",
                              json={"model": "auto", "messages": MESSAGES})
        assert response.status_code == 401
        assert chat(third.base_url, key).status_code == 200


@pytest.mark.parametrize("policy", ["fail_open", "fail_closed"])
def test_redis_down(sim: SimulatorProcess, tmp_path: Path, policy: str) -> None:
    """Keys in SQLite, counters in a Redis that is not there."""
    state = {"backend": "sqlite", "path": str(tmp_path / "state.db"), "redis_url": DOWN_URL}
    with start_router(replica_config(sim, state, gateway={"on_redis_down": policy}),
                      tmp_path) as router:
        admin = Admin(router)
        limited, _ = admin.create_key(name="limited", limits={"rpm": 1})
        unlimited, _ = admin.create_key(name="unlimited")
        codes = [chat(router.base_url, limited).status_code for _ in range(3)]
        assert chat(router.base_url, unlimited).status_code == 200  # nothing to check
        if policy == "fail_open":
            assert codes == [200, 200, 200]  # let through, uncounted
            assert "Redis for limits is unreachable" in "".join(router.output)
            return
        assert codes == [503, 503, 503]
        refused = chat(router.base_url, limited)
        assert refused.json()["error"]["code"] == "rate_limiter_unavailable"
        assert refused.headers["retry-after"] == "1"
        client = anthropic.Anthropic(base_url=router.url, api_key=limited, max_retries=0)
        with pytest.raises(anthropic.APIStatusError) as caught:
            client.messages.create(model="auto", max_tokens=8, messages=MESSAGES)
        assert caught.value.status_code == 503
        body: Any = caught.value.body
        assert body["type"] == "error" and "Limits cannot be checked" in \
            body["error"]["message"]
        with pytest.raises(openai.InternalServerError):
            openai.OpenAI(base_url=router.base_url, api_key=limited, max_retries=0
                          ).chat.completions.create(model="auto", messages=MESSAGES)
