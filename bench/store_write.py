"""Decision-log write throughput and key-value latency: SQLite vs PostgreSQL, in one run.

    python bench/store_write.py [--records 100000] [--reads 2000]
                                [--postgres-url postgresql://postgres@127.0.0.1:5432/postgres]

For each store: enqueue `--records` decision records (`record_decision`, what the request path
pays), then time one `flush()` that writes them all (records/s flushed). Then again with
`--records`/10 more, while a ticker task that wakes every millisecond records the longest the
event loop went without running (what the writes cost other requests on the loop; kept apart
from the throughput run, whose figure a busy ticker would distort). Then the p50 and p99 of
`get_value` (an existing 200-byte value), `set_value` and `claim` over `--reads` sequential
calls.

SQLite writes to a file in a temporary directory. PostgreSQL runs in a database made for the
run (routeyard_bench_<random>) on the server of `--postgres-url`, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from routeyard.state import DecisionRecord, SQLiteStore, Store
from routeyard.state.postgres import PostgresStore


def record(i: int, t0: float) -> DecisionRecord:
    return DecisionRecord(f"req_{i:08d}", t0 + i * 1e-4, "default", "gpt-4o-mini",
                          "gpt-4o-mini#0", 812.5, 1_200, 300, 0.00036, "ok", stream=i % 2 == 0,
                          detail={"skipped": [{"model": "big", "reason": "no vision"}]}
                          if i % 10 == 0 else None)


async def longest_stall(stop: asyncio.Event) -> float:
    """The longest the loop was late, in ms, waking a 1 ms sleeper until `stop` is set."""
    longest = 0.0
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(0.001)
        longest = max(longest, time.perf_counter() - started - 0.001)
    return longest * 1000


async def timed(call: Callable[[], Awaitable[Any]], repeats: int) -> tuple[float, float]:
    """p50 and p99 of `await call()` in microseconds, after 50 untimed calls."""
    for _ in range(50):
        await call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    times.sort()
    return statistics.median(times) * 1e6, times[int(len(times) * 0.99)] * 1e6


async def measure(store: Store, records: int, reads: int) -> dict[str, float]:
    await store.start()
    try:
        t0 = time.time()
        batch = [record(i, t0) for i in range(records + records // 10)]
        started = time.perf_counter()
        for r in batch[:records]:
            store.record_decision(r)
        enqueue_ns = (time.perf_counter() - started) / records * 1e9
        started = time.perf_counter()
        await store.flush()
        flush_s = time.perf_counter() - started
        for r in batch[records:]:
            store.record_decision(r)
        stop = asyncio.Event()
        ticker = asyncio.create_task(longest_stall(stop))
        await asyncio.sleep(0.01)
        await store.flush()
        stop.set()
        stall_ms = await ticker
        assert len(await store.recent_decisions(len(batch))) == len(batch), "records missing"

        await store.set_value("bench:value", b"x" * 200)
        get = await timed(lambda: store.get_value("bench:value"), reads)
        put = await timed(lambda: store.set_value("bench:put", b"x" * 200, ttl_s=60), reads)
        n = iter(range(10**9))
        claim = await timed(lambda: store.claim(f"bench:claim:{next(n)}", ttl_s=60), reads)
    finally:
        await store.close()
    return {"enqueue_ns": enqueue_ns, "flush_records_per_s": records / flush_s,
            "flush_s": flush_s, "longest_loop_stall_ms": stall_ms,
            "get_p50_us": get[0], "get_p99_us": get[1], "set_p50_us": put[0],
            "set_p99_us": put[1], "claim_p50_us": claim[0], "claim_p99_us": claim[1]}


@asynccontextmanager
async def bench_database(admin_url: str) -> AsyncIterator[str]:
    name = f"routeyard_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
        finally:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = await measure(SQLiteStore(Path(tmp) / "bench.db"), args.records,
                                          args.reads)
    async with bench_database(args.postgres_url) as url:
        results["postgres"] = await measure(PostgresStore(url), args.records, args.reads)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=2_000)
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a server and a user that may create databases")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    rows = [("decision log: records/s flushed", "flush_records_per_s", "{:,.0f}"),
            ("  flush of all records, s", "flush_s", "{:.2f}"),
            ("  record_decision (enqueue), ns", "enqueue_ns", "{:.0f}"),
            ("  longest event-loop stall while flushing, ms", "longest_loop_stall_ms",
             "{:.1f}"),
            ("get_value p50 / p99, µs", ("get_p50_us", "get_p99_us"), "{:.0f} / {:.0f}"),
            ("set_value p50 / p99, µs", ("set_p50_us", "set_p99_us"), "{:.0f} / {:.0f}"),
            ("claim p50 / p99, µs", ("claim_p50_us", "claim_p99_us"), "{:.0f} / {:.0f}")]
    print(f"{args.records:,} records, {args.reads:,} key-value calls each\n")
    print("| measure | SQLite | PostgreSQL |\n|---|---|---|")
    for label, keys, fmt in rows:
        cells = [fmt.format(*(results[s][k] for k in (keys if isinstance(keys, tuple)
                                                       else (keys,))))
                 for s in ("sqlite", "postgres")]
        print(f"| {label} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
