"""How long `routeyard fleet-sim` takes on a million requests (issue 19's goal: under 60 s).

    python bench/fleet_sim_speed.py                        # 1,000,000 chat requests, 64 H100
    python bench/fleet_sim_speed.py --requests 200000 --policy round_robin

Times the workload's sampling, the simulation and the summary separately (wall clock, one
run), and prints the machine's load average before and after: the machine is shared, so a busy
neighbour slows the figure down, never up. The pool is sized to keep up with the rate (no
queue that grows without bound), as a real sizing run would be.
"""

from __future__ import annotations

import argparse
import os
import time

from routeyard.fleet.engine import simulate
from routeyard.fleet.policies import make_policy
from routeyard.fleet.profiles import PoolSpec, load_profiles
from routeyard.fleet.report import Slo, summarise
from routeyard.fleet.workload import synthetic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--gpus", type=int, default=64)
    parser.add_argument("--rate", type=float, default=600.0)
    parser.add_argument("--workload", default="chat")
    parser.add_argument("--policy", default="least_loaded")
    args = parser.parse_args()
    load_before = os.getloadavg()
    pool = PoolSpec("h100", load_profiles()["H100"]["llama-3.1-8b"], args.gpus)
    started = time.perf_counter()
    work = synthetic(args.workload, args.requests, args.rate, seed=0)
    sampled = time.perf_counter()
    outcome = simulate(work, [pool], make_policy(args.policy))
    simulated = time.perf_counter()
    figures = summarise(work, outcome, [pool], Slo(ttft_ms=500))["overall"]
    done = time.perf_counter()
    print(f"{args.requests:,} {args.workload} requests, {args.gpus} x H100, {args.policy}, "
          f"rate {args.rate:g}/s ({outcome.end:,.0f} simulated seconds)")
    print(f"  sampling {sampled - started:.2f} s, simulation {simulated - sampled:.2f} s, "
          f"summary {done - simulated:.2f} s; total {done - started:.2f} s "
          f"({(simulated - sampled) / args.requests * 1e6:.1f} us a request)")
    print(f"  TTFT p99 {figures['ttft_p99_ms']:.0f} ms, TPOT p50 {figures['tpot_p50_ms']:.1f} ms")
    print(f"  load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} "
          f"({os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
