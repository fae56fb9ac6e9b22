"""What an ensemble costs a streaming client in time to first byte:
`python bench/ensemble_ttfb.py [--requests 10] [--markdown]`

One simulator serves three members and two judges at fixed latencies (no jitter: the output
length is fixed too), and `routeyard serve` routes each model name to one decision: a single
model (the fastest member, and the slowest), and an ensemble of the three members per
aggregation (vote; rank with a judge that answers one token; synthesise with a judge that
writes a whole answer, streamed live). Requests go one at a time, streamed, over HTTP; the
client times the first SSE frame and the last. Ratios are against the single fastest member,
measured in the same run. (The simulated rank judge's one word is no verdict, so rank falls
back to the vote: what is measured is the time its judge calls take.)

Expected: vote and rank replay a decided answer, so their first byte comes after the slowest
member's whole answer (plus the judge's calls for rank); synthesise streams the judge, so its
first byte is the slowest member's whole answer plus the judge's time to first token.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from procs import machine_info, start_routeyard, start_simulator
from ttfb_client import percentile

OUTPUT_TOKENS = 40
TPOT_MS = 10
# member → time to first token (ms); a whole answer takes ttft + (tokens - 1) · tpot.
MEMBERS = {"m1": 100, "m2": 150, "m3": 200}
JUDGE_TTFT_MS = 120
SHAPES: dict[str, dict[str, Any] | None] = {  # decision → ensemble (None: one model)
    "single-fastest": None,
    "single-slowest": None,
    "vote": {"aggregate": "vote", "normalise": "exact"},
    "rank": {"aggregate": "rank", "judge": "judge-rank"},
    "synthesise": {"aggregate": "synthesise", "judge": "judge"},
}


def simulator_config() -> dict[str, Any]:
    fixed = {"tpot_ms": TPOT_MS, "output_tokens_mean": OUTPUT_TOKENS, "output_tokens_sd": 0}
    models = {name: {**fixed, "ttft_ms": ttft} for name, ttft in MEMBERS.items()}
    models["judge"] = {**fixed, "ttft_ms": JUDGE_TTFT_MS}
    models["judge-rank"] = {**fixed, "ttft_ms": JUDGE_TTFT_MS, "output_tokens_mean": 1,
                            "output_tokens_min": 1, "output_tokens_max": 1}
    return {"models": models, "seed": 1}


def router_config(sim_url: str) -> dict[str, Any]:
    names = [*MEMBERS, "judge", "judge-rank"]
    decisions = []
    for shape, ensemble in SHAPES.items():
        candidate = "m3" if shape == "single-slowest" else "m1"
        decision: dict[str, Any] = {"name": shape, "candidates": [candidate]}
        if ensemble is not None:
            decision["ensemble"] = {"members": list(MEMBERS), **ensemble}
        decisions.append(decision)
    return {
        "models": [{"name": n, "endpoints": [{"base_url": sim_url + "/v1"}]} for n in names],
        "decisions": decisions,
        "default": {"candidates": ["m1"]},
        "model_routes": [{"match": shape, "decision": shape} for shape in SHAPES],
        "pool": {"health_check": {"interval_s": 0}},
        "state": {"backend": "memory"},
    }


def timed_stream(client: httpx.Client, url: str, shape: str) -> tuple[float, float]:
    """(first SSE frame, last byte), in ms since the request was sent."""
    body = {"model": shape, "stream": True,
            "messages": [{"role": "user", "content": "Explain routing briefly."}]}
    started = time.perf_counter()
    first = None
    with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if first is None and line.startswith("data: "):
                first = time.perf_counter()
    end = time.perf_counter()
    assert first is not None
    return (first - started) * 1000, (end - started) * 1000


def run(requests: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, \
            start_simulator(simulator_config(), Path(tmp)) as (sim_url, _), \
            start_routeyard(router_config(sim_url), Path(tmp) / "router") as target, \
            httpx.Client(timeout=60) as client:
        url = target.chat_url
        for shape in SHAPES:
            timed_stream(client, url, shape)  # warm: connections, first-use costs
        for shape in SHAPES:
            firsts, totals = zip(*(timed_stream(client, url, shape) for _ in range(requests)),
                                 strict=True)
            results[shape] = {"ttfb_ms_median": statistics.median(firsts),
                              "ttfb_ms_p90": percentile(list(firsts), 90),
                              "total_ms_median": statistics.median(totals)}
    base = results["single-fastest"]["ttfb_ms_median"]
    for found in results.values():
        found["ttfb_vs_single_fastest"] = found["ttfb_ms_median"] / base
    return results


def markdown(results: dict[str, Any]) -> str:
    lines = ["| Shape | TTFB median (ms) | TTFB p90 (ms) | Whole stream median (ms) | "
             "TTFB vs single fastest |", "|---|---:|---:|---:|---:|"]
    for shape, found in results.items():
        lines.append(f"| {shape} | {found['ttfb_ms_median']:.0f} | {found['ttfb_ms_p90']:.0f} "
                     f"| {found['total_ms_median']:.0f} | "
                     f"{found['ttfb_vs_single_fastest']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10, help="streams per shape")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    results = run(args.requests)
    if args.markdown:
        print(markdown(results))
    else:
        json.dump({"machine": machine_info(), "members_ttft_ms": MEMBERS,
                   "judge_ttft_ms": JUDGE_TTFT_MS, "tpot_ms": TPOT_MS,
                   "output_tokens": OUTPUT_TOKENS, "results": results}, sys.stdout, indent=2)
        print()


if __name__ == "__main__":
    main()
