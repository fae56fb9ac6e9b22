"""`routeyard fleet-sim` against two published results, qualitatively (issue 19).

    python bench/fleet_validation.py                 # both, ~1 minute (docs/fleet.md's figures)
    python bench/fleet_validation.py --only pools --requests 10000 --rate 60

1. Context-length pools: the fewest H100s (Llama-3.1-8B) meeting a p99 TTFT SLO for a
   long-tailed length mix (`longtail`: ~98% chat, ~2% documents of 12k-64k tokens), in one
   mixed pool (least loaded) and in two pools split at 8,192 tokens (context_pools; each pool
   searched for its own minimum with its own p99 under the SLO, which bounds the overall p99).
   Published: 17-39% fewer GPUs with pools.
2. The 1/W law: output tokens per joule of one saturated H100 replica against the context
   length (every request the same input length, 256 output tokens). Published: tokens per watt
   roughly halve per doubling of the context.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

import numpy as np

from routeyard.fleet.command import find_min_gpus
from routeyard.fleet.engine import simulate
from routeyard.fleet.policies import POLICIES
from routeyard.fleet.profiles import PoolSpec, load_profiles
from routeyard.fleet.report import Slo, summarise
from routeyard.fleet.workload import Workload, synthetic


def pools_vs_mixed(requests: int, rate: float, slos: list[float], split: int) -> None:
    profile = load_profiles()["H100"]["llama-3.1-8b"]
    work = synthetic("longtail", requests, rate, seed=0)
    print(f"\n### Context-length pools vs one mixed pool ({requests:,} longtail requests at "
          f"{rate:g}/s, H100 + Llama-3.1-8B, split at {split:,} tokens)\n")
    print("| p99 TTFT SLO | mixed pool GPUs | pools GPUs (short + long) | fewer |")
    print("|---|---|---|---|")
    for slo_ms in slos:
        slo = Slo(ttft_ms=slo_ms)
        mixed = find_min_gpus(work, [PoolSpec("mixed", profile, 1)], POLICIES["least_loaded"],
                              slo)
        split_pools = [PoolSpec("short", profile, 1, max_context=split),
                       PoolSpec("long", profile, 1)]
        found = find_min_gpus(work, split_pools, POLICIES["context_pools"], slo)
        total = sum(p.count for p in found)
        saved = 1 - total / mixed[0].count
        print(f"| {slo_ms:,.0f} ms | {mixed[0].count} | {total} ({found[0].count} + "
              f"{found[1].count}) | {saved:.0%} |", flush=True)


def tokens_per_watt(contexts: list[int], output: int = 256) -> None:
    profile = load_profiles()["H100"]["llama-3.1-8b"]
    pool = PoolSpec("one", profile, 1)
    print(f"\n### The 1/W law: one saturated H100 replica, {output} output tokens a request\n")
    print("| context (input tokens) | batch slots (KV-limited) | output tokens/s "
          "| output tokens/J | ratio to the previous |")
    print("|---|---|---|---|---|")
    previous = None
    for context in contexts:
        slots = min(profile.max_batch, profile.kv_capacity_tokens // (context + output))
        n = max(4 * slots, 200)
        work = Workload(np.zeros(n), np.full(n, context), np.full(n, output))
        out = simulate(work, [replace(pool)], POLICIES["round_robin"])
        figures = summarise(work, out, [pool], Slo())["overall"]
        per_joule = figures["output_tokens_per_joule"]
        ratio = "" if previous is None else f"{per_joule / previous:.2f}"
        print(f"| {context:,} | {slots} | {figures['output_tokens_per_s']:,.0f} | "
              f"{per_joule:.2f} | {ratio} |", flush=True)
        previous = per_joule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["pools", "watts"], default=None)
    parser.add_argument("--requests", type=int, default=40_000)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--slo-ms", type=float, nargs="+", default=[1500.0, 2000.0, 3000.0])
    parser.add_argument("--split", type=int, default=8192)
    args = parser.parse_args()
    started = time.perf_counter()
    if args.only in (None, "pools"):
        pools_vs_mixed(args.requests, args.rate, args.slo_ms, args.split)
    if args.only in (None, "watts"):
        tokens_per_watt([1024, 2048, 4096, 8192, 16384, 32768, 65536])
    print(f"\n{time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.2f} "
          f"({os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
