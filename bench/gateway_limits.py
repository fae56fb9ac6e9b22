"""What keys, limits and budgets on Redis cost: the same build with them on and off, in one run.

    python bench/gateway_limits.py [--duration 10] [--rounds 3] [--redis-url URL]
                                   [--out bench/results/gateway_limits.json]

Starts one simulator (0 ms backend) and two `routeyard serve` processes (1 worker each) with
bench/gateway.py's config, both on the same Redis state (keys and the decision log in Redis):

- `keys-off`: no keys configured; every request is anonymous, nothing is counted;
- `keys-on`: an admin key, and a virtual key with RPM, TPM, concurrency and a hard daily and a
  soft monthly budget, all far above the load, so every request is resolved, admitted in
  Redis (one Lua script), settled (another), and its spend added to its key and its tenant.

- `keys-floor`: keys-on with scripts that count nothing (bench/serve_floor.py): the key
  resolved, the prompt's tokens counted, the same round trips, but the admission script answers
  "admitted" at once. What it adds over keys-off is the floor of any design with one Redis
  round trip on the request's path, on this machine.

wrk measures each at concurrency 1 (p50 latency) and 64 (throughput), the two targets back to
back in each round. The verdicts use the median over rounds of each round's paired difference
(on minus off, run one after the other on the same machine state): on a shared machine, load
from elsewhere moves both runs of a round together, while the median of each target alone
can pair a quiet round of one with a busy round of the other. Both figures are reported.
Goals (issue 13): the added p50 latency at c=1 is at most 0.3 ms, and c=64 throughput falls by
at most 15%; no request may fail.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway import chat_body, check_target, routeyard_config, simulator_config
from procs import Target, machine_info, start_routeyard, start_simulator, tree_cpu_seconds
from wrkload import run_wrk, send_requests, wrk_available

HERE = Path(__file__).resolve().parent
ADMIN_KEY = "sk-bench-admin"
TARGETS = ("keys-off", "keys-on", "keys-floor")
ADDED_LATENCY_MAX_MS = 0.3
THROUGHPUT_DROP_MAX_PCT = 15.0
# Far above anything one wrk thread can send.
FAR_ABOVE = {"rpm": 100_000_000, "tpm": 10_000_000_000, "max_parallel": 100_000,
             "budgets": [{"period": "day", "limit_usd": 1_000_000.0, "mode": "hard"},
                         {"period": "month", "limit_usd": 10_000_000.0, "mode": "soft"}]}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def config(backend_v1: str, tmp: Path, redis_url: str, prefix: str, *, keys: bool
           ) -> dict[str, Any]:
    found = routeyard_config(backend_v1, tmp)
    found["state"] = {"backend": "redis", "redis_url": redis_url, "key_prefix": prefix}
    if keys:
        found["server"] = {**found["server"], "admin_keys": [ADMIN_KEY]}
    return found


def admin_call(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), method="POST",
        headers={"content-type": "application/json", "authorization": f"Bearer {ADMIN_KEY}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.loads(response.read()))


def virtual_key(target: Target) -> str:
    """A key with limits and budgets far above the load; the full key."""
    root = target.base_url.removesuffix("/v1")
    return str(admin_call(root, "/admin/keys", {"name": "bench", "limits": FAR_ABOVE})["key"])


def forget_keys(redis_url: str, prefix: str) -> None:
    """Leave no bench keys behind in Redis."""
    with contextlib.suppress(Exception):
        import redis

        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}-*", count=1000))
        if keys:
            client.unlink(*keys)


def measure(targets: list[Target], sim_pid: int, connections: int, duration_s: float,
            rounds: int) -> dict[str, Any]:
    """Interleaved wrk runs; per target the median round (p50 at c=1, throughput else)."""
    runs: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
    for number in range(rounds):
        for target in targets:
            before = (tree_cpu_seconds(target.pid), tree_cpu_seconds(sim_pid))
            result = run_wrk(target.chat_url, chat_body(target), connections=connections,
                             duration_s=duration_s, headers=target.headers)
            cpu = tree_cpu_seconds(target.pid) - before[0]
            run = {**result.to_dict(),
                   "server_cpu_ms_per_req": round(cpu * 1000 / max(result.requests, 1), 4)}
            runs[target.name].append(run)
            log(f"c={connections} {target.name} round {number + 1}: {result.rps:,.0f} req/s, "
                f"p50 {result.p50_ms:.3f} ms, p99 {result.p99_ms:.3f} ms, "
                f"{result.errors} errors")
    key = "p50_ms" if connections == 1 else "rps"
    chosen = {}
    for name, found in runs.items():
        ordered = sorted(found, key=lambda r: r[key])
        chosen[name] = {**ordered[(len(ordered) - 1) // 2],
                        "rounds": [r[key] for r in found],
                        "rounds_median": statistics.median(r[key] for r in found),
                        "errors_all_rounds": sum(r["errors"] for r in found)}
    return chosen


def paired(measure: dict[str, Any], key: str, name: str = "keys-on") -> list[float]:
    """Each round's `name`-minus-off difference: ms for latency, % change for throughput."""
    pairs = zip(measure["keys-off"]["rounds"], measure[name]["rounds"], strict=True)
    if key == "p50_ms":
        return [round(on - off, 4) for off, on in pairs]
    return [round((on / off - 1) * 100, 2) for off, on in pairs]


def goals(latency: dict[str, Any], throughput: dict[str, Any]) -> list[dict[str, Any]]:
    added = statistics.median(latency["paired_added_ms"])
    drop = -statistics.median(throughput["paired_change_pct"])
    errors = sum(latency[name]["errors_all_rounds"] + throughput[name]["errors_all_rounds"]
                 for name in TARGETS)
    return [
        {"measure": "added p50 latency at c=1 (median of paired rounds)",
         "goal": f"<= {ADDED_LATENCY_MAX_MS} ms", "value": f"{added:+.3f} ms",
         "met": added <= ADDED_LATENCY_MAX_MS},
        {"measure": "throughput change at c=64 (median of paired rounds)",
         "goal": f">= -{THROUGHPUT_DROP_MAX_PCT:g}%", "value": f"{-drop:+.1f}%",
         "met": drop <= THROUGHPUT_DROP_MAX_PCT},
        {"measure": "errors in every round", "goal": "0", "value": str(errors),
         "met": errors == 0},
    ]


def table(results: dict[str, Any]) -> str:
    latency, throughput = results["latency_c1"], results["throughput_c64"]
    lines = ["| | keys off | keys, limits, budgets on, Redis | change | round-trip floor "
             "(scripts count nothing) | change |", "|---|---|---|---|---|---|"]
    for label, data, key, unit in (("p50 latency, c=1", latency, "p50_ms", "ms"),
                                   ("p99 latency, c=1", latency, "p99_ms", "ms"),
                                   ("throughput, c=64", throughput, "rps", "req/s"),
                                   ("server CPU per request, c=64", throughput,
                                    "server_cpu_ms_per_req", "ms")):
        off = data["keys-off"][key]
        cells = [f"{off:,.3f} {unit}"]
        for name in ("keys-on", "keys-floor"):
            value = data[name][key]
            change = (f"{value - off:+.3f} {unit}" if unit == "ms"
                      else f"{(value / off - 1) * 100:+.1f}%")
            cells += [f"{value:,.3f} {unit}", change]
        lines.append(f"| {label} (median run) | {' | '.join(cells)} |")
    for name, label in (("", "keys on"), ("_floor", "floor")):
        lines.append(
            f"| paired rounds, {label} - off | p50 c=1: "
            f"{', '.join(f'{d:+.3f}' for d in latency[f'paired_added_ms{name}'])} ms | "
            f"throughput c=64: "
            f"{', '.join(f'{d:+.1f}' for d in throughput[f'paired_change_pct{name}'])}% "
            "| | | |")
    lines.append("")
    lines += [f"- {g['measure']}: {g['value']} (goal {g['goal']}): "
              f"{'met' if g['met'] else 'NOT met'}" for g in results["goals"]]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per measure")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "gateway_limits.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not wrk_available():
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    prefix = f"routeyard-bench-{int(time.time())}"
    with tempfile.TemporaryDirectory(prefix="routeyard-bench-") as tmp_name, \
            contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        sim_url, sim_pid = stack.enter_context(start_simulator(simulator_config(), tmp))
        backend = sim_url + "/v1"
        targets = []
        for name in TARGETS:
            keys = name != "keys-off"
            target = stack.enter_context(start_routeyard(
                config(backend, tmp / name, args.redis_url, f"{prefix}-{name}", keys=keys),
                tmp / name, name=name,
                script=HERE / "serve_floor.py" if name == "keys-floor" else None))
            key = virtual_key(target) if keys else "sk-unused"
            target.headers = {"Authorization": f"Bearer {key}"}  # same bytes on both
            check_target(target)
            run = send_requests(target.chat_url, chat_body(target), 1000, connections=64,
                                headers=target.headers)
            log(f"warm-up {name}: {run.requests} requests, {run.errors} errors")
            targets.append(target)
        results: dict[str, Any] = {"meta": {
            "command": "python bench/gateway_limits.py " + " ".join(sys.argv[1:]),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine_info(), "duration_s": args.duration, "rounds": args.rounds,
            "note": "load generator, simulator, Redis and both routers share the machine"}}
        latency = measure(targets, sim_pid, 1, args.duration, args.rounds)
        results["latency_c1"] = {
            **latency, "paired_added_ms": paired(latency, "p50_ms"),
            "paired_added_ms_floor": paired(latency, "p50_ms", "keys-floor")}
        throughput = measure(targets, sim_pid, 64, args.duration, args.rounds)
        results["throughput_c64"] = {
            **throughput, "paired_change_pct": paired(throughput, "rps"),
            "paired_change_pct_floor": paired(throughput, "rps", "keys-floor")}
        forget_keys(args.redis_url, prefix)
    results["goals"] = goals(results["latency_c1"], results["throughput_c64"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nresults written to {args.out}")
    return 0 if all(g["met"] for g in results["goals"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
