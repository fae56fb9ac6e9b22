"""Faults under load: what a client sees, and what the store keeps, when things break.

    python bench/faults.py                          # every scenario, ~5 minutes
    python bench/faults.py --only hang --only kill9_sqlite
    python bench/faults.py --rate 40 --fault-seconds 10

Each scenario runs a real `routeyard serve` (its own config, its own store) over simulator
processes, drives it with an open-loop load (Poisson arrivals at `--rate`; half of the chat
requests streamed; four requests one by one first, not counted, open the connections and do
what a first request does once), breaks one thing while the load runs, and reports:

- **requests** sent, and **client-visible failures** by kind: a status other than 200, a
  connection error, a stream that ends with an error event or without `[DONE]`, a whole answer
  without content;
- **latency** to the last byte: p50, p99 and max over every request, and p99 and max over those
  in flight at some point of the fault;
- **faults injected**: what the simulator says its faulty backend did (5xx, 429, hangs, drops),
  so that a clean figure is not a fault that never happened;
- **records**: decision records expected (one per `x-routeyard-request-id` the client saw) and
  found in the store once the router has stopped; with feedback in the load, feedback
  acknowledged (a 200 from `POST /v1/feedback`) and its claim found in the store.

The scenarios:

| name | what breaks |
|---|---|
| backend_killed | the preferred backend is SIGKILLed (and stays dead) |
| slow | the preferred backend's first token takes 3 s; the model's `ttft_timeout_ms` is 500 |
| storm_5xx | the preferred backend answers 503 to everything |
| storm_429 | the preferred backend answers 429 (`retry-after: 0.5`) to everything |
| hang | half of the preferred backend's requests hang (no byte, ever); `per_try_s` is 2 |
| drop_before_first_byte | half of its connections drop before any byte |
| drop_after_first_byte | half of its streams are cut halfway (whole answers: dropped after ttft) |
| redis_down | the state store is a private redis-server (AOF, fsync always): SIGKILLed, restarted |
| redis_frozen | the same, SIGSTOPped, then SIGCONTed |
| postgres_down | the state store is PostgreSQL behind a TCP proxy, which is taken down, then up |
| sigterm_streams | SIGTERM with 100 streams (~3 s) and 10 whole requests in flight; window 30 s |
| sigterm_streams_cut | the same, answers of ~16 s, with a drain window of 1 s |
| kill9_sqlite | the router SIGKILLed during writes (chat + feedback, twice `--rate`), SQLite |
| kill9_postgres | the same on PostgreSQL; each is then restarted on its store |

The backend scenarios run two simulator processes, A (weight 4, preferred) and B (weight 1),
as two endpoints of one model that continues broken streams (`continue_final_message`); the
fault is on A. Pool: 1 retry (backoff 0.01 s), breaker after 5 consecutive failures with a 2 s
cooldown, `per_try_s` 2, health checks every second. The store scenarios run one healthy
backend, and the load posts feedback for every whole answer (the decision's learner is
`thompson`, so each one also writes the learner's state).

Redis: a private redis-server on a free port (never the shared one: it is killed and frozen).
PostgreSQL: the server of $ROUTEYARD_TEST_POSTGRES_URL (default user postgres at
127.0.0.1:5432), a database of this run's own (`routeyard_faults_<random>`, dropped at the
end); its outage is a TCP proxy going down, so the shared server is never stopped.

Writes bench/results/faults.json and faults.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fault_load import (
    POOL,
    Client,
    Event,
    Load,
    Outcome,
    drive,
    inline,
    read_store,
    records_figures,
    summarise,
)
from fault_procs import (
    POSTGRES_ADMIN_URL,
    RESULTS,
    RouterProc,
    Sim,
    TcpProxy,
    own_database,
    postgres_available,
    private_redis,
    running_router,
    simulator,
    via_proxy,
)
from procs import machine_info


def two_backend_config(a: Sim, b: Sim, tmp: Path, **model: Any) -> dict[str, Any]:
    return {
        "models": [{"name": "m", "continuation": "continue_final_message", **model,
                    "endpoints": [
                        {"name": "a", "base_url": a.v1, "upstream_model": "sim", "weight": 4},
                        {"name": "b", "base_url": b.v1, "upstream_model": "sim", "weight": 1}]}],
        "aliases": ["auto"],
        "default": {"candidates": ["m"]},
        "pool": POOL,
        "server": {"log_level": "warning", "shutdown_grace_s": 30},
        "state": {"backend": "sqlite", "path": str(tmp / "state.db")},
    }


def store_config(sim: Sim, state: dict[str, Any], **server: Any) -> dict[str, Any]:
    """One healthy backend under two models, a `thompson` learner (feedback writes its
    state), and `state` as the store."""
    return {
        "models": [{"name": name, "endpoints": [{"base_url": sim.v1, "upstream_model": "sim"}]}
                   for name in ("m1", "m2")],
        "aliases": ["auto"],
        "default": {"name": "everyday", "candidates": ["m1", "m2"], "algorithm": "thompson"},
        "pool": {**POOL, "health_check": {"interval_s": 0}},
        "server": {"log_level": "warning", **server},
        "state": state,
    }


# -- scenarios -------------------------------------------------------------------------------------


@dataclass
class Settings:
    rate: float = 40.0
    before_s: float = 3.0
    fault_s: float = 10.0
    after_s: float = 4.0
    streams: int = 100


BACKEND_FAULTS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    # name: (what, A's profile during the fault, the model's own settings)
    "slow": ("first token after 3 s on every request; ttft_timeout_ms 500",
             {"ttft_ms": 3000}, {"ttft_timeout_ms": 500}),
    "storm_5xx": ("503 to every request", {"error_5xx_rate": 1.0}, {}),
    "storm_429": ("429 to every request, retry-after 0.5 s",
                  {"error_429_rate": 1.0, "retry_after_s": 0.5}, {}),
    "hang": ("half the requests hang, no byte ever; per_try_s 2",
             {"hang_rate": 0.5, "hang_s": 3600}, {}),
    "drop_before_first_byte": ("half the connections dropped before any byte",
                               {"disconnect_before_first_byte_rate": 0.5}, {}),
    "drop_after_first_byte": ("half the streams cut halfway (whole answers: dropped after ttft)",
                              {"disconnect_rate": 0.5}, {}),
}
HEALTHY = {"ttft_ms": 20, "error_5xx_rate": 0, "error_429_rate": 0, "hang_rate": 0,
           "disconnect_rate": 0, "disconnect_before_first_byte_rate": 0}


def backend_scenario(name: str, tmp: Path, settings: Settings) -> dict[str, Any]:
    """A fault on backend A (the preferred endpoint) under load; B stays healthy."""
    killed = name == "backend_killed"
    what, profile, model = (("SIGKILL, not restarted", {}, {}) if killed
                            else BACKEND_FAULTS[name])
    start, end = settings.before_s, settings.before_s + settings.fault_s
    with simulator(tmp / "a", seed=1) as a, simulator(tmp / "b", seed=2) as b:
        config = two_backend_config(a, b, tmp, **model)
        with running_router(config, tmp / "router") as router:
            if killed:
                events: list[Event] = [(start, "fault", inline(a.kill))]
            else:
                events = [(start, "fault", lambda: a.set_profile(**profile)),
                          (end, "healed", lambda: a.set_profile(**HEALTHY))]
            load = Load(settings.rate, end + settings.after_s)
            outcomes, marks = asyncio.run(drive(router.url, load, events))
            injected = a.outcomes()
            served_by_b = b.outcomes().get("ok", 0)
            router.stop()
            problems = router.problems()
    window = (marks["fault"], marks.get("healed", load.seconds))
    expected = [o.request_id for o in outcomes if o.request_id]
    found = read_store(config["state"], expected, [])
    return {"fault": what, **summarise(outcomes, window),
            "injected": {k: v for k, v in injected.items() if k != "ok"},
            "backend_a_ok": injected.get("ok"), "backend_b_ok": served_by_b,
            **records_figures(outcomes, found), "router_log_problems": problems[:10]}


def store_scenario(name: str, tmp: Path, settings: Settings) -> dict[str, Any]:
    """The state store breaks under load (chat and feedback), then comes back."""
    start, end = settings.before_s, settings.before_s + settings.fault_s
    load = Load(settings.rate, end + settings.after_s, feedback=True)
    with simulator(tmp / "sim") as sim, contextlib.ExitStack() as stack:
        direct_url = None
        if name.startswith("redis"):
            redis = stack.enter_context(private_redis(tmp))
            state = {"backend": "redis", "redis_url": redis.url,
                     "key_prefix": f"routeyard-faults-{uuid.uuid4().hex[:8]}"}
            if name == "redis_down":
                what = "private redis-server SIGKILLed, restarted (AOF) after the fault"

                def restart() -> None:
                    redis.start()
                events: list[Event] = [(start, "fault", redis.kill), (end, "healed", restart)]
            else:
                what = "private redis-server SIGSTOPped, SIGCONTed after the fault"
                events = [(start, "fault", inline(redis.freeze)),
                          (end, "healed", inline(redis.thaw))]
        else:
            direct_url = stack.enter_context(own_database())
            host_port = urlsplit(direct_url)
            proxy = TcpProxy(host_port.hostname or "127.0.0.1", host_port.port or 5432)
            stack.callback(proxy.close)
            proxy.up()
            what = "TCP proxy to PostgreSQL down (connections refused, open ones cut)"
            state = {"backend": "postgres", "postgres_url": via_proxy(direct_url, proxy.port)}
            events = [(start, "fault", proxy.down), (end, "healed", proxy.up)]
        config = store_config(sim, state)
        with running_router(config, tmp / "router") as router:
            outcomes, marks = asyncio.run(drive(router.url, load, events))
            time.sleep(1.0)  # the buffer's retry backoff, after the store is back
            router.stop()
            problems = router.problems()
        expected = [o.request_id for o in outcomes if o.kind != "feedback" and o.request_id]
        acked = [o.request_id for o in outcomes if o.kind == "feedback" and o.ok and o.request_id]
        found = read_store(state, expected, acked, postgres_url=direct_url)
    window = (marks["fault"], marks["healed"])
    return {"fault": what, **summarise(outcomes, window), **records_figures(outcomes, found),
            "router_log_problems": problems[:10]}


def sigterm_streams(tmp: Path, streams: int = 100, *, grace_s: float = 30.0,
                    tokens: int = 80, tpot_ms: float = 40.0, whole: int = 0) -> dict[str, Any]:
    """SIGTERM once `streams` streams have each had their first chunk (and `whole`
    non-streamed requests of the same length are in flight); each takes ~tokens x tpot_ms.
    Reports how each ended, how long the router took to exit, and the decision records the
    store has once it has."""
    with simulator(tmp / "sim", tpot_ms=tpot_ms, tokens=tokens) as sim:
        state = {"backend": "sqlite", "path": str(tmp / "state.db")}
        config = store_config(sim, state, shutdown_grace_s=grace_s)
        # Timeouts far past the answers' length: what ends them is the shutdown.
        config["pool"]["timeouts"] = {"per_try_s": 120, "total_s": 240, "stream_idle_s": 60}
        router = RouterProc(config, tmp / "router")
        router.start()
        try:
            figures = asyncio.run(_sigterm_streams(router, streams, tokens, whole))
        finally:
            router.stop()
        problems = router.problems()
    outcomes: list[Outcome] = figures.pop("outcomes")
    found = read_store(state, [o.request_id for o in outcomes if o.request_id], [])
    return {"grace_s": grace_s, "stream_s": round(tokens * tpot_ms / 1000, 1), **figures,
            **summarise(outcomes), **records_figures(outcomes, found),
            "router_log_problems": problems[:10]}


async def _sigterm_streams(router: RouterProc, streams: int, tokens: int, whole: int
                           ) -> dict[str, Any]:
    started = 0
    all_started = asyncio.Event()

    def first_chunk() -> None:
        nonlocal started
        started += 1
        if started == streams:
            all_started.set()

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120),
                                     connector=aiohttp.TCPConnector(limit=0)) as session:
        client = Client(session, Load(0, 0, max_tokens=tokens), time.monotonic())
        client.url = router.url
        tasks = [asyncio.create_task(client.chat(True, first_chunk)) for _ in range(streams)]
        tasks += [asyncio.create_task(client.chat(False)) for _ in range(whole)]
        await asyncio.wait_for(all_started.wait(), timeout=60)
        sigterm_at = client.now()
        router.signal(signal.SIGTERM)
        # A short request sent just after the signal: answered (accepted before the listener
        # closed) or refused (after), never hung.
        late_client = Client(session, Load(0, 0, max_tokens=4), client.base)
        late_client.url = router.url
        late = await late_client.chat(False)
        await asyncio.gather(*tasks)
    exit_code = await asyncio.to_thread(router.wait, 120)
    exited_at = client.now()
    streamed = [o for o in client.outcomes if o.kind == "chat_stream"]
    whole_outcomes = [o for o in client.outcomes if o.kind == "chat"]
    return {"outcomes": client.outcomes, "streams": streams,
            "completed": sum(o.ok for o in streamed),
            "error_events": sum(o.failure == "stream_error_event" for o in streamed),
            "connection_errors": sum(o.status == 0 for o in streamed),
            "last_stream_end_after_sigterm_s": round(max(o.end for o in streamed)
                                                     - sigterm_at, 2),
            "whole": whole, "whole_completed": sum(o.ok for o in whole_outcomes),
            "whole_failures": dict(Counter(o.failure for o in whole_outcomes if not o.ok)),
            "exit_after_sigterm_s": round(exited_at - sigterm_at, 2),
            "exit_code": exit_code,
            "request_after_sigterm": "answered" if late.ok else late.failure}


def kill9_during_writes(tmp: Path, backend: str, settings: Settings, seconds: float = 6.0,
                        kill_at: float = 5.0) -> dict[str, Any]:
    """SIGKILL the router at `kill_at` while it writes (chat and feedback at `settings.rate`,
    for `seconds`: the load goes on against the dead port); read the store at once (what was
    flushed before the kill), start the router again on it, send some more, stop it, and
    count again: nothing flushed may be lost. Feedback acknowledged before the kill, sent
    again after the restart, must be refused as a duplicate (409) wherever its record
    survived."""
    with simulator(tmp / "sim") as sim, contextlib.ExitStack() as stack:
        if backend == "sqlite":
            state = {"backend": "sqlite", "path": str(tmp / "state.db")}
        else:
            state = {"backend": "postgres", "postgres_url": stack.enter_context(own_database())}
        router = RouterProc(store_config(sim, state), tmp / "router")
        router.start()
        stack.callback(router.stop)
        load = Load(settings.rate, seconds, feedback=True, stream_share=0.3)
        outcomes, marks = asyncio.run(drive(router.url, load,
                                            [(kill_at, "kill", inline(router.kill_now))]))
        killed_at = marks["kill"]
        router.kill()  # reaped
        chats = [o for o in outcomes if o.kind != "feedback"]
        # What the client saw answered before the kill is expected in the store.
        answered = [o for o in chats if o.ok and o.end <= killed_at]
        expected = [o.request_id for o in answered if o.request_id]
        acked = [o.request_id for o in outcomes
                 if o.kind == "feedback" and o.ok and o.end <= killed_at and o.request_id]
        before = read_store(state, expected, acked)
        router.start()
        resent = asyncio.run(_resend_feedback(router.url, [i for i in acked
                                                          if i in before["records"]][:50]))
        after_load, _ = asyncio.run(drive(router.url, Load(settings.rate / 2, 2.0, seed=9)))
        router.stop()
        after = read_store(state, expected, acked)
        integrity = None
        if backend == "sqlite":
            import sqlite3

            with contextlib.closing(sqlite3.connect(state["path"])) as conn:
                integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        problems = router.problems()
    lost = [o for o in answered if o.request_id not in after["records"]]
    return {
        "store": backend,
        "requests": len(chats),
        "answered_before_kill": len(expected),
        "in_flight_at_kill": sum(o.start <= killed_at < o.end for o in chats),
        "sent_after_kill": sum(o.start > killed_at for o in chats),
        "failed_at_or_after_kill": dict(Counter(o.failure for o in chats if not o.ok)),
        "records_found_after_kill": len(before["records"]),
        "records_found_after_restart": len(after["records"]),
        "flushed_records_lost_in_restart": len(set(before["records"]) - set(after["records"])),
        # At risk: answered in the last flush interval (0.1 s) before the kill.
        "answered_within_100ms_before_kill": sum(killed_at - o.end <= 0.1 for o in answered),
        "records_lost": len(lost),
        "lost_answered_within_ms_of_kill": round(max(
            ((killed_at - o.end) * 1000 for o in lost), default=0.0), 1),
        "feedback_acknowledged": len(acked),
        "feedback_found_after_kill": len(before["claims"]),
        "feedback_found_after_restart": len(after["claims"]),
        "feedback_lost": len(set(acked) - set(after["claims"])),
        "resent_feedback": resent,
        "after_restart": summarise(after_load),
        "sqlite_integrity": integrity,
        # A SIGKILL leaves no log lines of its own; what matters is nothing after the restart.
        "router_log_problems": problems[:10],
    }


async def _resend_feedback(url: str, request_ids: list[str]) -> dict[str, int]:
    statuses: Counter[str] = Counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for request_id in request_ids:
            async with session.post(url + "/v1/feedback", json={
                    "request_id": request_id, "rating": 2}) as response:
                statuses[str(response.status)] += 1
    return dict(statuses)


SCENARIOS: dict[str, Callable[[Path, Settings], dict[str, Any]]] = {
    "backend_killed": lambda tmp, s: backend_scenario("backend_killed", tmp, s),
    **{name: (lambda n: lambda tmp, s: backend_scenario(n, tmp, s))(name)
       for name in BACKEND_FAULTS},
    "redis_down": lambda tmp, s: store_scenario("redis_down", tmp, s),
    "redis_frozen": lambda tmp, s: store_scenario("redis_frozen", tmp, s),
    "postgres_down": lambda tmp, s: store_scenario("postgres_down", tmp, s),
    "sigterm_streams": lambda tmp, s: sigterm_streams(tmp, s.streams, whole=10),
    "sigterm_streams_cut": lambda tmp, s: sigterm_streams(tmp, s.streams, grace_s=1.0,
                                                          tokens=400, whole=10),
    # Twice the rate: more writes under way when the kill comes.
    "kill9_sqlite": lambda tmp, s: kill9_during_writes(
        tmp, "sqlite", Settings(rate=2 * s.rate)),
    "kill9_postgres": lambda tmp, s: kill9_during_writes(
        tmp, "postgres", Settings(rate=2 * s.rate)),
}


# -- report ----------------------------------------------------------------------------------------


def _failures(figures: dict[str, Any]) -> str:
    if not figures["failed"]:
        return "0"
    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(figures["failures"].items()))
    return f"**{figures['failed']}** ({kinds})"


def _records(figures: dict[str, Any]) -> str:
    text = (f"{figures['records_found']:,} / {figures['records_expected']:,}"
            f" (lost {figures['records_lost']})")
    if "feedback_acknowledged" in figures:
        text += (f"; feedback {figures['feedback_found']:,} / "
                 f"{figures['feedback_acknowledged']:,} (lost {figures['feedback_lost']})")
    return text


def markdown(data: dict[str, Any]) -> str:
    results = data["results"]
    lines = [
        f"Load: {data['settings']['rate']:g} chat requests/s (half streamed), open loop; "
        f"fault after {data['settings']['before_s']:g} s, for {data['settings']['fault_s']:g} s,"
        f" then {data['settings']['after_s']:g} s healed.",
        "",
        "| Fault | Requests | Client-visible failures | Latency p50 / p99 / max (ms) | "
        "During the fault: p99 / max (ms) | Faults injected | Records found / expected |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, figures in results.items():
        if "during" not in figures:
            continue
        injected = figures.get("injected")
        injected_text = (", ".join(f"{k}: {v}" for k, v in sorted(injected.items()))
                         if injected else "n/a")
        if "feedback" in figures:
            refused = figures["feedback"]["refused"]
            injected_text = "feedback refused: " + (", ".join(
                f"{k}: {v}" for k, v in sorted(refused.items())) or "none")
        lines.append(
            f"| {name} | {figures['requests']:,} | {_failures(figures)} | "
            f"{figures['p50_ms']:.0f} / {figures['p99_ms']:.0f} / {figures['max_ms']:.0f} | "
            f"{figures['during']['p99_ms']:.0f} / {figures['during']['max_ms']:.0f} | "
            f"{injected_text} | {_records(figures)} |")
    for name in ("sigterm_streams", "sigterm_streams_cut"):
        if name in results:
            f = results[name]
            lines += ["", f"**{name}**: {f['streams']} streams; completed {f['completed']}, "
                      f"error events {f['error_events']}, connection errors "
                      f"{f['connection_errors']}; last stream ended "
                      f"{f['last_stream_end_after_sigterm_s']} s after SIGTERM, exit after "
                      f"{f['exit_after_sigterm_s']} s (code {f['exit_code']}); a request sent "
                      f"after SIGTERM: {f['request_after_sigterm']}; {f['whole']} whole "
                      f"requests in flight too: {f['whole_completed']} answered, failures "
                      f"{f['whole_failures'] or 'none'}; records "
                      f"{_records(f)}, statuses {f['record_statuses']}."]
    for name in ("kill9_sqlite", "kill9_postgres"):
        if name in results:
            f = results[name]
            integrity = (f"; SQLite `PRAGMA integrity_check`: {f['sqlite_integrity']}"
                         if f["sqlite_integrity"] else "")
            lost_when = (f" (each answered at most {f['lost_answered_within_ms_of_kill']} ms "
                         "before the kill)" if f["records_lost"] else "")
            lines += ["", f"**{name}**: {f['requests']:,} requests, {f['answered_before_kill']:,}"
                      f" answered before the kill ({f['answered_within_100ms_before_kill']} in "
                      f"its last 100 ms), {f['in_flight_at_kill']} in flight at it; records in "
                      f"the store after the kill {f['records_found_after_kill']:,}, after the "
                      f"restart {f['records_found_after_restart']:,} (flushed, then lost: "
                      f"{f['flushed_records_lost_in_restart']}); answered but lost "
                      f"{f['records_lost']}{lost_when}; feedback "
                      f"acknowledged {f['feedback_acknowledged']:,}, found "
                      f"{f['feedback_found_after_restart']:,} (lost {f['feedback_lost']}); sent "
                      f"again after the restart: {f['resent_feedback']}; after the restart "
                      f"{f['after_restart']['requests']} requests, {f['after_restart']['failed']}"
                      f" failed{integrity}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS),
                        help="run this scenario (repeatable; default: all)")
    parser.add_argument("--rate", type=float, default=40.0, help="chat requests/s (40)")
    parser.add_argument("--fault-seconds", type=float, default=10.0)
    parser.add_argument("--streams", type=int, default=100, help="for the SIGTERM scenarios")
    parser.add_argument("--out", type=Path, default=RESULTS / "faults.json")
    args = parser.parse_args(argv)
    settings = Settings(rate=args.rate, fault_s=args.fault_seconds, streams=args.streams)
    names = args.only or list(SCENARIOS)
    if any("postgres" in n for n in names) and not postgres_available():
        print(f"PostgreSQL does not answer at {POSTGRES_ADMIN_URL}: its scenarios are skipped")
        names = [n for n in names if "postgres" not in n]
    results: dict[str, Any] = {}
    began = time.monotonic()
    for name in names:
        print(f"{name} ...", flush=True)
        with tempfile.TemporaryDirectory(prefix=f"faults-{name}-") as tmp:
            started = time.monotonic()
            results[name] = SCENARIOS[name](Path(tmp), settings)
            results[name]["seconds"] = round(time.monotonic() - started, 1)
        print("  " + json.dumps({k: v for k, v in results[name].items()
                                 if k not in ("router_log_problems",)}), flush=True)
    data = {"settings": asdict(settings), "results": results,
            "seconds": round(time.monotonic() - began, 1), "machine": machine_info(),
            "load_average": os.getloadavg()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    table = markdown(data)
    args.out.with_suffix(".md").write_text(table)
    print("\n" + table)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
