"""`routeyard serve` with `state.backend: postgres`, end to end: the real openai SDK against real
router processes, the simulator as the backend, and the real PostgreSQL (a database of the
test's own). Two replicas share one database: the decision log, feedback claims and a stored
Responses-API chain. With PostgreSQL down, chat still answers; and a schema newer than the
build stops `serve` from starting."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import openai
import pytest
import yaml
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator
from stores import POSTGRES_DOWN_URL, fresh_database, needs_postgres

from routeyard.state.pg_schema import migrations

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", "a", "--model", "b", "--ttft-ms", "0", "--tpot-ms", "0",
                         "--output-tokens", "3") as process:
        yield process


def config(sim: SimulatorProcess, postgres_url: str) -> dict[str, Any]:
    endpoint = [{"base_url": sim.base_url}]
    return {
        "models": [{"name": "a", "endpoints": endpoint}, {"name": "b", "endpoints": endpoint}],
        "default": {"name": "learning", "candidates": ["a", "b"], "algorithm": "ema",
                    "algorithm_options": {"epsilon": 0.0}},
        "pool": {"health_check": {"interval_s": 0}},
        "state": {"backend": "postgres", "postgres_url": postgres_url},
    }


def client(gateway: RouterProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0)


def feedback(gateway: RouterProcess, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}/feedback", json=body, timeout=30)


def query(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


@needs_postgres
def test_two_replicas_share_the_log_feedback_and_responses(
        sim: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory) -> None:
    with fresh_database() as url, \
            start_router(config(sim, url), tmp_path_factory.mktemp("one")) as one, \
            start_router(config(sim, url), tmp_path_factory.mktemp("two")) as two:
        # `serve` brought the empty database's schema up to date by itself.
        assert [r["version"] for r in query(url, "SELECT version FROM schema_migrations")] \
            == [migration.version for migration in migrations()]
        ready = httpx.get(f"{one.url}/readyz").json()
        assert ready["store"] == "postgres" and ready["store_ok"] is True

        raw = client(one).chat.completions.with_raw_response.create(model="auto", messages=HI)
        answer = raw.parse()
        request_id = raw.headers["x-routeyard-request-id"]
        assert answer.choices[0].message.content

        # The decision log: written behind (the flusher runs every 0.1 s), in PostgreSQL.
        deadline = time.monotonic() + 5
        while not (rows := query(url, "SELECT model, status, stream FROM decisions "
                                      "WHERE request_id = $1", request_id)):
            assert time.monotonic() < deadline, "the decision record never reached PostgreSQL"
            time.sleep(0.05)
        assert dict(rows[0]) == {"model": answer.model, "status": "ok", "stream": False}

        # Feedback: the claim is atomic in PostgreSQL, so the other replica refuses a second.
        first = feedback(one, {"request_id": request_id, "rating": 5})
        assert first.status_code == 200, first.text
        again = feedback(two, {"request_id": request_id, "score": 0.1})
        assert again.status_code == 409 and again.json()["error"]["code"] == "duplicate_feedback"
        claimed = query(url, "SELECT expires_at FROM kv WHERE key = $1",
                        f"feedback:{request_id}")
        assert len(claimed) == 1 and claimed[0]["expires_at"] > time.time()

        # A stored Responses-API chain: created on one replica, continued on the other.
        created = client(one).responses.create(model="a", input="my name is Ada")
        follow = client(two).responses.create(model="a", input="and again",
                                              previous_response_id=created.id)
        assert follow.previous_response_id == created.id
        items = client(one).responses.input_items.list(follow.id)
        assert [i.content[0].text for i in items.data] == ["and again"]
        stored = query(url, "SELECT key FROM kv WHERE key = ANY($1::text[]) ORDER BY key",
                       [f"response:{created.id}", f"response:{follow.id}"])
        assert len(stored) == 2


def test_chat_answers_while_postgres_is_down(sim: SimulatorProcess, tmp_path: Path) -> None:
    with start_router(config(sim, POSTGRES_DOWN_URL), tmp_path) as gateway:
        raw = client(gateway).chat.completions.with_raw_response.create(model="auto",
                                                                        messages=HI)
        assert raw.parse().choices[0].message.content  # the record waits in the buffer
        ready = httpx.get(f"{gateway.url}/readyz")
        assert ready.status_code == 200  # degraded, still in rotation
        assert ready.json()["status"] == "degraded" and ready.json()["store_ok"] is False
        # A response is answered, only not stored (the answer says so).
        response = client(gateway).responses.create(model="a", input="hi")
        assert response.output_text and response.store is False
        # Feedback needs the store: a clean 503 in the OpenAI error schema.
        refused = feedback(gateway, {"request_id": raw.headers["x-routeyard-request-id"],
                                     "rating": 5})
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "store_unavailable"
    assert "postgres store unavailable" in "".join(gateway.output)


@needs_postgres
def test_serve_refuses_a_schema_newer_than_it_knows(sim: SimulatorProcess,
                                                    tmp_path: Path) -> None:
    with fresh_database() as url:
        upgraded = subprocess.run([sys.executable, "-m", "routeyard", "db", "upgrade",
                                   "--postgres-url", url], capture_output=True, text=True,
                                  timeout=60)
        assert upgraded.returncode == 0, upgraded.stderr
        query(url, "INSERT INTO schema_migrations (version, name) VALUES (9999, 'future')")
        path = tmp_path / "routeyard.yaml"
        path.write_text(yaml.safe_dump(config(sim, url)))
        done = subprocess.run([sys.executable, "-m", "routeyard", "serve", "--config",
                               str(path), "--port", "0"], capture_output=True, text=True,
                              timeout=60, env={**os.environ, "XDG_STATE_HOME": str(tmp_path)})
        assert done.returncode != 0  # it stopped by itself, refusing to serve
        assert "schema is at version 9999, newer than this Routeyard knows" in done.stderr
        # In one line, before serving: no traceback, nothing left open.
        assert "Traceback" not in done.stderr and "Unclosed" not in done.stderr, done.stderr
        assert "listening" not in done.stdout
