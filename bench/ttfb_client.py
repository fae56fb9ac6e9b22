"""Streaming time-to-first-byte client: `python bench/ttfb_client.py --url URL --body JSON ...`

wrk cannot see inside a response, so this asyncio/aiohttp client measures, for streaming chat
requests at a fixed concurrency, the time from sending the request to the first SSE `data:`
line, and the time to the end of the stream. It runs as its own process (the benchmark starts
it), so its CPU use is visible and never shares an event loop with a server. It prints one JSON
object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class Samples:
    ttfb_s: list[float] = field(default_factory=list)
    total_s: list[float] = field(default_factory=list)
    chunks: int = 0
    warmup_streams: int = 0
    errors: int = 0
    first_error: str | None = None


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of `values` (q in 0-100); NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


async def one_stream(session: aiohttp.ClientSession, url: str, body: bytes,
                     headers: dict[str, str], samples: Samples, measured: bool) -> None:
    """Send one streaming request and read it to the end; record TTFB and total time."""
    started = time.perf_counter()
    first: float | None = None
    chunks = 0
    async with session.post(url, data=body, headers=headers) as response:
        if response.status != 200:
            text = await response.text()
            raise RuntimeError(f"HTTP {response.status}: {text[:200]}")
        async for line in response.content:
            if line.startswith(b"data:"):
                if first is None:
                    first = time.perf_counter()
                chunks += 1
    if first is None:
        raise RuntimeError("the stream carried no data: line")
    if measured:
        samples.ttfb_s.append(first - started)
        samples.total_s.append(time.perf_counter() - started)
        samples.chunks += chunks
    else:
        samples.warmup_streams += 1


async def worker(session: aiohttp.ClientSession, url: str, body: bytes,
                 headers: dict[str, str], warm_until: float, stop_at: float,
                 samples: Samples) -> None:
    while (now := time.perf_counter()) < stop_at:
        try:
            await one_stream(session, url, body, headers, samples, now >= warm_until)
        except (aiohttp.ClientError, RuntimeError, TimeoutError) as error:
            samples.errors += 1
            samples.first_error = samples.first_error or repr(error)


async def measure(url: str, body: bytes, headers: dict[str, str], concurrency: int,
                  duration_s: float, warmup_s: float) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    samples = Samples()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        warm_until = start + warmup_s
        stop_at = warm_until + duration_s
        await asyncio.gather(*(worker(session, url, body, headers, warm_until, stop_at, samples)
                               for _ in range(concurrency)))
    return summarise(samples, concurrency, duration_s)


def summarise(samples: Samples, concurrency: int, duration_s: float) -> dict[str, Any]:
    def ms(values: list[float], q: float) -> float:
        return round(percentile(values, q) * 1000, 3)

    count = len(samples.ttfb_s)
    return {
        "concurrency": concurrency,
        "streams": count,
        "warmup_streams": samples.warmup_streams,
        "streams_per_s": round(count / duration_s, 1),
        "chunks_per_stream": round(samples.chunks / count, 1) if count else 0,
        "errors": samples.errors,
        "first_error": samples.first_error,
        "ttfb_p50_ms": ms(samples.ttfb_s, 50),
        "ttfb_p90_ms": ms(samples.ttfb_s, 90),
        "ttfb_p99_ms": ms(samples.ttfb_s, 99),
        "stream_p50_ms": ms(samples.total_s, 50),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the chat completions URL")
    parser.add_argument("--body", required=True, help="JSON request body (stream: true)")
    parser.add_argument("--header", action="append", default=[], metavar="NAME:VALUE")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    args = parser.parse_args(argv)
    headers = {"Content-Type": "application/json"}
    for item in args.header:
        name, _, value = item.partition(":")
        headers[name.strip()] = value.strip()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(measure(args.url, args.body.encode(), headers, args.concurrency,
                                 args.duration, args.warmup))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
