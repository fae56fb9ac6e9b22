"""How fast the decision log's query API answers on SQLite with a million records.

Fills a temporary SQLite store with N synthetic records (default 1,000,000, spread over 30
days: 8 models, 6 decisions, 50 keys in 10 tenants, 5 surfaces, 5% feedback) through the
store's own write path (so the hourly roll-ups are built as in production), then times the
store calls behind /v1/stats and /v1/decisions, and (SQLite) a stats query that must first roll
up 5,000 records written since the last roll-up. Every timing is reported with its ratio to a
baseline measured in the same run on the same file: `SELECT count(*) FROM decisions`.

    python bench/decision_stats.py                 # ~2-4 min, most of it the fill
    python bench/decision_stats.py --records 200000 --json
    python bench/decision_stats.py --postgres postgresql://postgres@127.0.0.1:5432/postgres
        # the same on PostgreSQL, in a schema of its own (dropped at the end)

Each query runs --repeat times (default 5); the median is reported. The results also go to
--out (default bench/results/decision_stats.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from routeyard.state import DecisionRecord, SQLiteStore, Store
from routeyard.state.query import DecisionQuery, StatsQuery, decode_cursor

DAY = 86400.0
MODELS = [f"model-{i}" for i in range(8)]
DECISIONS = {f"decision-{i}": MODELS[i:i + 3] for i in range(6)}
KEYS = [(f"ry-key{i:02d}", f"tenant-{i % 10}") for i in range(50)]
SURFACES = ("chat", "chat", "chat", "messages", "responses", "completions", "embeddings")


def synthetic(n: int, end: float, days: float, seed: int = 1) -> list[DecisionRecord]:
    rng = random.Random(seed)
    start = end - days * DAY
    step = (end - start) / n
    names = list(DECISIONS)
    records = []
    for i in range(n):
        decision = rng.choice(names)
        status = "ok" if rng.random() < 0.95 else rng.choice(("upstream_failed", "cache_hit"))
        answered = status == "ok"
        model = rng.choice(DECISIONS[decision]) if answered else None
        prompt = rng.randrange(10, 2000) if answered else 0
        completion = rng.randrange(1, 800) if answered else 0
        cost = (prompt * 3 + completion * 15) / 1e6 if answered else 0.0
        key, tenant = rng.choice(KEYS)
        stream = rng.random() < 0.4
        records.append(DecisionRecord(
            f"req_{i:09d}", start + i * step, decision, model, f"{model}#0" if model else None,
            rng.lognormvariate(6, 0.7), prompt, completion, cost, status, stream,
            {"signals": {"domain:code": round(rng.random(), 3)},
             "selection": {"algorithm": "static", "probability": 1.0}},
            rng.choice(SURFACES), key, tenant,
            rng.lognormvariate(5, 0.5) if stream and answered else None,
            rng.choice((None, "miss", "hit")), cost * 4 if answered else None))
    return records


async def fill(store: Store, records: list[DecisionRecord]) -> float:
    started = time.perf_counter()
    for start in range(0, len(records), 5000):
        for record in records[start:start + 5000]:
            store.record_decision(record)
        await store.flush()
    rng = random.Random(2)
    for record in rng.sample(records, len(records) // 20):
        await store.record_feedback(record.request_id, rng.random())
    return time.perf_counter() - started


async def after_new_records(store: Store, end: float, n: int, repeat: int,
                            query: StatsQuery) -> float:
    """The median time of a stats query each time `n` new records were written first."""
    times = []
    for round_no in range(repeat):
        for record in synthetic(n, end, n / 1000 / DAY, seed=100 + round_no):
            record.request_id = f"new{round_no}_{record.request_id}"
            store.record_decision(record)
        await store.flush()
        started = time.perf_counter()
        await store.decision_stats(query)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def median_s(call: Callable[[], Awaitable[Any]], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    end = math.floor(time.time() / 3600) * 3600 + 1234.5  # mid-hour: partial hours at edges
    schema = f"routeyard_bench_{int(time.time())}"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        store: Store
        if args.postgres:
            from routeyard.state.postgres import PostgresStore

            store = PostgresStore(args.postgres, schema=schema, max_buffer=10_000_000,
                                  command_timeout=120.0)
        else:
            store = SQLiteStore(path, max_buffer=10_000_000)
        await store.start()
        try:
            records = synthetic(args.records, end, args.days)
            fill_s = await fill(store, records)
            del records
            if args.postgres:
                import asyncpg

                pg = await asyncpg.connect(args.postgres,
                                           server_settings={"search_path": schema})

                async def baseline() -> None:
                    await pg.fetchval("SELECT count(*) FROM decisions")
            else:
                count = sqlite3.connect(path, check_same_thread=False)

                async def baseline() -> None:
                    await asyncio.to_thread(lambda: count.execute(
                        "SELECT count(*) FROM decisions").fetchone())

            window = (end - args.days * DAY - 1, end + 1)
            day = (end - DAY, end)
            queries: dict[str, Callable[[], Awaitable[Any]]] = {
                "count(*) (baseline)": baseline,
                "stats, all, no group": lambda: store.decision_stats(StatsQuery(*window)),
            }
            for group in ("model", "decision", "key", "tenant", "hour"):
                queries[f"stats, all, group_by={group}"] = (
                    lambda g=group: store.decision_stats(StatsQuery(*window, g)))
            queries["stats, last 24 h, group_by=model"] = (
                lambda: store.decision_stats(StatsQuery(*day, "model")))
            queries["stats, all, tenant=tenant-3, group_by=hour"] = (
                lambda: store.decision_stats(StatsQuery(*window, "hour",
                                                        (("tenant", "tenant-3"),))))
            queries["stats, all, tenant=tenant-3, group_by=model (raw rows)"] = (
                lambda: store.decision_stats(StatsQuery(*window, "model",
                                                        (("tenant", "tenant-3"),))))
            queries["stats, all, status=ok + surface=chat, group_by=model (cube)"] = (
                lambda: store.decision_stats(StatsQuery(
                    *window, "model", (("status", "ok"), ("surface", "chat")))))
            queries["stats, all, status=ok, group_by=key (raw rows: the worst case)"] = (
                lambda: store.decision_stats(StatsQuery(*window, "key", (("status", "ok"),))))
            queries["stats, last 24 h, key + model (raw rows)"] = (
                lambda: store.decision_stats(StatsQuery(
                    *day, "model", (("key_id", "ry-key07"), ("model", "model-3")))))
            queries["decisions, first page of 100"] = (
                lambda: store.query_decisions(DecisionQuery(limit=100)))
            queries["decisions, tenant + has_feedback, 100"] = (
                lambda: store.query_decisions(DecisionQuery(
                    filters=(("tenant", "tenant-3"),), has_feedback=True, limit=100)))
            middle = await store.query_decisions(DecisionQuery(limit=1000, until=end - 15 * DAY))
            assert middle.cursor is not None
            after = decode_cursor(middle.cursor)
            queries["decisions, page 15 days deep (cursor)"] = (
                lambda: store.query_decisions(DecisionQuery(limit=100, after=after)))
            results = {name: await median_s(call, args.repeat) for name, call in queries.items()}
            if not args.postgres:
                # What a dashboard's stats cost under traffic: the writer rolls records up
                # every 5 s, so a query first rolls up what came since (5,000 records: 5 s
                # at 1,000 req/s), then answers.
                name = "stats, last 24 h, group_by=model, after 5,000 new records"
                results[name] = await after_new_records(store, end, 5000, args.repeat,
                                                        StatsQuery(*day, "model"))
            if args.postgres:
                await pg.execute(f"DROP SCHEMA {schema} CASCADE")
                await pg.close()
            else:
                count.close()
        finally:
            await store.close()
    base = results["count(*) (baseline)"]
    return {"store": "postgres" if args.postgres else "sqlite", "records": args.records,
            "days": args.days, "fill_s": round(fill_s, 1),
            "median_s": {k: round(v, 4) for k, v in results.items()},
            "ratio_to_count": {k: round(v / base, 2) for k, v in results.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgres", metavar="URL",
                        help="measure PostgreSQL at URL instead of SQLite (a schema of its own)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--out", help="where the results go, as JSON (default: "
                        "bench/results/decision_stats[_postgres].json)")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args))
    if args.out is None:
        suffix = "_postgres" if args.postgres else ""
        args.out = str(Path(__file__).parent / "results" / f"decision_stats{suffix}.json")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['store']}: {report['records']:,} records over {report['days']:g} days; fill "
          f"{report['fill_s']} s")
    print("| query | median s | x count(*) |\n|---|---|---|")
    for name, seconds in report["median_s"].items():
        print(f"| {name} | {seconds:.4f} | {report['ratio_to_count'][name]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
