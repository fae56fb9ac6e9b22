"""A/B benchmark of the request path: this checkout against another commit, in one run.

    python bench/ab.py --baseline HEAD            # uncommitted changes vs the last commit
    python bench/ab.py --baseline HEAD~1 --rounds 7 --duration 8 --markdown
    python bench/ab.py --baseline 4758e69 --candidate dcb6ce4   # two commits
    python bench/ab.py --baseline HEAD~1 --keys   # both with a virtual key counted in Redis
    python bench/ab.py --baseline HEAD --candidate HEAD --trace-b 1.0   # the cost of tracing

Both routers run the same generated config (gateway.py's) with the same venv: a commit's
`routeyard` package comes from a temporary `git worktree` of the ref, put first on PYTHONPATH
(each router runs in its own temporary folder, so the repository's working tree is never
picked up by accident); without `--candidate`, B is this checkout's working tree.
One simulator at 0 ms serves both, and the direct path is measured beside them. Each round runs
wrk against direct, A and B in turn (the order alternates between rounds, so drift on a shared
machine hits both alike), for c=1 latency and c=64 throughput, then the streaming client for
time to first byte at c=16; the median round is reported, with B/A ratios of the medians and
every round in the JSON. With `--keys`, both routers keep their state in Redis and every request
carries a virtual key whose limits and budgets are counted (bench/gateway_limits.py's keys-on):
the A/B of a change to the gateway's path.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway import (
    CHAT_PROFILE,
    SIM_MODEL,
    STREAM_PROFILE,
    chat_body,
    check_target,
    routeyard_config,
    set_sim_profile,
    simulator_config,
)
from gateway_limits import config as keyed_config
from gateway_limits import forget_keys, virtual_key
from procs import Target, machine_info, start_routeyard, start_simulator
from wrkload import run_wrk, send_requests, wrk_available

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


@contextlib.contextmanager
def worktree(ref: str, tmp: Path, name: str = "baseline") -> Iterator[tuple[Path, str]]:
    """A detached checkout of `ref`; yields (path, full commit id)."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", ref], check=True,
                            capture_output=True, text=True).stdout.strip()
    path = tmp / name
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), commit],
                   check=True, capture_output=True, text=True)
    try:
        yield path, commit
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
                       capture_output=True, text=True)


@contextlib.contextmanager
def start_sink() -> Iterator[str]:
    """bench/otlp_sink.py: an OTLP/HTTP receiver that discards; yields its URL."""
    process = subprocess.Popen([sys.executable, str(HERE / "otlp_sink.py")],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().split(" on ")[-1].strip()
    finally:
        process.terminate()
        process.wait(10)


def measure(targets: list[Target], connections: int, duration_s: float, rounds: int
            ) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {t.name: [] for t in targets}
    for round_no in range(rounds):
        order = targets if round_no % 2 == 0 else [targets[0], *reversed(targets[1:])]
        for target in order:
            result = run_wrk(target.chat_url, chat_body(target), connections=connections,
                             duration_s=duration_s, headers=target.headers)
            if result.errors:
                raise RuntimeError(f"{target.name}: {result.errors} errors at c={connections}")
            runs[target.name].append({"rps": result.rps, "p50_ms": result.p50_ms,
                                      "p99_ms": result.p99_ms})
            print(f"  c={connections} round {round_no + 1} {target.name}: "
                  f"{result.rps:,.0f} req/s, p50 {result.p50_ms:.3f} ms", file=sys.stderr,
                  flush=True)
    return {name: {"rps": statistics.median(r["rps"] for r in found),
                   "p50_ms": statistics.median(r["p50_ms"] for r in found),
                   "rounds": found} for name, found in runs.items()}


def measure_streams(targets: list[Target], sim_url: str, duration_s: float, rounds: int,
                    concurrency: int = 16) -> dict[str, Any]:
    """Time to the first SSE chunk (bench/ttfb_client.py, a process of its own)."""
    runs: dict[str, list[float]] = {t.name: [] for t in targets}
    set_sim_profile(sim_url, STREAM_PROFILE)
    try:
        for round_no in range(rounds):
            order = targets if round_no % 2 == 0 else [targets[0], *reversed(targets[1:])]
            for target in order:
                done = subprocess.run(
                    [sys.executable, str(HERE / "ttfb_client.py"), "--url", target.chat_url,
                     "--body", chat_body(target, stream=True).decode(), "--concurrency",
                     str(concurrency), "--duration", str(duration_s), "--warmup", "1",
                     *(f"--header={name}:{value}" for name, value in target.headers.items())],
                    capture_output=True, text=True, check=True, timeout=duration_s + 120)
                result = json.loads(done.stdout)
                if result["errors"]:
                    raise RuntimeError(f"{target.name}: {result['errors']} stream errors")
                runs[target.name].append(result["ttfb_p50_ms"])
                print(f"  streams round {round_no + 1} {target.name}: TTFB p50 "
                      f"{result['ttfb_p50_ms']:.3f} ms", file=sys.stderr, flush=True)
    finally:
        set_sim_profile(sim_url, CHAT_PROFILE)
    return {name: {"ttfb_p50_ms": statistics.median(found), "rounds": found}
            for name, found in runs.items()}


def summary(results: dict[str, Any]) -> dict[str, Any]:
    c1, c64 = results["latency_c1"], results["throughput_c64"]
    direct = c1["direct"]["p50_ms"]
    added = {name: c1[name]["p50_ms"] - direct for name in ("A", "B")}
    streams = results["stream_ttfb_c16"]
    ttfb = {name: streams[name]["ttfb_p50_ms"] - streams["direct"]["ttfb_p50_ms"]
            for name in ("A", "B")}
    return {
        "added_latency_c1_ms": {"A": round(added["A"], 4), "B": round(added["B"], 4),
                                "B/A": round(added["B"] / added["A"], 3)},
        "added_stream_ttfb_c16_ms": {"A": round(ttfb["A"], 4), "B": round(ttfb["B"], 4),
                                     "B/A": round(ttfb["B"] / ttfb["A"], 3)},
        "throughput_c64_rps": {"direct": round(c64["direct"]["rps"]),
                               "A": round(c64["A"]["rps"]), "B": round(c64["B"]["rps"]),
                               "B/A": round(c64["B"]["rps"] / c64["A"]["rps"], 3)},
    }


def markdown(meta: dict[str, Any], result: dict[str, Any]) -> str:
    added, rps = result["added_latency_c1_ms"], result["throughput_c64_rps"]
    ttfb = result["added_stream_ttfb_c16_ms"]
    return "\n".join([
        f"`{meta['command']}` ({meta['date']}, {meta['machine']['cpu_model']}, "
        f"{meta['machine']['nproc']} cores; A = {meta['baseline_commit'][:10]}, "
        f"B = {meta['candidate']})",
        "",
        "| measure | direct | A (baseline) | B (this change) | B/A |",
        "|---|---|---|---|---|",
        f"| added latency p50, c=1 | - | +{added['A']:.3f} ms | +{added['B']:.3f} ms "
        f"| {added['B/A']:.2f} |",
        f"| throughput, c=64 | {rps['direct']:,} req/s | {rps['A']:,} req/s | {rps['B']:,} "
        f"req/s | {rps['B/A']:.2f} |",
        f"| added stream TTFB p50, c=16 | - | +{ttfb['A']:.3f} ms | +{ttfb['B']:.3f} ms "
        f"| {ttfb['B/A']:.2f} |",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="HEAD", help="git ref of A (default HEAD)")
    parser.add_argument("--candidate", default=None,
                        help="git ref of B (default: this checkout's working tree)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per measure (median)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "ab.json")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--keys", action="store_true",
                        help="both routers on Redis, each request with a counted virtual key")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--trace-b", type=float, metavar="RATIO", default=None,
                        help="B traces with this sample ratio, exporting to bench/otlp_sink.py")
    args = parser.parse_args(argv)
    if not wrk_available():
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "routeyard"],
                           capture_output=True, text=True).stdout.strip()
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=10", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    meta: dict[str, Any] = {
        "command": "python bench/ab.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine_info(),
        "candidate": f"{head}{' + uncommitted changes' if dirty else ''}",
        "duration_s": args.duration, "rounds": args.rounds,
    }
    with tempfile.TemporaryDirectory(prefix="routeyard-ab-") as tmp_name, \
            contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        source, meta["baseline_commit"] = stack.enter_context(worktree(args.baseline, tmp))
        candidate: Path | None = None
        if args.candidate is not None:
            candidate, commit = stack.enter_context(worktree(args.candidate, tmp, "candidate"))
            meta["candidate"] = commit[:10]
        sim_url, sim_pid = stack.enter_context(start_simulator(simulator_config(), tmp))
        direct = Target("direct", sim_url + "/v1", SIM_MODEL, sim_pid)
        prefix = f"routeyard-ab-{int(datetime.now(UTC).timestamp())}"
        config_a, config_b = ((keyed_config(direct.base_url, tmp / n, args.redis_url,
                                            f"{prefix}-{n}", keys=True) if args.keys
                               else routeyard_config(direct.base_url, tmp / n)) for n in "ab")
        if args.trace_b is not None:
            sink = stack.enter_context(start_sink())
            config_b["tracing"] = {"enabled": True, "endpoint": f"{sink}/v1/traces",
                                   "sample_ratio": args.trace_b}
            meta["trace_b"] = f"B traces, sample_ratio {args.trace_b}, to an OTLP/HTTP sink"
        a = stack.enter_context(start_routeyard(config_a, tmp / "a", name="A", source=source))
        b = stack.enter_context(start_routeyard(config_b, tmp / "b", name="B",
                                                source=candidate))
        targets = [direct, a, b]
        if args.keys:
            meta["keys"] = "a virtual key with limits and budgets, counted in Redis"
            for target in (a, b):
                target.headers = {"Authorization": f"Bearer {virtual_key(target)}"}
            stack.callback(forget_keys, args.redis_url, prefix)
        for target in targets:
            check_target(target)
            send_requests(target.chat_url, chat_body(target), 1000, connections=64,
                          headers=target.headers)
        results = {"latency_c1": measure(targets, 1, args.duration, args.rounds),
                   "throughput_c64": measure(targets, 64, args.duration, args.rounds),
                   "stream_ttfb_c16": measure_streams(targets, sim_url, args.duration,
                                                      args.rounds)}
    out = {"meta": meta, **results, "summary": summary(results)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["summary"], indent=2))
    if args.markdown:
        print("\n" + markdown(meta, out["summary"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
