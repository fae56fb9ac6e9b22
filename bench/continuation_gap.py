"""The gap a continued stream shows its client: `python bench/continuation_gap.py [--markdown]`

Two simulators serve the same model at a fixed time per output token (default 10 ms); the first
cuts a share of its streams halfway (`disconnect_rate`), and `routeyard serve` continues each cut
stream on the second (`continuation: continue_final_message`). An aiohttp client runs streams at
a fixed concurrency and timestamps every content chunk as it arrives. For each continued stream
(its final chunk carries the `routeyard.continued` trailer) it takes the gap at the failover
point, between the last chunk of the broken call and the first of the continuation, and the
stream's largest gap; for the streams that were not continued, the median and p99 of their
inter-chunk gaps. The added gap is the failover gap minus that median. The continuation call's
time to first token (as Routeyard timed it, `ttft_ms` in the trailer) and the client's time to
first byte are reported beside it. The first continuation in a process also loads the BPE
tables (off the event loop); it is reported on its own as `cold`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from procs import machine_info, start_routeyard, start_simulator
from ttfb_client import percentile

HERE = Path(__file__).resolve().parent
MODEL = "sim"


@dataclass
class Stream:
    started: float
    arrivals: list[float] = field(default_factory=list)  # each content chunk's arrival
    lengths: list[int] = field(default_factory=list)  # its content's length
    trailer: list[dict[str, Any]] | None = None
    error: str | None = None

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.arrivals, self.arrivals[1:], strict=False)]

    def seam_gap(self) -> float | None:
        """The gap between the last chunk before the failover and the first after it."""
        if not self.trailer:
            return None
        after, said = self.trailer[0]["after_chars"], 0
        for index, length in enumerate(self.lengths):
            if said >= after and index:
                return self.arrivals[index] - self.arrivals[index - 1]
            said += length
        return None


def simulator_config(tokens: int, tpot_ms: float, ttft_ms: float, cut_rate: float
                     ) -> dict[str, Any]:
    profile = {"ttft_ms": ttft_ms, "tpot_ms": tpot_ms, "output_tokens_mean": tokens,
               "output_tokens_min": tokens, "output_tokens_max": tokens,
               "disconnect_rate": cut_rate}
    return {"models": {MODEL: profile}, "seed": 1}


def router_config(primary_v1: str, backup_v1: str, tmp: Path) -> dict[str, Any]:
    def model(name: str, url: str) -> dict[str, Any]:
        return {"name": name, "continuation": "continue_final_message",
                "endpoints": [{"base_url": url, "upstream_model": MODEL, "name": name}]}

    return {"server": {"log_level": "warning"},
            "models": [model("primary", primary_v1), model("backup", backup_v1)],
            "default": {"candidates": ["primary"], "fallback": ["backup"]},
            "state": {"backend": "sqlite", "path": str(tmp / "state.db")},
            # A breaker that stays closed: every cut stream is continued, none avoided.
            "pool": {"health_check": {"interval_s": 0}, "retry": {"max_retries": 0},
                     "breaker": {"failure_threshold": 1_000_000, "cooldown_s": 60}}}


async def one_stream(session: aiohttp.ClientSession, url: str, index: int) -> Stream:
    body = {"model": "auto", "stream": True,
            "messages": [{"role": "user", "content": f"tell me about routing, #{index}"}]}
    stream = Stream(time.perf_counter())
    async with session.post(url, json=body) as response:
        if response.status != 200:
            stream.error = f"HTTP {response.status}"
            return stream
        async for line in response.content:
            if not line.startswith(b"data: {"):
                continue
            now = time.perf_counter()
            chunk = json.loads(line[6:])
            if "error" in chunk:
                stream.error = chunk["error"].get("code") or "error"
                return stream
            choices = chunk.get("choices") or []
            content = choices[0].get("delta", {}).get("content") if choices else None
            if content:
                stream.arrivals.append(now)
                stream.lengths.append(len(content))
            if "routeyard" in chunk:
                stream.trailer = chunk["routeyard"]["continued"]
    return stream


async def run(url: str, streams: int, concurrency: int) -> list[Stream]:
    queue = iter(range(streams))
    results: list[Stream] = []
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async def worker() -> None:
            for index in queue:
                results.append(await one_stream(session, url, index))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def ms(value: float) -> float:
    return round(value * 1000, 2)


def summarise(results: list[Stream], tpot_ms: float) -> dict[str, Any]:
    continued = [r for r in results if r.trailer]
    whole = [r for r in results if not r.trailer and not r.error]
    base_gaps = [g for r in whole for g in r.gaps()]
    median_gap = statistics.median(base_gaps) if base_gaps else float("nan")
    seams = [g for r in continued if (g := r.seam_gap()) is not None]
    warm_seams = seams[1:]  # the first continuation also loaded the BPE tables
    opens = [r.trailer[0]["ttft_ms"] for r in continued if r.trailer]
    first_bytes = [r.arrivals[0] - r.started for r in whole if r.arrivals]
    return {
        "streams": len(results), "continued": len(continued), "not_continued": len(whole),
        "client_errors": sum(1 for r in results if r.error),
        "tpot_ms": tpot_ms,
        "median_gap_not_continued_ms": ms(median_gap),
        "p99_gap_not_continued_ms": ms(percentile(base_gaps, 99)),
        "seam_gap_median_ms": ms(statistics.median(warm_seams)) if warm_seams else None,
        "seam_gap_p90_ms": ms(percentile(warm_seams, 90)) if warm_seams else None,
        "seam_gap_max_ms": ms(max(warm_seams)) if warm_seams else None,
        "added_gap_median_ms": (ms(statistics.median(warm_seams) - median_gap)
                                if warm_seams else None),
        "largest_gap_continued_median_ms": (
            ms(statistics.median(max(r.gaps()) for r in continued)) if continued else None),
        "cold_seam_gap_ms": ms(seams[0]) if seams else None,
        "continuation_ttft_median_ms": statistics.median(opens) if opens else None,
        "continuation_ttft_p90_ms": percentile(opens, 90) if opens else None,
        "client_ttfb_median_ms": ms(statistics.median(first_bytes)) if first_bytes else None,
    }


def markdown(summary: dict[str, Any], args: argparse.Namespace) -> str:
    rows = [
        ("streams (continued / not)",
         f"{summary['streams']} ({summary['continued']} / {summary['not_continued']})"),
        ("client-visible errors", summary["client_errors"]),
        ("inter-chunk gap, not continued: median / p99 (ms)",
         f"{summary['median_gap_not_continued_ms']} / {summary['p99_gap_not_continued_ms']}"),
        ("gap at the failover point: median / p90 / max (ms)",
         f"{summary['seam_gap_median_ms']} / {summary['seam_gap_p90_ms']} / "
         f"{summary['seam_gap_max_ms']}"),
        ("added gap at the failover point, median (ms)", summary["added_gap_median_ms"]),
        ("largest gap of a continued stream, median (ms)",
         summary["largest_gap_continued_median_ms"]),
        ("continuation call's time to first token: median / p90 (ms)",
         f"{summary['continuation_ttft_median_ms']} / {summary['continuation_ttft_p90_ms']}"),
        ("first continuation in the process (loads the tokenizer), gap (ms)",
         summary["cold_seam_gap_ms"]),
        ("client time to first byte, not continued: median (ms)",
         summary["client_ttfb_median_ms"]),
    ]
    lines = [f"`python bench/continuation_gap.py --streams {args.streams} --concurrency "
             f"{args.concurrency} --tpot-ms {args.tpot_ms:g} --ttft-ms {args.ttft_ms:g} "
             f"--cut-rate {args.cut_rate:g}`", "", "| measure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=60, help="tokens per answer")
    parser.add_argument("--tpot-ms", type=float, default=10.0)
    parser.add_argument("--ttft-ms", type=float, default=0.0,
                        help="both backends' time to first token")
    parser.add_argument("--cut-rate", type=float, default=0.3,
                        help="share of the first backend's streams cut halfway")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "continuation_gap.json")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        (tmp / "a").mkdir()
        (tmp / "b").mkdir()
        primary, _ = stack.enter_context(start_simulator(
            simulator_config(args.tokens, args.tpot_ms, args.ttft_ms, args.cut_rate), tmp / "a"))
        backup, _ = stack.enter_context(start_simulator(
            simulator_config(args.tokens, args.tpot_ms, args.ttft_ms, 0.0), tmp / "b"))
        router = stack.enter_context(start_routeyard(
            router_config(primary + "/v1", backup + "/v1", tmp), tmp / "router"))
        results = asyncio.run(run(router.chat_url, args.streams, args.concurrency))
    summary = summarise(results, args.tpot_ms)
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": machine_info(), "options": {k: str(v) for k, v in vars(args).items()},
              "summary": summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    if args.markdown:
        print(markdown(summary, args))
    return 1 if summary["client_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
