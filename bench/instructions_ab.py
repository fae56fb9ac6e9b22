"""A/B of the request path's CPU work, counted in instructions: steady on a busy machine.

    python bench/instructions_ab.py --baseline HEAD                  # working tree vs HEAD
    python bench/instructions_ab.py --baseline 16f1161 --candidate e49c872 --requests 400
    python bench/instructions_ab.py --baseline HEAD --refs 192da5b 435f21d   # several at once

Wall-clock A/Bs (bench/ab.py) need a quiet machine: on two shared cores their noise is ±5%.
Instructions are not slowed by a neighbour: each router runs under valgrind's callgrind, with
instrumentation off until its warm-up is done; then `--requests` requests are sent (wrk, c=4, the
simulator at 0 ms behind, bench/gateway.py's config and prompt), and the instructions the whole
router process executed meanwhile (every thread: the event loop, the SQLite writer, ...) are
divided by the requests answered. The figure is instructions per request, with B/A ratios
against the baseline measured in the same run. It counts work, not time: cache misses, lock
waits and the GIL's hand-offs are not in it, so a change that only adds contention needs
bench/ab.py too. It is steadier than wall-clock, not exact: two runs of one commit (300
requests each) differed by 4%, since the SQLite writer's batches and the timers (roll-ups every
5 s, which valgrind's slowness makes fire more often per request) vary; use `--rounds` and
`--requests` to narrow it, and read steps of a few percent as noise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ab import worktree
from gateway import (
    CHAT_PROFILE,
    chat_body,
    routeyard_config,
    set_sim_profile,
    simulator_config,
)
from procs import machine_info, start_routeyard, start_simulator
from wrkload import send_requests, wrk_available

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WARMUP = 300  # requests before collection starts: imports, caches, first allocations done
START_TIMEOUT_S = 900.0  # Python's imports under valgrind take minutes


def _control(*args: str) -> str:
    done = subprocess.run(["callgrind_control", *args], capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0 or "No active callgrind runs" in done.stdout:
        raise RuntimeError(f"callgrind_control {' '.join(args)}: {done.stderr or done.stdout}")
    return done.stdout


def _total_instructions(out_dir: Path) -> int:
    """The sum of the `summary:` lines of the dumps asked for (`callgrind.out.PID.N`; the
    file written at exit, with no suffix, holds nothing once instrumentation is off)."""
    total = 0
    for path in out_dir.glob("callgrind.out.*.*"):
        found = re.search(r"^summary:\s*(\d+)", path.read_text(errors="replace"),
                          re.MULTILINE)
        if found:
            total += int(found.group(1))
    return total


def count(name: str, source: Path | None, sim_v1: str, requests: int, tmp: Path) -> float:
    """Instructions per answered request of one router (`source`: a checkout, or None)."""
    out_dir = tmp / f"cg-{name}"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    wrapper = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
               f"--callgrind-out-file={out_dir}/callgrind.out.%p"]
    config = routeyard_config(sim_v1, tmp / name)
    with start_routeyard(config, tmp / name, name=name, source=source, wrapper=wrapper,
                         timeout=START_TIMEOUT_S) as target:
        body = chat_body(target)
        url = target.chat_url
        warm = send_requests(url, body, WARMUP, connections=4, max_s=900)
        if warm.errors:
            raise RuntimeError(f"{name}: {warm.errors} errors in the warm-up")
        _control("--instr=on", str(target.pid))
        _control("--zero", str(target.pid))  # what switching on itself ran
        run = send_requests(url, body, requests, connections=4, max_s=1800)
        _control("--dump", str(target.pid))
        _control("--instr=off", str(target.pid))
        if run.errors:
            raise RuntimeError(f"{name}: {run.errors} errors")
        answered = run.requests
    return _total_instructions(out_dir) / max(1, answered)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="the ref measured as A")
    parser.add_argument("--candidate", help="the ref measured as B (default: this checkout)")
    parser.add_argument("--refs", nargs="*", default=[],
                        help="more refs, each measured and compared with A")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if not wrk_available() or shutil.which("valgrind") is None:
        print("needs wrk and valgrind (apt-get install wrk valgrind)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="routeyard-instr-") as raw, \
            contextlib.ExitStack() as stack:
        tmp = Path(raw)
        sources: list[tuple[str, Path | None, str]] = []
        for index, ref in enumerate([args.baseline, *args.refs]):
            path, commit = stack.enter_context(worktree(ref, tmp, f"ref{index}"))
            sources.append((ref, path, commit))
        if args.candidate:
            path, commit = stack.enter_context(worktree(args.candidate, tmp, "candidate"))
            sources.append((args.candidate, path, commit))
        else:
            sources.append(("working tree", None, "working tree"))
        sim_url, _ = stack.enter_context(start_simulator(simulator_config(), tmp))
        set_sim_profile(sim_url, CHAT_PROFILE)
        counts: dict[str, list[float]] = {ref: [] for ref, _, _ in sources}
        for round_ in range(args.rounds):
            order = sources if round_ % 2 == 0 else sources[::-1]
            for index, (ref, path, _) in enumerate(order):
                per = count(f"r{round_}-{index}", path, sim_url + "/v1", args.requests, tmp)
                counts[ref].append(per)
                print(f"round {round_ + 1}: {ref}: {per:,.0f} instructions per request",
                      file=sys.stderr, flush=True)
    base = statistics.median(counts[args.baseline])
    result: dict[str, Any] = {
        "time": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine_info(),
        "requests": args.requests, "rounds": args.rounds,
        "refs": [{"ref": ref, "commit": commit, "per_request": counts[ref],
                  "median": statistics.median(counts[ref]),
                  "ratio": statistics.median(counts[ref]) / base}
                 for ref, _, commit in sources]}
    print(f"| ref | commit | instructions per request | vs {args.baseline} |")
    print("|---|---|---|---|")
    for row in result["refs"]:
        print(f"| {row['ref']} | {row['commit'][:10]} | {row['median']:,.0f} | "
              f"{row['ratio']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
