"""What tracing costs, as router CPU per request: off, and on at several sample ratios, in one
run. CPU time (the router process's user + system, from /proc) is steadier than throughput on a
shared machine: another process's load slows a request but does not add to its CPU.

    python bench/tracing_cpu.py                          # ratios 0.01, 0.1, 1.0
    python bench/tracing_cpu.py --ratios 0.1 1 --requests 4000 --rounds 3

Each configuration is one `routeyard serve` (bench/gateway.py's config, the simulator at 0 ms
behind it); traced ones export over OTLP/HTTP to bench/otlp_sink.py. Every round sends the same
count of requests (c=16, wrk) to each router in turn and reads its CPU before and after; the
median round is reported, each as a ratio against tracing off measured in the same round.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from ab import start_sink
from gateway import SIM_MODEL, chat_body, check_target, routeyard_config, simulator_config
from procs import Target, machine_info, start_routeyard, start_simulator
from wrkload import send_requests, wrk_available

HERE = Path(__file__).resolve().parent
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    parser.add_argument("--requests", type=int, default=4000, help="per router per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "tracing_cpu.json")
    args = parser.parse_args(argv)
    if not wrk_available():
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="routeyard-tracing-") as tmp_name, \
            contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        sim_url, _ = stack.enter_context(start_simulator(simulator_config(), tmp))
        direct = Target("direct", sim_url + "/v1", SIM_MODEL, 0)
        sink = stack.enter_context(start_sink())
        routers: dict[str, Target] = {}
        for ratio in [None, *args.ratios]:
            name = "off" if ratio is None else f"sampled {ratio:g}"
            config = routeyard_config(direct.base_url, tmp / name)
            if ratio is not None:
                config["tracing"] = {"enabled": True, "endpoint": f"{sink}/v1/traces",
                                     "sample_ratio": ratio}
            routers[name] = stack.enter_context(start_routeyard(config, tmp / name, name=name))
        for target in routers.values():
            check_target(target)
            send_requests(target.chat_url, chat_body(target), 500, connections=16)
        rounds: list[dict[str, float]] = []
        for round_no in range(args.rounds):
            found: dict[str, float] = {}
            order = list(routers.values())
            for target in order if round_no % 2 == 0 else reversed(order):
                before = cpu_seconds(target.pid)
                run = send_requests(target.chat_url, chat_body(target), args.requests,
                                    connections=16)
                if run.errors:
                    raise RuntimeError(f"{target.name}: {run.errors} errors")
                found[target.name] = (cpu_seconds(target.pid) - before) / run.requests * 1e6
                print(f"  round {round_no + 1} {target.name}: {found[target.name]:.0f} µs CPU "
                      "a request", file=sys.stderr, flush=True)
            rounds.append(found)
    median = {name: statistics.median(r[name] for r in rounds) for name in routers}
    summary = {name: {"cpu_us_per_request": round(us, 1),
                      "vs_off": round(us / median["off"], 3)} for name, us in median.items()}
    out = {"meta": {"command": "python bench/tracing_cpu.py " + " ".join(
        sys.argv[1:] if argv is None else argv), "machine": machine_info(),
        "requests": args.requests, "rounds": args.rounds}, "rounds": rounds,
        "summary": summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print("\n| tracing | router CPU a request | vs off |\n|---|---|---|")
    for name, row in summary.items():
        print(f"| {name} | {row['cpu_us_per_request']:.0f} µs | {row['vs_off']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
