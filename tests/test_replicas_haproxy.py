"""Several replicas, one truth (issue 13): three `routeyard serve` replicas behind a real HAProxy
(roundrobin, health checks on /readyz, redispatch) on one Redis (limit and spend counters, the
semantic cache) and one PostgreSQL database of the test's own (keys, learned state, feedback
claims, stored responses, the decision log); the simulator as backend; the openai and anthropic
SDKs as clients, in three threads, through HAProxy. Limits are exact to the request; learned
state, spend, cache, Responses-API chains and the decision log are shared; a replica SIGKILLed
mid-load loses no acknowledged feedback and no flushed decision record.

"Flushed": the decision log is written behind. `record_decision` queues a record and a
background task writes the queue to PostgreSQL every 0.1 s, so a SIGKILL loses what is still
queued, by design. A record counts as flushed once it was seen committed in PostgreSQL before
the kill: all of those must be there after it. And every request the killed replica answered
more than FLUSH_BOUND_S before the kill must have its record there (the loss is bounded by the
last moments' buffer). Feedback is written through (its claim, then the learned state) before
its 2xx: no acknowledged feedback may be missing from either.

The SIGKILL test runs last: it leaves the module's cluster with two replicas.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import asyncpg
import httpx
import openai
import orjson
import pytest
import redis
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator
from stores import REDIS_URL, fresh_database, run_async, unique_prefix

from routeyard.simulator.text import estimate_prompt_tokens
from routeyard.tokens import count_prompt_tokens

pytestmark = [pytest.mark.needs_redis, pytest.mark.needs_postgres]  # see tests/stores.py

HAPROXY = "/usr/sbin/haproxy"
ADMIN_KEY = "sk-admin-haproxy-0001"
CLIENTS = 3
NAMES = ("r0", "r1", "r2")  # HAProxy's server names, sent back in x-served-by
PRICE = {"input_per_mtok": 10_000.0, "output_per_mtok": 20_000.0}  # the model `large`
LIMITS_PROMPT = [{"role": "user", "content": "Tell me about rate limits please."}]
# Its offline count (what a hard budget reserves) is also the simulator's (what is spent).
BUDGET_PROMPT = [{"role": "user", "content": "Keep the budget exact across three replicas please"}]
FLUSH_BOUND_S = 1.0  # ten flush intervals of the decision log's writer

HAPROXY_CONFIG = """\
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    # Above /readyz's own bound (its store ping gives up after 2 s, answering "degraded").
    timeout check 3s
    retries 3
    option redispatch 1
frontend routeyard
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    http-response set-header x-served-by %s
    default-server inter 200ms fall 2 rise 1
{servers}
"""


@dataclass
class Outcome:
    status: int
    served_by: str
    retry_after: str | None = None
    code: str | None = None  # the OpenAI error schema's code, for refusals


@dataclass
class Cluster:
    url: str  # HAProxy
    replicas: dict[str, RouterProcess]
    database: str
    prefix: str

    def key(self, **limits: Any) -> tuple[str, str]:
        """A new virtual key with `limits`, made through HAProxy: (the key, its prefix)."""
        made = httpx.post(f"{self.url}/admin/keys", json={"name": "t", "limits": limits},
                          headers=bearer(ADMIN_KEY), timeout=10)
        assert made.status_code == 201, made.text
        return made.json()["key"], made.json()["prefix"]

    def sdk(self, key: str, url: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{url or self.url}/v1", api_key=key, max_retries=0)


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def query(url: str, sql: str, *args: object) -> list[Any]:
    async def run() -> list[Any]:
        conn = await asyncpg.connect(url)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return run_async(run)


def logged(cluster: Cluster, ids: list[str] | set[str]) -> dict[str, str]:
    """request id → status, of those of `ids` whose decision record is in PostgreSQL."""
    rows = query(cluster.database, "SELECT request_id, status FROM decisions "
                                   "WHERE request_id = ANY($1::text[])", list(ids))
    return {row["request_id"]: row["status"] for row in rows}


def learned(cluster: Cluster) -> dict[str, Any]:
    rows = query(cluster.database, "SELECT value FROM kv WHERE key = 'online:learning'")
    return orjson.loads(rows[0]["value"])["state"] if rows else {"counts": {}, "values": {}}


def wait_until(check: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def burst(client: Callable[[int], Callable[[], Any]], per_client: int) -> list[Outcome]:
    """Each of three client threads makes its call (`client(number)`: an SDK call
    `with_raw_response`) `per_client` times, one after another."""

    def run(number: int) -> list[Outcome]:
        make, outcomes = client(number), []
        for _ in range(per_client):
            try:
                raw = make()
            except (openai.APIStatusError, anthropic.APIStatusError) as error:
                headers = error.response.headers
                body = error.response.json() if "json" in headers.get("content-type", "") \
                    else {}
                outcomes.append(Outcome(error.status_code, headers.get("x-served-by", ""),
                                        headers.get("retry-after"),
                                        (body.get("error") or {}).get("code")))
            else:
                raw.parse()
                outcomes.append(Outcome(raw.status_code, raw.headers["x-served-by"]))
        return outcomes

    with ThreadPoolExecutor(CLIENTS) as pool:
        return [o for outcomes in pool.map(run, range(CLIENTS)) for o in outcomes]


def chat_call(client: openai.OpenAI, model: str, messages: list[dict[str, str]],
              max_tokens: int) -> Callable[[], Any]:
    chat = client.chat.completions.with_raw_response
    return lambda: chat.create(model=model, messages=messages,  # type: ignore[arg-type]
                               max_tokens=max_tokens)


# -- the cluster ------------------------------------------------------------------------------


def replica_config(sim: SimulatorProcess, database: str, prefix: str) -> dict[str, Any]:
    endpoint = [{"base_url": sim.base_url}]
    return {
        "server": {"admin_keys": [ADMIN_KEY], "watch_config_s": 0},
        "models": [{"name": "a", "endpoints": endpoint}, {"name": "b", "endpoints": endpoint},
                   {"name": "large", "pricing": PRICE, "endpoints": endpoint}],
        "decisions": [{"name": "cached", "when": {"keywords_any": ["cacheable"]},
                       "candidates": ["b"],
                       "plugins": [{"type": "semantic_cache", "backend": "redis",
                                    "redis_url": REDIS_URL, "key_prefix": prefix}]}],
        # Both start at 0.5 (a tie); one rating of 5 makes its model the choice everywhere.
        "default": {"name": "learning", "candidates": ["a", "b"], "algorithm": "ema",
                    "algorithm_options": {"epsilon": 0.0, "prior": 0.5}},
        "pool": {"health_check": {"interval_s": 0}},
        "state": {"backend": "postgres", "postgres_url": database, "redis_url": REDIS_URL,
                  "key_prefix": prefix},
    }


@contextlib.contextmanager
def start_haproxy(binary: str, replicas: dict[str, RouterProcess], tmp: Path) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    servers = "\n".join(f"    server {name} {replica.url.removeprefix('http://')} check"
                        for name, replica in replicas.items())
    config, log = tmp / "haproxy.cfg", tmp / "haproxy.log"
    config.write_text(HAPROXY_CONFIG.format(port=url.rsplit(":", 1)[1], servers=servers))
    with log.open("w") as out:
        process = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=out,
                                   stderr=subprocess.STDOUT)
    seen: set[str] = set()

    def all_up() -> bool:
        assert process.poll() is None, log.read_text()
        with contextlib.suppress(httpx.TransportError):
            seen.add(httpx.get(f"{url}/readyz", timeout=3).headers.get("x-served-by", ""))
        return seen >= set(replicas)

    try:
        wait_until(all_up, "HAProxy to serve from every replica", timeout=10)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if shutil.which(HAPROXY) is None:  # CI installs it: there, its absence is a failure
        if os.environ.get("ROUTEYARD_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{HAPROXY} is required (ROUTEYARD_REQUIRE_SERVICES=1): "
                        "apt-get install haproxy", pytrace=False)
        pytest.skip(f"HAProxy is not installed ({HAPROXY}, Debian package haproxy)")
    with contextlib.ExitStack() as stack:
        sim = stack.enter_context(start_simulator(
            "--model", "a", "--model", "b", "--model", "large", "--ttft-ms", "0",
            "--tpot-ms", "0", "--output-tokens", "40"))  # never fewer than 8 tokens
        database = stack.enter_context(fresh_database())
        prefix = stack.enter_context(unique_prefix("haproxy"))
        config = replica_config(sim, database, prefix)
        replicas = {name: stack.enter_context(start_router(
            dict(config), tmp_path_factory.mktemp(name))) for name in NAMES}
        url = stack.enter_context(start_haproxy(HAPROXY, replicas,
                                                tmp_path_factory.mktemp("haproxy")))
        yield Cluster(url, replicas, database, prefix)


# -- limits -----------------------------------------------------------------------------------


def test_rpm_is_exact_across_replicas(cluster: Cluster) -> None:
    """RPM 10; 30 requests from three clients, on three surfaces: exactly 10 answered."""
    key, _ = cluster.key(rpm=10)

    def client(number: int) -> Callable[[], Any]:
        if number == 0:
            return chat_call(cluster.sdk(key), "a", LIMITS_PROMPT, 3)
        if number == 1:
            messages = anthropic.Anthropic(base_url=cluster.url, api_key=key,
                                           max_retries=0).messages.with_raw_response
            return lambda: messages.create(model="a", max_tokens=3,
                                           messages=LIMITS_PROMPT)  # type: ignore[arg-type]
        responses = cluster.sdk(key).responses.with_raw_response
        return lambda: responses.create(model="a", input=LIMITS_PROMPT[0]["content"],
                                        store=False)

    outcomes = burst(client, per_client=10)
    assert sorted(o.status for o in outcomes) == [200] * 10 + [429] * 20
    assert {o.served_by for o in outcomes} == set(NAMES)
    assert all(float(o.retry_after or 0) > 0 for o in outcomes if o.status == 429)


def test_tpm_is_exact_across_replicas(cluster: Cluster) -> None:
    counted = count_prompt_tokens(LIMITS_PROMPT)  # what admission counts
    backend, _ = estimate_prompt_tokens(LIMITS_PROMPT)  # the simulator's usage
    answer = counted - backend
    assert answer >= 1, "the prompt no longer fits this test's arithmetic"
    # An admitted request holds `counted` tokens. When it settles, its prompt is corrected to
    # `backend` and its `answer` tokens are added: the same sum, so the outcome does not depend
    # on which requests have settled. Five fit under six prompts less one token.
    key, _ = cluster.key(tpm=6 * counted - 1)
    outcomes = burst(lambda _: chat_call(cluster.sdk(key), "a", LIMITS_PROMPT, answer),
                     per_client=10)
    assert sorted(o.status for o in outcomes) == [200] * 5 + [429] * 25
    assert {o.served_by for o in outcomes} == set(NAMES)
    assert {o.code for o in outcomes if o.status == 429} == {"rate_limit_exceeded"}
    assert all(float(o.retry_after or 0) > 0 for o in outcomes if o.status == 429)


def test_a_hard_budget_refuses_once_spent_across_replicas(cluster: Cluster) -> None:
    prompt = count_prompt_tokens(BUDGET_PROMPT)
    assert estimate_prompt_tokens(BUDGET_PROMPT)[0] == prompt, "reserved would differ from spent"
    # Answers are cut at max_tokens=8: $0.14 + $0.16 = $0.30 a request, reserved on admission
    # and spent on settlement (the same amount). Admission needs spend plus reservations under
    # the limit: ten requests use the $3 exactly, the eleventh finds it spent.
    cost = (prompt * PRICE["input_per_mtok"] + 8 * PRICE["output_per_mtok"]) / 1e6
    limit = 3.0
    admitted = math.ceil((limit - 1e-9) / cost)
    assert admitted == 10
    key, key_prefix = cluster.key(budgets=[{"period": "day", "limit_usd": limit}])
    outcomes = burst(lambda _: chat_call(cluster.sdk(key), "large", BUDGET_PROMPT, 8),
                     per_client=6)
    assert sorted(o.status for o in outcomes) == [200] * admitted + [429] * (18 - admitted)
    assert {o.code for o in outcomes if o.status == 429} == {"budget_exceeded"}
    assert {o.served_by for o in outcomes if o.status == 200} == set(NAMES)
    for name, replica in cluster.replicas.items():  # spend read through each replica agrees
        def spent(replica: RouterProcess = replica) -> bool:
            report = httpx.get(f"{replica.url}/admin/spend", headers=bearer(ADMIN_KEY),
                               params={"period": "day", "key": key_prefix}).json()
            return report["keys"][0]["spend_usd"] == pytest.approx(limit)

        wait_until(spent, f"the spend read through {name}")
        refused = httpx.post(f"{replica.base_url}/chat/completions", headers=bearer(key),
                             json={"model": "large", "messages": BUDGET_PROMPT, "max_tokens": 8})
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "budget_exceeded"


# -- shared state -----------------------------------------------------------------------------


def test_learned_state_is_shared(cluster: Cluster) -> None:
    """Feedback through one replica on a request another served: the learned state in
    PostgreSQL has it at once, and every replica routes by it (each reloads it every 5 s)."""
    key, _ = cluster.key()
    raw = cluster.sdk(key).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hello"}], max_tokens=3)
    served, model = raw.headers["x-served-by"], raw.headers["x-routeyard-model"]
    request_id = raw.headers["x-routeyard-request-id"]
    other = cluster.replicas[next(n for n in NAMES if n != served)]

    def rated() -> bool:  # the other replica finds the request once its record is flushed
        answer = httpx.post(f"{other.base_url}/feedback", headers=bearer(key),
                            json={"request_id": request_id, "rating": 5})
        assert answer.status_code in (200, 404), answer.text
        return answer.status_code == 200

    wait_until(rated, "feedback on another replica's request")
    assert learned(cluster) == {"counts": {model: 1}, "values": {model: 1.0}}
    for name, replica in cluster.replicas.items():
        def routes_by_it(replica: RouterProcess = replica) -> bool:
            route = httpx.post(f"{replica.base_url}/route", headers=bearer(key),
                               json={"prompt": "hello"}).json()
            return route["model"] == model and "ema 1.000 over 1" in route["reason"]

        wait_until(routes_by_it, f"{name} to route by the feedback", timeout=8)


def test_cache_sessions_and_decision_log_are_shared(cluster: Cluster) -> None:
    key, _ = cluster.key()
    client = cluster.sdk(key)
    ids: list[str] = []
    served: list[str] = []

    def chat() -> str:
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "Is this cacheable?"}])
        ids.append(raw.headers["x-routeyard-request-id"])
        served.append(raw.headers["x-served-by"])
        return raw.headers["x-routeyard-cache"]

    # The semantic cache: filled through one replica, a hit through each of the others.
    assert chat() == "miss"
    with contextlib.closing(redis.Redis.from_url(REDIS_URL)) as cache:
        wait_until(lambda: list(cache.scan_iter(match=f"{cluster.prefix}:cache:*:ids")),
                   "the cache entry in Redis")
    assert [chat(), chat()] == ["hit", "hit"]
    assert sorted(served) == sorted(NAMES)  # roundrobin: one request on each replica

    # A Responses-API chain: each turn on another replica, continuing the turn before.
    responses: list[Any] = []
    for turn in ("My name is Ada.", "What is my name?", "Say it again."):
        previous = {"previous_response_id": responses[-1].id} if responses else {}
        raw = client.responses.with_raw_response.create(model="b", input=turn, **previous)
        responses.append(raw.parse())
        ids.append(raw.headers["x-routeyard-request-id"])
        served.append(raw.headers["x-served-by"])
    assert sorted(served[3:]) == sorted(NAMES)
    assert responses[-1].previous_response_id == responses[1].id
    stored = query(cluster.database, "SELECT value FROM kv WHERE key = $1",
                   f"response:{responses[-1].id}")
    conversation = orjson.loads(stored[0]["value"])["conversation"]
    assert [m["role"] for m in conversation] == ["user", "assistant"] * 3
    assert conversation[0]["content"] == "My name is Ada."
    for replica in cluster.replicas.values():  # the first turn, read through each replica
        first = cluster.sdk(key, replica.url).responses.retrieve(responses[0].id)
        assert first.output_text == responses[0].output_text

    # The decision log: the records of all three replicas, in PostgreSQL, read through each.
    wait_until(lambda: len(logged(cluster, ids)) == len(ids), "every decision record")
    found = logged(cluster, ids)
    assert [found[i] for i in ids] == ["ok", "cache_hit", "cache_hit", "ok", "ok", "ok"]
    for replica in cluster.replicas.values():
        assert [httpx.get(f"{replica.url}/admin/decisions/{i}", headers=bearer(ADMIN_KEY)
                          ).json()["status"] for i in ids] == [found[i] for i in ids]


# -- a replica killed mid-load ----------------------------------------------------------------


def test_a_replica_killed_mid_load_loses_nothing_acknowledged(cluster: Cluster) -> None:
    key, _ = cluster.key()
    victim_name = NAMES[1]
    before = sum(learned(cluster)["counts"].values())
    answered: list[tuple[str, str, float]] = []  # request id, served by, answered at
    sent: dict[str, float] = {}  # request id → sent at
    failed: list[tuple[float, int]] = []  # chat: sent at, status (0: no HTTP answer)
    acked: list[str] = []  # request ids whose feedback was answered 2xx
    unacked: list[str] = []  # ... and not
    stop = threading.Event()

    def feedback(http: httpx.Client, request_id: str, rating: int) -> None:
        deadline, status = time.monotonic() + 2, 0
        while True:
            with contextlib.suppress(httpx.TransportError):
                status = http.post("/v1/feedback", json={"request_id": request_id,
                                                         "rating": rating}).status_code
            # 404: the replica that served it has not flushed its record yet (or never will:
            # killed). Nothing else is retried: a retry of a claimed one would be a 409.
            if status != 404 or time.monotonic() > deadline or stop.is_set():
                break
            time.sleep(0.02)
        (acked if 200 <= status < 300 else unacked).append(request_id)

    def client() -> None:
        sdk = cluster.sdk(key)
        with httpx.Client(base_url=cluster.url, headers=bearer(key), timeout=10) as http:
            while not stop.is_set():
                sent_at = time.monotonic()
                try:
                    raw = sdk.chat.completions.with_raw_response.create(
                        model="auto", messages=[{"role": "user", "content": "load"}],
                        max_tokens=3)
                except (openai.APIStatusError, openai.APIConnectionError) as error:
                    failed.append((sent_at, getattr(error, "status_code", 0)))
                    continue
                request_id = raw.headers["x-routeyard-request-id"]
                sent[request_id] = sent_at
                answered.append((request_id, raw.headers["x-served-by"], time.monotonic()))
                feedback(http, request_id, 1 + len(answered) % 5)

    with ThreadPoolExecutor(CLIENTS) as pool:
        running = [pool.submit(client) for _ in range(CLIENTS)]
        try:
            time.sleep(2.0)
            flushed = {r["request_id"] for r in query(cluster.database,
                                                      "SELECT request_id FROM decisions")}
            killed_at = time.monotonic()
            cluster.replicas[victim_name].process.send_signal(signal.SIGKILL)
            cluster.replicas[victim_name].process.wait(timeout=5)
            time.sleep(3.0)  # longer than a lease on the learned state the victim may hold
        finally:
            stop.set()
        for done in running:
            done.result()  # a client's own failure

    # Sent after the kill: one the victim answered just before it can arrive after it, on a
    # busy machine.
    after = [served for i, served, _ in answered if sent[i] > killed_at]
    survivors = {i for i, served, _ in answered if served != victim_name}
    wait_until(lambda: len(logged(cluster, survivors)) == len(survivors),
               "the surviving replicas' records")
    present = set(logged(cluster, [i for i, _, _ in answered]))
    victims = {i: at for i, served, at in answered if served == victim_name}
    claimed = {r["key"] for r in query(cluster.database, "SELECT key FROM kv WHERE key = "
                                       "ANY($1::text[])", [f"feedback:{i}" for i in acked])}
    updates = sum(learned(cluster)["counts"].values()) - before
    print(f"answered {len(answered)} ({len(after)} after the kill), failed {failed}; feedback "
          f"acknowledged {len(acked)}, not {len(unacked)}, learned updates {updates}; the "
          f"victim's records lost: {len(set(victims) - present)} of {len(victims)}")

    # Clients kept working through HAProxy: at most the requests in flight at the kill failed.
    assert set(after) == set(NAMES) - {victim_name} and len(after) >= 10
    assert len(failed) <= CLIENTS, failed
    assert all(sent_at < killed_at + 1.0 for sent_at, _ in failed), failed
    # No acknowledged feedback lost: each has its claim, and its update in the learned state.
    assert len(acked) >= 20
    assert claimed == {f"feedback:{i}" for i in acked}
    assert len(acked) <= updates <= len(acked) + len(unacked)
    # No flushed decision record lost; the victim lost at most its last moments' buffer.
    assert flushed & {i for i, _, _ in answered} <= present
    old = {i for i, at in victims.items() if at < killed_at - FLUSH_BOUND_S}
    assert old and old <= present
