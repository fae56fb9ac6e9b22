"""The load of bench/faults.py: an open-loop client (chat whole and streamed, feedback), its
outcomes and their summary, and the records read back from the store."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fault_procs import PROMPT, TOKENS


@dataclass
class Outcome:
    """One request, as the client saw it. Times in seconds from the load's start."""

    kind: str  # chat, chat_stream, feedback
    start: float
    end: float
    status: int  # 0: no HTTP answer
    failure: str | None  # None: a good answer
    request_id: str | None = None
    continued: bool = False

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def ms(self) -> float:
        return (self.end - self.start) * 1000


@dataclass
class Load:
    """The open-loop load: `rate` chat requests a second for `seconds`, `stream_share` of them
    streamed; with `feedback`, a rating for every good whole answer, sent at once."""

    rate: float
    seconds: float
    stream_share: float = 0.5
    feedback: bool = False
    model: str = "auto"
    max_tokens: int = TOKENS
    seed: int = 7
    warmup: int = 4  # requests sent one by one before the load (and not counted)


def _stream_failure(body: bytes) -> str | None:
    if b'data: {"error"' in body or b"event: error" in body:
        return "stream_error_event"
    if b"data: [DONE]" not in body:
        return "stream_cut"
    return None


class Client:
    """Sends the load's requests and keeps their outcomes; `clock` is the load's zero."""

    def __init__(self, session: aiohttp.ClientSession, load: Load, base: float) -> None:
        self.session = session
        self.load = load
        self.base = base
        self.outcomes: list[Outcome] = []
        self.url = ""

    def now(self) -> float:
        return time.monotonic() - self.base

    async def chat(self, stream: bool, on_first_chunk: Callable[[], None] | None = None
                   ) -> Outcome:
        kind = "chat_stream" if stream else "chat"
        body: dict[str, Any] = {"model": self.load.model, "max_tokens": self.load.max_tokens,
                                "messages": [{"role": "user", "content": PROMPT}]}
        if stream:
            body["stream"] = True
        start = self.now()
        request_id = None
        try:
            async with self.session.post(self.url + "/v1/chat/completions", json=body
                                         ) as response:
                request_id = response.headers.get("x-routeyard-request-id")
                if on_first_chunk is None or response.status != 200:
                    data = await response.read()
                else:
                    first = await response.content.readany()
                    on_first_chunk()
                    data = first + await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            outcome = Outcome(kind, start, self.now(), 0, type(error).__name__, request_id)
            self.outcomes.append(outcome)
            return outcome
        failure = None
        if status != 200:
            failure = f"http_{status}"
        elif stream:
            failure = _stream_failure(data)
        else:
            try:
                if not json.loads(data)["choices"][0]["message"]["content"]:
                    failure = "empty_answer"
            except (ValueError, KeyError, IndexError, TypeError):
                failure = "bad_answer"
        outcome = Outcome(kind, start, self.now(), status, failure, request_id,
                          continued=b"routeyard continued" in data)
        self.outcomes.append(outcome)
        return outcome

    async def feedback(self, request_id: str) -> None:
        start = self.now()
        try:
            async with self.session.post(self.url + "/v1/feedback", json={
                    "request_id": request_id, "rating": 4}) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            self.outcomes.append(Outcome("feedback", start, self.now(), 0,
                                         type(error).__name__, request_id))
            return
        self.outcomes.append(Outcome("feedback", start, self.now(), status,
                                     None if status == 200 else f"http_{status}", request_id))

    async def one(self, stream: bool) -> None:
        outcome = await self.chat(stream)
        if self.load.feedback and outcome.ok and not stream and outcome.request_id:
            await self.feedback(outcome.request_id)


Event = tuple[float, str, Callable[[], Any]]


def inline(action: Callable[[], Any]) -> Callable[[], Any]:
    """Mark an event's action as instant (a signal): it runs on the load's event loop, so
    that its time is exact; other actions run in a thread, not to stall the load."""
    def run() -> Any:
        return action()

    run.inline = True  # type: ignore[attr-defined]
    return run


async def drive(url: str, load: Load, events: list[Event] | None = None
                ) -> tuple[list[Outcome], dict[str, float]]:
    """The load against `url`; each event `(at_s, name, action)` runs (in a thread) at its
    time. Returns the outcomes and when each event ran (seconds from the start)."""
    rng = random.Random(load.seed)
    timeout = aiohttp.ClientTimeout(total=60)
    marks: dict[str, float] = {}
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(
            limit=1000, force_close=False)) as session:
        client = Client(session, load, time.monotonic())
        client.url = url
        for index in range(load.warmup):  # connections, lazy imports: not the fault's cost
            await client.chat(stream=bool(index % 2))
        client.outcomes.clear()
        client.base = time.monotonic()
        tasks: set[asyncio.Task[None]] = set()
        pending_events = sorted(events or [], key=lambda e: e[0])
        event_tasks = []

        async def run_event(name: str, action: Callable[[], Any]) -> None:
            marks[name] = client.now()
            if getattr(action, "inline", False):
                action()
            else:
                await asyncio.to_thread(action)
            marks[name + "_done"] = client.now()

        next_send = 0.0
        while (now := client.now()) < load.seconds:
            while pending_events and pending_events[0][0] <= now:
                _, name, action = pending_events.pop(0)
                event_tasks.append(asyncio.create_task(run_event(name, action)))
            if now < next_send:
                await asyncio.sleep(min(next_send - now, 0.01))
                continue
            task = asyncio.create_task(client.one(rng.random() < load.stream_share))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            next_send += rng.expovariate(load.rate)
        for _, name, action in pending_events:  # events due at or after the end
            event_tasks.append(asyncio.create_task(run_event(name, action)))
        if tasks:
            await asyncio.wait(tasks, timeout=90)
        if event_tasks:
            await asyncio.gather(*event_tasks)
    return client.outcomes, marks


# -- figures -------------------------------------------------------------------------------------


def _percentile(values: list[float], percent: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(percent / 100 * (len(ordered) - 1)))]


def summarise(outcomes: list[Outcome], window: tuple[float, float] | None = None
              ) -> dict[str, Any]:
    """The client's view: requests, failures by kind, latency (ms) overall and over the
    requests in flight at some point of `window`; feedback apart."""
    chats = [o for o in outcomes if o.kind != "feedback"]
    failures = Counter(o.failure for o in chats if not o.ok)
    latencies = [o.ms for o in chats]
    figures: dict[str, Any] = {
        "requests": len(chats),
        "streamed": sum(o.kind == "chat_stream" for o in chats),
        "failed": sum(failures.values()),
        "failures": dict(failures),
        "p50_ms": round(_percentile(latencies, 50), 1),
        "p99_ms": round(_percentile(latencies, 99), 1),
        "max_ms": round(max(latencies, default=0.0), 1),
        "over_1s": sum(ms > 1000 for ms in latencies),
        "streams_continued": sum(o.continued for o in chats),
        # The five slowest: which kind of request, when, and how it ended.
        "slowest": [{"kind": o.kind, "start_s": round(o.start, 2), "ms": round(o.ms, 1),
                     "failure": o.failure, "continued": o.continued}
                    for o in sorted(chats, key=lambda o: -o.ms)[:5]],
    }
    if window is not None:
        # In flight at some point of the fault: started before it ended, ended after it began.
        during = [o for o in chats if o.start < window[1] and o.end >= window[0]]
        figures["during"] = {
            "requests": len(during), "failed": sum(not o.ok for o in during),
            "p50_ms": round(_percentile([o.ms for o in during], 50), 1),
            "p99_ms": round(_percentile([o.ms for o in during], 99), 1),
            "max_ms": round(max((o.ms for o in during), default=0.0), 1)}
    feedback = [o for o in outcomes if o.kind == "feedback"]
    if feedback:
        figures["feedback"] = {
            "sent": len(feedback), "acknowledged": sum(o.ok for o in feedback),
            "refused": dict(Counter(o.failure for o in feedback if not o.ok)),
            "p99_ms": round(_percentile([o.ms for o in feedback], 99), 1),
            "max_ms": round(max(o.ms for o in feedback), 1)}
    return figures


def store_options(state: dict[str, Any]) -> dict[str, Any]:
    """`make_store` keywords for a router config's `state` section (read from outside)."""
    return {"path": state.get("path"), "redis_url": state.get("redis_url"),
            "postgres_url": state.get("postgres_url"),
            "key_prefix": state.get("key_prefix", "routeyard")}


async def _read_store(backend: str, options: dict[str, Any], request_ids: list[str],
                      feedback_ids: list[str]) -> dict[str, Any]:
    from routeyard.state import make_store

    store = make_store(backend, **options)
    await store.start()
    try:
        records = {}
        for request_id in request_ids:
            record = await store.get_decision(request_id)
            if record is not None:
                records[request_id] = record.status
        claims = [i for i in feedback_ids if await store.get_value(f"feedback:{i}") is not None]
    finally:
        await store.close()
    return {"records": records, "claims": claims}


def read_store(state: dict[str, Any], request_ids: list[str], feedback_ids: list[str],
               postgres_url: str | None = None) -> dict[str, Any]:
    """Which of `request_ids` have a decision record, with its status, and which of
    `feedback_ids` have their feedback claim, read through Routeyard's own store classes.
    `postgres_url`: read there rather than at the config's (a proxy's) address."""
    options = store_options(state)
    if postgres_url is not None:
        options["postgres_url"] = postgres_url
    return asyncio.run(_read_store(state["backend"], options, request_ids, feedback_ids))


def records_figures(outcomes: list[Outcome], found: dict[str, Any]) -> dict[str, Any]:
    """Decision records and feedback claims: expected (what the client saw) vs found."""
    expected = sorted({o.request_id for o in outcomes if o.kind != "feedback" and o.request_id})
    acked = sorted({o.request_id for o in outcomes
                    if o.kind == "feedback" and o.ok and o.request_id})
    records, claims = found["records"], set(found["claims"])
    figures: dict[str, Any] = {
        "records_expected": len(expected),
        "records_found": sum(i in records for i in expected),
        "records_lost": sum(i not in records for i in expected),
        "record_statuses": dict(Counter(records.values())),
    }
    if acked or any(o.kind == "feedback" for o in outcomes):
        figures.update(feedback_acknowledged=len(acked),
                       feedback_found=sum(i in claims for i in acked),
                       feedback_lost=sum(i not in claims for i in acked))
    return figures


# -- configs -------------------------------------------------------------------------------------


POOL = {"retry": {"max_retries": 1, "backoff_base_s": 0.01},
        "breaker": {"failure_threshold": 5, "cooldown_s": 2},
        "timeouts": {"per_try_s": 2, "total_s": 15, "stream_idle_s": 2},
        "health_check": {"interval_s": 1, "timeout_s": 0.5}}


