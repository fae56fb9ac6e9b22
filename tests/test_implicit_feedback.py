"""Implicit feedback (serving/implicit.py): the detector against a real store and feedback
service, the stores' implicit flag on every backend (and their migrations), the offline
commands' `--implicit`, and the Router's wiring (off by default)."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from simproc import SimulatorProcess, start_simulator
from stores import DOWN_URL, fresh_database

from routeyard import Router
from routeyard.catalog import build_config
from routeyard.config.sessions import ImplicitFeedbackConfig
from routeyard.eval.policy import events_of, read_log, with_implicit
from routeyard.metrics import Metrics
from routeyard.serving.feedback import FeedbackBody, FeedbackService
from routeyard.serving.implicit import (
    MAX_RECENT,
    ImplicitFeedback,
    Recent,
    caller_of,
    decode_recent,
    encode_recent,
)
from routeyard.serving.planner import RoutePlan
from routeyard.signals.base import RequestContext
from routeyard.signals.embedder import load_embedder
from routeyard.state import DecisionRecord, MemoryStore, RedisStore, SQLiteStore, Store
from routeyard.state.query import DecisionQuery, StatsQuery
from routeyard.tasks import TaskSet

PROMPT = "Write a haiku about the sea"
AGAIN = "write a haiku about the sea."
OTHER = "Explain how TCP congestion control works"
T0 = 1_800_000_000.0


def body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}], **extra}


def plan_of(request_id: str, text: str, decision: str = "chat", **extra: Any) -> RoutePlan:
    return RoutePlan(request_id=request_id, started=0.0, decision=decision, models=[],
                     reason="test", context=RequestContext(body(text, **extra)))


def record_of(request_id: str, at: float, *, key_id: str | None = "ry-alice",
              decision: str = "chat", model: str | None = "a", status: str = "ok",
              stream: bool = False, completion_tokens: int = 40) -> DecisionRecord:
    return DecisionRecord(request_id=request_id, time=at, decision=decision, model=model,
                          endpoint="e", latency_ms=10.0, prompt_tokens=5,
                          completion_tokens=completion_tokens, cost_usd=0.001, status=status,
                          stream=stream, key_id=key_id, detail={"selection": {}})


class Detector:
    """An ImplicitFeedback on a real store and FeedbackService; `finish` plays the
    Accountant (log the record, tell the observer) and waits for the background work."""

    def __init__(self, store: Store, **config: Any) -> None:
        self.store = store
        self.metrics = Metrics()
        self.tasks = TaskSet()
        self.feedback = FeedbackService(store, {})
        settings = ImplicitFeedbackConfig(**{"regeneration": True, "abandoned_streams": True,
                                             "regeneration_similarity": 0.95, **config})
        self.detector = ImplicitFeedback(settings, self.feedback, store, self.metrics,
                                         self.tasks.spawn, load_embedder("builtin"))

    async def finish(self, plan: RoutePlan, record: DecisionRecord) -> None:
        self.store.record_decision(record)
        self.detector.observe(plan, record, None)
        await self.tasks.drain()

    async def feedback_of(self, request_id: str) -> tuple[float | None, bool]:
        await self.store.flush()
        record = await self.store.get_decision(request_id)
        assert record is not None
        return record.feedback, record.feedback_implicit

    def counted(self, kind: str, decision: str = "chat") -> float:
        value = self.metrics.registry.get_sample_value(
            "routeyard_implicit_feedback_total", {"kind": kind, "decision": decision})
        return value or 0.0


# -- the detector ------------------------------------------------------------------------------


async def test_a_regeneration_marks_the_earlier_answer(store: Store) -> None:
    d = Detector(store, reward=0.1)
    await d.finish(plan_of("r1", PROMPT), record_of("r1", T0))
    await d.finish(plan_of("r2", AGAIN), record_of("r2", T0 + 30))
    assert await d.feedback_of("r1") == (pytest.approx(0.1), True)
    assert await d.feedback_of("r2") == (None, False)  # the newer answer is not judged yet
    assert d.counted("regeneration") == 1
    # A third try marks the second only: the first was judged when the second came.
    await d.finish(plan_of("r3", PROMPT), record_of("r3", T0 + 60))
    assert await d.feedback_of("r2") == (pytest.approx(0.1), True)
    assert d.counted("regeneration") == 2


async def test_a_different_prompt_is_no_regeneration() -> None:
    d = Detector(MemoryStore())
    await d.finish(plan_of("r1", PROMPT), record_of("r1", T0))
    await d.finish(plan_of("r2", OTHER), record_of("r2", T0 + 5))
    assert await d.feedback_of("r1") == (None, False)
    assert d.counted("regeneration") == 0


async def test_the_window_expires() -> None:
    d = Detector(MemoryStore(), regeneration_window_s=60)
    await d.finish(plan_of("r1", PROMPT), record_of("r1", T0))
    await d.finish(plan_of("r2", PROMPT), record_of("r2", T0 + 61))
    assert await d.feedback_of("r1") == (None, False)
    await d.finish(plan_of("r3", PROMPT), record_of("r3", T0 + 100))  # 39 s after r2
    assert await d.feedback_of("r2") == (0.0, True)


async def test_other_callers_decisions_and_anonymous_requests_do_not_count() -> None:
    d = Detector(MemoryStore())
    await d.finish(plan_of("r1", PROMPT), record_of("r1", T0, key_id="ry-alice"))
    await d.finish(plan_of("r2", PROMPT), record_of("r2", T0 + 1, key_id="ry-bob"))
    await d.finish(plan_of("r3", PROMPT, decision="code"),
                   record_of("r3", T0 + 2, key_id="ry-alice", decision="code"))
    # An open server: nobody to tell apart, unless the body names its end user.
    await d.finish(plan_of("r4", PROMPT), record_of("r4", T0 + 3, key_id="anonymous"))
    await d.finish(plan_of("r5", PROMPT), record_of("r5", T0 + 4, key_id="anonymous"))
    for request_id in ("r1", "r2", "r3", "r4"):
        assert await d.feedback_of(request_id) == (None, False)
    await d.finish(plan_of("r6", PROMPT, user="u-7"), record_of("r6", T0 + 5, key_id=None))
    await d.finish(plan_of("r7", AGAIN, metadata={"user_id": "u-7"}),
                   record_of("r7", T0 + 6, key_id=None))
    assert await d.feedback_of("r6") == (0.0, True)


async def test_repeated_embeddings_are_no_regeneration() -> None:
    d = Detector(MemoryStore())
    for i in range(2):
        record = record_of(f"m{i}", T0 + i)
        record.surface = "embeddings"
        await d.finish(plan_of(f"m{i}", PROMPT), record)
    assert await d.feedback_of("m0") == (None, False)


async def test_unanswered_requests_take_no_feedback_but_may_regenerate() -> None:
    d = Detector(MemoryStore())
    await d.finish(plan_of("r1", PROMPT), record_of("r1", T0, model=None,
                                                    status="upstream_failed"))
    await d.finish(plan_of("r2", PROMPT), record_of("r2", T0 + 1, status="cache_hit"))
    await d.finish(plan_of("r3", PROMPT), record_of("r3", T0 + 2))
    await d.finish(plan_of("r4", PROMPT), record_of("r4", T0 + 3, model=None,
                                                    status="upstream_failed"))
    assert [await d.feedback_of(r) for r in ("r1", "r2", "r3")] == [(None, False)] * 2 + [
        (0.0, True)]


async def test_the_window_is_bounded() -> None:
    store = MemoryStore()
    d = Detector(store)
    for i in range(MAX_RECENT + 5):
        await d.finish(plan_of(f"r{i}", f"{OTHER} number {'x' * i}"),
                       record_of(f"r{i}", T0 + i))
    [(_, raw)] = await store.scan_values("implicit:recent:")
    assert len(decode_recent(raw, 256)) == MAX_RECENT


async def test_an_abandoned_stream_is_negative_feedback() -> None:
    d = Detector(MemoryStore(), abandoned_max_tokens=10, regeneration=False)
    await d.finish(plan_of("s1", PROMPT), record_of("s1", T0, status="client_disconnect",
                                                    stream=True, completion_tokens=3))
    await d.finish(plan_of("s2", OTHER), record_of("s2", T0 + 100, status="client_disconnect",
                                                   stream=True, completion_tokens=10))
    await d.finish(plan_of("s3", OTHER + " now"), record_of("s3", T0 + 200, stream=True,
                                                            completion_tokens=3))
    assert await d.feedback_of("s1") == (0.0, True)
    assert await d.feedback_of("s2") == (None, False)  # stayed for enough of the answer
    assert await d.feedback_of("s3") == (None, False)  # read to the end
    assert d.counted("abandoned_stream") == 1


async def test_explicit_feedback_wins_whichever_comes_first(store: Store) -> None:
    d = Detector(store)
    # Explicit first: the regeneration leaves it alone.
    await d.finish(plan_of("e1", PROMPT), record_of("e1", T0))
    await store.flush()
    await d.feedback.submit(FeedbackBody(request_id="e1", rating=5))
    await d.finish(plan_of("e2", PROMPT), record_of("e2", T0 + 1))
    assert await d.feedback_of("e1") == (1.0, False)
    assert d.counted("regeneration") == 0
    # Implicit first: explicit feedback still counts, and replaces it.
    await d.finish(plan_of("e3", PROMPT), record_of("e3", T0 + 2))
    assert await d.feedback_of("e2") == (0.0, True)
    result = await d.feedback.submit(FeedbackBody(request_id="e2", rating=4))
    assert result["reward"] == 0.75
    assert await d.feedback_of("e2") == (0.75, False)
    # And a later implicit signal for it (an abandon reported late) changes nothing.
    assert not await d.feedback.submit_implicit("e2", "chat", "a", 0.0)
    assert await d.feedback_of("e2") == (0.75, False)


async def test_a_store_that_is_down_skips_the_request(caplog: pytest.LogCaptureFixture
                                                      ) -> None:
    store = RedisStore(DOWN_URL, connect_timeout=0.2)
    try:
        d = Detector(store)
        plan = plan_of("r1", PROMPT)
        with caplog.at_level(logging.WARNING, "routeyard.feedback"):
            d.detector.observe(plan, record_of("r1", T0), None)
            d.detector.observe(plan, record_of("r1", T0, status="client_disconnect",
                                               stream=True, completion_tokens=1), None)
            await d.tasks.drain()  # no exception escapes the background tasks
        assert "regeneration of r1 not checked" in caplog.text
        assert "implicit feedback (abandoned_stream) for r1 not counted" in caplog.text
    finally:
        await store.close()


def test_callers() -> None:
    rec = record_of("r", T0)
    assert caller_of(rec, body("x")) == "key:ry-alice"
    assert caller_of(rec, body("x", user="u1")) == "key:ry-alice|user:u1"
    assert caller_of(record_of("r", T0, key_id="anonymous"), body("x")) is None
    assert caller_of(record_of("r", T0, key_id="library"), body("x", user="u1")) == "user:u1"
    tenant = DecisionRecord(**{**rec.to_dict(), "key_id": None, "tenant": "acme"})
    assert caller_of(tenant, body("x")) == "tenant:acme"


def test_the_window_value_round_trips_and_rejects_what_it_did_not_write() -> None:
    vector = load_embedder("builtin").embed_one(PROMPT)
    entries = [Recent("r1", T0, "a", vector), Recent("r2", T0 + 1, "b", vector)]
    back = decode_recent(encode_recent(entries), 256)
    assert [(e.request_id, e.time, e.model) for e in back] == [("r1", T0, "a"),
                                                               ("r2", T0 + 1, "b")]
    assert float(back[0].vector @ vector) > 0.999
    assert decode_recent(encode_recent(entries), 384) == []  # another embedding model
    assert decode_recent(b"garbage", 256) == []
    assert decode_recent(encode_recent([]), 256) == []


# -- the stores ------------------------------------------------------------------------------


async def test_stores_keep_the_implicit_flag_and_explicit_feedback_wins(store: Store) -> None:
    for i in range(3):
        store.record_decision(record_of(f"f{i}", T0 + i))
    await store.flush()
    assert await store.record_feedback("f0", 0.0, implicit=True)
    assert not await store.record_feedback("f0", 0.2, implicit=True)  # one per request
    assert await store.record_feedback("f1", 0.5)
    assert not await store.record_feedback("f1", 0.0, implicit=True)  # explicit stays
    assert await store.record_feedback("f2", 0.0, implicit=True)
    assert await store.record_feedback("f2", 1.0)  # explicit replaces implicit
    page = await store.query_decisions(DecisionQuery(limit=10))
    assert {r.request_id: (r.feedback, r.feedback_implicit) for r in page.records} == {
        "f0": (0.0, True), "f1": (0.5, False), "f2": (1.0, False)}
    stats = await store.decision_stats(StatsQuery(since=T0 - 3600, until=T0 + 3600))
    assert stats[None].feedback_count == 3
    assert stats[None].feedback_sum == pytest.approx(1.5)


async def test_redis_feedback_of_an_earlier_version_reads_as_explicit(prefix: str) -> None:
    store = RedisStore(key_prefix=prefix)
    try:
        store.record_decision(record_of("old", T0))
        await store.flush()
        await store.client.set(f"{prefix}:feedback:old", "0.25")  # as an earlier version
        record = await store.get_decision("old")
        assert record is not None and (record.feedback, record.feedback_implicit) == (0.25,
                                                                                      False)
        assert not await store.record_feedback("old", 0.0, implicit=True)
        # And what this version writes, an earlier one still reads as a score.
        assert await store.record_feedback("new", 0.0, implicit=True)
        raw = await store.client.get(f"{prefix}:feedback:new")
        assert raw.startswith(b"+") and float(raw) == 0.0
    finally:
        await store.close()


async def _sqlite_before_implicit(path: Path) -> None:
    """A decision log as the version before implicit feedback wrote it."""
    store = SQLiteStore(path)
    await store.start()
    store.record_decision(record_of("old", T0))
    await store.record_feedback("old", 0.75)
    await store.close()
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE decision_feedback DROP COLUMN implicit")
    conn.commit()
    conn.close()


async def test_an_earlier_sqlite_log_is_read_and_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    await _sqlite_before_implicit(path)
    # evaluate-policy reads it read-only, without upgrading it.
    [record] = read_log(str(path))
    assert (record.feedback, record.feedback_implicit) == (0.75, False)
    store = SQLiteStore(path)
    await store.start()
    try:
        found = await store.get_decision("old")
        assert found is not None and (found.feedback, found.feedback_implicit) == (0.75, False)
        assert not await store.record_feedback("old", 0.0, implicit=True)
        store.record_decision(record_of("new", T0 + 1))
        assert await store.record_feedback("new", 0.0, implicit=True)
        found = await store.get_decision("new")
        assert found is not None and found.feedback_implicit
    finally:
        await store.close()


@pytest.mark.needs_postgres
async def test_postgres_upgrade_keeps_earlier_feedback_explicit() -> None:
    from routeyard.state import pg_schema
    from routeyard.state.postgres import PostgresStore

    with fresh_database() as url:
        conn = await pg_schema.connect(url)
        try:
            await conn.execute(pg_schema._LEDGER)
            for migration in pg_schema.migrations()[:2]:  # the schema before this feature
                await conn.execute(migration.sql)
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES "
                                   "($1, $2)", migration.version, migration.name)
            await conn.execute("INSERT INTO decision_feedback (request_id, score, time) "
                               "VALUES ('old', 0.75, $1)", T0)
        finally:
            await conn.close()
        store = PostgresStore(url)
        await store.start()  # upgrades
        try:
            store.record_decision(record_of("old", T0))
            await store.flush()
            found = await store.get_decision("old")
            assert found is not None
            assert (found.feedback, found.feedback_implicit) == (0.75, False)
            assert not await store.record_feedback("old", 0.0, implicit=True)
        finally:
            await store.close()


# -- the offline commands ----------------------------------------------------------------------


def test_exclude_leaves_implicit_feedback_out_of_events() -> None:
    records = [DecisionRecord(**{**record_of(f"p{i}", T0 + i).to_dict(),
                                 "detail": {"selection": {"probability": 1.0},
                                            "candidates": ["a"]},
                                 "feedback": 0.0 if i else 1.0, "feedback_implicit": bool(i)})
               for i in range(3)]
    included = events_of(with_implicit(records, "include"))
    assert [(e.quality, e.implicit) for e in included] == [(1.0, False), (0.0, True),
                                                           (0.0, True)]
    excluded = events_of(with_implicit(records, "exclude"))
    assert [e.quality for e in excluded] == [1.0, None, None]  # still events, for cost


# -- the Router ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", "a", "--model", "b", "--ttft-ms", "0",
                         "--output-tokens", "3") as process:
        yield process


def _config(sim: SimulatorProcess, **extra: Any) -> dict[str, Any]:
    endpoint = [{"base_url": sim.base_url}]
    return {
        "models": [{"name": "a", "endpoints": endpoint}, {"name": "b", "endpoints": endpoint}],
        "default": {"name": "learning", "candidates": ["a", "b"], "algorithm": "ema",
                    "algorithm_options": {"epsilon": 0.0}},
        "pool": {"health_check": {"interval_s": 0}},
        **extra,
    }


async def _ask_twice(router: Router) -> None:
    """A prompt and its regeneration, as a library user (the `user` field names the
    caller); then every background write done."""
    for text in (PROMPT, AGAIN):
        await router.chat(body(text, user="u-1"))
    await router.background.drain()
    await router.store.flush()


async def test_off_by_default_nothing_is_observed(sim: SimulatorProcess) -> None:
    async with Router(build_config(_config(sim)), store=MemoryStore()) as router:
        assert router.accountant.observers == []
        await _ask_twice(router)
        records = [r for r in await router.store.recent_decisions() if r.feedback is not None]
        assert records == []


async def test_the_router_counts_a_regeneration_and_its_learner_learns(
        sim: SimulatorProcess) -> None:
    config = _config(sim, feedback={"implicit": {"regeneration": True,
                                                 "regeneration_similarity": 0.95}})
    async with Router(build_config(config), store=MemoryStore()) as router:
        learner = router.feedback.learners["learning"]
        before = learner.get_state()
        started = time.time()
        await _ask_twice(router)
        marked = [r for r in await router.store.recent_decisions() if r.feedback is not None]
        assert len(marked) == 1 and marked[0].feedback_implicit and marked[0].feedback == 0.0
        assert marked[0].time >= started - 1
        assert learner.get_state() != before  # it learned from the implicit feedback
