"""Soak: `routeyard serve` over the simulator for a long while, at half of its measured
capacity, with faults at low rates; does anything grow?

    python bench/soak.py                       # 2 minutes (a smoke run)
    python bench/soak.py --duration 3600       # the report's hour
    python bench/soak.py --duration 300 --rate 200 --window 10

1. Capacity, with `wrk`: each kind of request of the mix alone at saturation, fault-free; the
   mix's capacity is their share-weighted harmonic mean. The soak runs at half of it (or at
   `--rate`), open loop: requests leave on schedule whether or not earlier ones are answered.
2. Faults at low rates on every simulated backend: 5xx, 429, cut streams and connections,
   slow (hanging) answers. Routeyard retries and fails over; what still reaches the client is
   counted as client-visible errors.
3. The mix: chat completions (whole and streamed), Anthropic Messages (both), Responses (both,
   stored) and embeddings.
4. Every `--window` seconds: the router process's RSS, open file descriptors and threads (from
   /proc: asyncio tasks are not visible from outside, and no debug endpoint is added for them),
   its CPU, and the window's throughput, client-visible error rate and p50/p99 latency (to the
   last byte).

Targets, judged after the warm-up: RSS within 10% of its first value, file descriptors and
threads not growing, p99 in the last third of the run within 1.5x of the first third's. Writes
bench/results/soak.json and soak.md; exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from fuzz import Served, serve_logged
from procs import machine_info, start_simulator
from wrkload import run_wrk, wrk_available

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

SIM_MODELS = ("sim-a", "sim-b", "sim-c", "sim-embed")
# Low-rate faults on every backend (shares of requests; one draw walks them in this order).
# The slow ones (429s waited out, hangs) stay well under 1%, so that p99 measures the
# router rather than where the faults' own delays happen to fall.
FAULTS = {"error_5xx_rate": 0.005, "error_429_rate": 0.002, "hang_rate": 0.001,
          "disconnect_rate": 0.002, "disconnect_before_first_byte_rate": 0.002,
          "hang_s": 1.5, "retry_after_s": 0.2}
RSS_TOLERANCE = 0.10  # RSS stays within ±10% of the first post-warm-up sample
P99_TOLERANCE = 1.5  # the last third's p99 within 1.5x the first's (after the warm-up)
# Sockets come and go with the connections open at a sampling instant (clients', and the
# pool's to the backends), so a leak of them is judged once the load has stopped and
# keep-alive connections have idled out (aiohttp's 15 s): the router then holds no client
# connection and no more descriptors than before any load, beside the live connections its
# pool keeps to the backend (health checks keep a few in use). Other descriptors (files,
# pipes, the event loop's) must not grow at all while the load runs.
IDLE_AFTER_S = 17.0
IDLE_FD_SLACK = 2
FILE_SLACK = 2
THREAD_SLACK = 2


# -- the traffic -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of request in the mix."""

    name: str
    path: str
    body: dict[str, Any]
    share: float


_PROMPT = [{"role": "user", "content": "Summarise how a router picks a model, briefly."}]
MIX = (
    Kind("chat", "/v1/chat/completions",
         {"model": "auto", "messages": _PROMPT, "max_tokens": 24}, 0.30),
    Kind("chat_stream", "/v1/chat/completions",
         {"model": "auto", "messages": _PROMPT, "max_tokens": 24, "stream": True,
          "stream_options": {"include_usage": True}}, 0.25),
    Kind("messages", "/v1/messages",
         {"model": "claude-soak", "max_tokens": 24, "messages": _PROMPT}, 0.10),
    Kind("messages_stream", "/v1/messages",
         {"model": "claude-soak", "max_tokens": 24, "messages": _PROMPT, "stream": True}, 0.10),
    Kind("responses", "/v1/responses",
         {"model": "auto", "input": "Say what a router does.", "max_output_tokens": 24}, 0.08),
    Kind("responses_stream", "/v1/responses",
         {"model": "auto", "input": "Say what a router does.", "max_output_tokens": 24,
          "stream": True}, 0.07),
    Kind("embeddings", "/v1/embeddings",
         {"model": "auto", "input": ["a router", "picks a model"]}, 0.10),
)


def simulator_config() -> dict[str, Any]:
    return {"default": {"ttft_ms": 5, "tpot_ms": 1, "output_tokens_mean": 16,
                        "output_tokens_sd": 4, "output_tokens_max": 24},
            "models": list(SIM_MODELS), "seed": 11}


def router_config(sim_url: str, tmp: Path) -> dict[str, Any]:
    v1 = sim_url + "/v1"
    return {
        "models": [
            {"name": "fast", "endpoints": [{"base_url": v1, "upstream_model": "sim-a"}]},
            {"name": "steady", "endpoints": [{"base_url": v1, "upstream_model": "sim-b"}]},
            {"name": "claude", "endpoints": [{"base_url": v1, "provider": "anthropic",
                                              "upstream_model": "sim-c"}]},
            {"name": "embed", "kind": "embedding",
             "endpoints": [{"base_url": v1, "upstream_model": "sim-embed"}]},
        ],
        "aliases": ["auto"],
        "model_routes": [{"match": "claude-*", "decision": "anthropic"}],
        "decisions": [{"name": "anthropic", "candidates": ["claude"], "fallback": ["fast"]}],
        "default": {"name": "everyday", "candidates": ["fast", "steady"],
                    "algorithm": "load_aware", "fallback": ["claude"]},
        "pool": {"retry": {"max_retries": 1, "backoff_base_s": 0.01},
                 "health_check": {"interval_s": 5}},
        "server": {"log_level": "warning"},
        "state": {"backend": "sqlite", "path": str(tmp / "state.db")},
    }


# -- capacity --------------------------------------------------------------------------------------


def measure_capacity(base_url: str, seconds: float, connections: int) -> dict[str, Any]:
    """Each kind alone at saturation with wrk; the mix's capacity in requests per second."""
    per_kind = {}
    for kind in MIX:
        result = run_wrk(base_url + kind.path, json.dumps(kind.body).encode(),
                         connections=connections, duration_s=seconds)
        per_kind[kind.name] = result.rps
    mix = 1 / sum(kind.share / per_kind[kind.name] for kind in MIX)
    return {"per_kind_rps": per_kind, "mix_rps": round(mix, 1),
            "connections": connections, "seconds": seconds}


# -- sampling --------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def process_sample(pid: int) -> dict[str, float]:
    """RSS (MiB), open file descriptors (all, and those that are not sockets), threads and
    CPU seconds of one process, from /proc."""
    status = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    fds = 0
    files = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed between the listing and the read
            fds += 1
            files += not os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return {"rss_mib": int(status["VmRSS"].split()[0]) / 1024, "fds": fds, "files": files,
            "threads": int(status["Threads"]), "cpu_s": cpu_seconds(pid)}


_TCP_STATES = {"01": "established", "06": "time_wait", "08": "close_wait", "0A": "listen"}


def idle_sample(pid: int, router_port: int, backend_port: int) -> dict[str, Any]:
    """The router's descriptors once the load is over, its sockets sorted by what they are:
    connections from clients, live ones to the backend (the pool keeps some; health checks
    reuse them), and the rest (half-closed ones, or sockets that are no connection at all,
    as a leak would leave)."""
    sample = process_sample(pid)
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    kinds: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] not in inodes:
                continue
            local, remote = (int(a.rsplit(":", 1)[1], 16) for a in fields[1:3])
            state = _TCP_STATES.get(fields[3], "other")
            kind = ("listening" if state == "listen" else
                    "from_clients" if local == router_port else
                    "to_backend" if remote == backend_port and state == "established" else
                    f"tcp_{state}")
            kinds[kind] = kinds.get(kind, 0) + 1
    return {**sample, "sockets": kinds}


@dataclass
class Window:
    """What one sampling window saw."""

    start_s: float
    sent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def summary(self, seconds: float, process: dict[str, float], cpu: dict[str, float]
                ) -> dict[str, Any]:
        done = sorted(self.latencies_ms)
        failed = sum(self.errors.values())
        return {
            "start_s": round(self.start_s, 1),
            "rps": round((self.ok + failed) / seconds, 1),
            "sent": self.sent,
            "error_rate": round(failed / max(1, self.ok + failed), 5),
            "errors": dict(self.errors),
            "p50_ms": round(_percentile(done, 50), 2),
            "p99_ms": round(_percentile(done, 99), 2),
            "rss_mib": round(process["rss_mib"], 1),
            "fds": process["fds"],
            "files": process["files"],
            "threads": process["threads"],
            # CPU of the router, and of what shares the machine with it.
            **{f"cpu_{name}_pct": round(100 * value / seconds, 1) for name, value in cpu.items()},
        }


def _percentile(sorted_values: list[float], percent: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, round(percent / 100 * (len(sorted_values) - 1)))
    return sorted_values[index]


# -- the load --------------------------------------------------------------------------------------


@dataclass
class Load:
    """The open-loop load's state: answers are counted in the window they end in."""

    window: Window
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


async def one_request(session: aiohttp.ClientSession, base_url: str, kind: Kind,
                      load: Load) -> None:
    """Send one request and read it to the end."""
    started = time.monotonic()
    try:
        async with session.post(base_url + kind.path, json=kind.body) as response:
            body = await response.read()
    except (TimeoutError, aiohttp.ClientError) as error:
        load.window.error(type(error).__name__)
        return
    if response.status >= 400:
        load.window.error(str(response.status))
        return
    # A stream that broke ends with an error event, which the SDKs raise.
    if b"event: error" in body or b'data: {"error"' in body:
        load.window.error("stream_error")
        return
    load.window.ok += 1
    load.window.latencies_ms.append((time.monotonic() - started) * 1000)


@dataclass
class Run:
    """What the load saw: a summary per window, and each window's latencies."""

    windows: list[dict[str, Any]] = field(default_factory=list)
    latencies_ms: list[list[float]] = field(default_factory=list)


class CpuMeter:
    """CPU seconds since the last reading, of the router, the simulator and this client."""

    def __init__(self, router_pid: int, sim_pid: int) -> None:
        self.pids = {"router": router_pid, "simulator": sim_pid}
        self.last = self._now()

    def _now(self) -> dict[str, float]:
        now = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return {**now, "client": time.process_time()}

    def delta(self) -> dict[str, float]:
        now = self._now()
        spent = {name: now[name] - self.last[name] for name in now}
        self.last = now
        return spent


async def drive(base_url: str, pids: tuple[int, int], rate: float, duration: float,
                window_s: float, log: Any) -> Run:
    """Open-loop load at `rate` for `duration`, summarised per window."""
    weights = [kind.share for kind in MIX]
    rng = random.Random(7)
    timeout = aiohttp.ClientTimeout(total=60)
    run = Run()
    async with aiohttp.ClientSession(timeout=timeout,
                                     connector=aiohttp.TCPConnector(limit=256)) as session:
        begin = time.monotonic()
        load = Load(Window(0.0))
        next_send = begin
        next_sample = begin + window_s
        cpu = CpuMeter(*pids)
        while (now := time.monotonic()) < begin + duration:
            if now >= next_sample:
                run.windows.append(load.window.summary(window_s, process_sample(pids[0]),
                                                       cpu.delta()))
                run.latencies_ms.append(load.window.latencies_ms)
                log(_row(run.windows[-1]))
                load.window = Window(next_sample - begin)
                next_sample += window_s
            if now < next_send:
                await asyncio.sleep(min(next_send, next_sample) - now)
                continue
            load.window.sent += 1
            task = asyncio.create_task(one_request(session, base_url,
                                                   rng.choices(MIX, weights)[0], load))
            load.tasks.add(task)
            task.add_done_callback(load.tasks.discard)
            next_send += rng.expovariate(rate)  # Poisson arrivals
        if load.tasks:
            await asyncio.wait(load.tasks, timeout=60)
    return run


def _row(summary: dict[str, Any]) -> str:
    return (f"  t={summary['start_s']:>7.0f}s  {summary['rps']:>7.1f} req/s  "
            f"err {100 * summary['error_rate']:5.2f}%  p50 {summary['p50_ms']:7.1f} ms  "
            f"p99 {summary['p99_ms']:7.1f} ms  rss {summary['rss_mib']:6.1f} MiB  "
            f"fds {summary['fds']:>4} ({summary['files']} not sockets)  "
            f"threads {summary['threads']:>3}  cpu {summary['cpu_router_pct']:5.1f}% "
            f"(simulator {summary['cpu_simulator_pct']:.0f}%, client "
            f"{summary['cpu_client_pct']:.0f}%)")


# -- judging ---------------------------------------------------------------------------------------


def judge(run: Run, warmup_s: float, idle: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The targets, over the windows that start after the warm-up. `idle`: the router's
    process before any load and after the load ended and connections idled out."""
    post = [i for i, w in enumerate(run.windows) if w["start_s"] >= warmup_s]
    if len(post) < 3:
        return {"ok": False, "why": "fewer than 3 windows after the warm-up"}
    windows = [run.windows[i] for i in post]
    third = max(1, len(post) // 3)
    first, last = windows[:third], windows[-third:]
    rss = [w["rss_mib"] for w in windows]
    rss_drift = max(abs(value / rss[0] - 1) for value in rss)
    file_growth = max(w["files"] for w in last) - max(w["files"] for w in first)
    before, after = idle["before"], idle["after"]
    # Set aside live pooled connections: what grows is leaked or half-closed sockets, or files.
    idle_growth = (after["fds"] - after["sockets"].get("to_backend", 0)) - (
        before["fds"] - before["sockets"].get("to_backend", 0))
    thread_growth = max(w["threads"] for w in last) - max(w["threads"] for w in first)
    # Each third's typical window p99 (the median): one window's p99 swings with a stall of
    # the machine or a few slow faults; a router that slows down moves them all.
    p99_first = statistics.median(w["p99_ms"] for w in first)
    p99_last = statistics.median(w["p99_ms"] for w in last)
    p99_ratio = p99_last / p99_first if p99_first else 0.0
    pooled = [_percentile(sorted(x for i in part for x in run.latencies_ms[i]), 99)
              for part in (post[:third], post[-third:])]
    checks = {
        "rss_flat": rss_drift <= RSS_TOLERANCE,
        "files_flat": file_growth <= FILE_SLACK,
        "sockets_released": idle_growth <= IDLE_FD_SLACK
        and not after["sockets"].get("from_clients"),
        "threads_flat": thread_growth <= THREAD_SLACK,
        "p99_stable": p99_ratio <= P99_TOLERANCE,
    }
    return {
        "ok": all(checks.values()),
        "checks": checks,
        "rss_first_mib": rss[0], "rss_last_mib": rss[-1], "rss_max_drift": round(rss_drift, 4),
        "file_growth": file_growth, "idle_fds_before": before["fds"],
        "idle_fds_after": after["fds"], "idle_growth": idle_growth,
        "idle_sockets": {"before": before["sockets"], "after": after["sockets"]},
        "thread_growth": thread_growth,
        "threads": windows[-1]["threads"],
        "p99_first_third_ms": round(p99_first, 1), "p99_last_third_ms": round(p99_last, 1),
        "p99_ratio": round(p99_ratio, 3),
        "p99_pooled_first_third_ms": round(pooled[0], 1),
        "p99_pooled_last_third_ms": round(pooled[1], 1),
        "p99_first_window_ms": windows[0]["p99_ms"], "p99_last_window_ms": windows[-1]["p99_ms"],
        "error_rate": round(sum(w["error_rate"] * w["rps"] for w in windows)
                            / max(1e-9, sum(w["rps"] for w in windows)), 5),
        "rps": round(statistics.mean(w["rps"] for w in windows), 1),
    }


def markdown(data: dict[str, Any]) -> str:
    verdict = data["verdict"]
    if "checks" not in verdict:
        return f"Soak not judged: {verdict['why']}.\n"
    lines = [
        f"Soak of {data['duration_s']:.0f} s at {data['rate_rps']} req/s "
        f"(capacity of the mix: {data['capacity'].get('mix_rps', 'not measured')} req/s), "
        f"warm-up {data['warmup_s']:.0f} s, windows of {data['window_s']:.0f} s.",
        "",
        "| target | figure | met |",
        "|---|---|---|",
        f"| RSS within ±10% after warm-up | {verdict['rss_first_mib']:.1f} → "
        f"{verdict['rss_last_mib']:.1f} MiB (max drift {100 * verdict['rss_max_drift']:.1f}%) "
        f"| {_yes(verdict['checks']['rss_flat'])} |",
        f"| no growth in file descriptors: not sockets | {verdict['file_growth']:+d} "
        f"(last third's peak vs first's) | {_yes(verdict['checks']['files_flat'])} |",
        f"| no growth in file descriptors: all, idle before and after the soak | "
        f"{verdict['idle_fds_before']} → {verdict['idle_fds_after']} ({verdict['idle_growth']:+d}"
        f" beside live pooled connections) | {_yes(verdict['checks']['sockets_released'])} |",
        f"| no growth in threads | {verdict['threads']} ({verdict['thread_growth']:+d}) | "
        f"{_yes(verdict['checks']['threads_flat'])} |",
        f"| p99 stable: the last third's within 1.5x of the first's (median window p99) | "
        f"{verdict['p99_first_third_ms']:.1f} → {verdict['p99_last_third_ms']:.1f} ms "
        f"({verdict['p99_ratio']:.2f}x; all requests of each third: "
        f"{verdict['p99_pooled_first_third_ms']:.0f} → {verdict['p99_pooled_last_third_ms']:.0f}"
        f" ms; first and last window: {verdict['p99_first_window_ms']:.0f} → "
        f"{verdict['p99_last_window_ms']:.0f} ms) | {_yes(verdict['checks']['p99_stable'])} |",
        f"| client-visible errors (faults at low rates) | {100 * verdict['error_rate']:.3f}% | "
        "(reported) |",
        "",
        "| t (s) | req/s | errors | p50 ms | p99 ms | RSS MiB | fds (not sockets) | threads "
        "| CPU: router, simulator, client |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {w['start_s']:.0f} | {w['rps']} | {100 * w['error_rate']:.2f}% | "
              f"{w['p50_ms']} | {w['p99_ms']} | {w['rss_mib']} | {w['fds']} ({w['files']}) | "
              f"{w['threads']} | {w['cpu_router_pct']}%, {w['cpu_simulator_pct']}%, "
              f"{w['cpu_client_pct']}% |" for w in data["windows"]]
    return "\n".join(lines) + "\n"


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


# -- the run ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def soak_target(tmp: Path) -> Iterator[tuple[str, int, Served]]:
    """The simulator (its URL and pid) and a router in front of it."""
    with start_simulator(simulator_config(), tmp) as (sim_url, sim_pid):
        (tmp / "router").mkdir()
        with serve_logged(router_config(sim_url, tmp), tmp / "router") as served:
            yield sim_url, sim_pid, served


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def set_faults(sim_url: str, faults: dict[str, float]) -> None:
    for model in SIM_MODELS:
        httpx.put(f"{sim_url}/_sim/profiles/{model}", json=faults, timeout=10).raise_for_status()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds (default 120)")
    parser.add_argument("--rate", type=float, help="requests per second (default: half of "
                        "the capacity measured with wrk)")
    parser.add_argument("--window", type=float, help="seconds per sample (default: duration "
                        "/ 30, at least 5)")
    parser.add_argument("--warmup", type=float, help="seconds before the targets are judged "
                        "(default: a fifth of the duration, at most 300)")
    parser.add_argument("--capacity-seconds", type=float, default=4.0,
                        help="wrk seconds per kind of request (default 4)")
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    args = parser.parse_args(argv)
    window_s = args.window or max(5.0, args.duration / 30)
    warmup_s = args.warmup if args.warmup is not None else min(300.0, args.duration / 5)
    if args.rate is None and not wrk_available():
        parser.error("wrk is not installed: give --rate")
    with tempfile.TemporaryDirectory() as tmp, \
            soak_target(Path(tmp)) as (sim_url, sim_pid, served):
        ports = (_port(served.url), _port(sim_url))
        capacity: dict[str, Any] = {}
        rate = args.rate
        if rate is None:
            print("measuring capacity with wrk (each kind alone, fault-free) ...", flush=True)
            capacity = measure_capacity(served.url, args.capacity_seconds, connections=32)
            rate = round(capacity["mix_rps"] / 2, 1)
            print(f"  per kind: {capacity['per_kind_rps']}; mix: {capacity['mix_rps']} req/s;"
                  f" soaking at {rate} req/s", flush=True)
        else:  # the first requests open what is opened once (the store, thread pools)
            asyncio.run(drive(served.url, (served.pid, sim_pid), rate, 3.0, 3.0, print))
        time.sleep(IDLE_AFTER_S)  # the baseline: keep-alive connections idled out
        idle = {"before": idle_sample(served.pid, *ports)}
        set_faults(sim_url, FAULTS)
        print(f"soak: {args.duration:.0f} s, windows of {window_s:.0f} s, warm-up "
              f"{warmup_s:.0f} s, faults {FAULTS}", flush=True)
        run = asyncio.run(drive(served.url, (served.pid, sim_pid), rate, args.duration,
                                window_s, lambda line: print(line, flush=True)))
        time.sleep(IDLE_AFTER_S)  # keep-alive connections idle out
        idle["after"] = idle_sample(served.pid, *ports)
        log_problems = served.log_problems()
    data = {"duration_s": args.duration, "rate_rps": rate, "window_s": window_s,
            "warmup_s": warmup_s, "capacity": capacity, "faults": FAULTS,
            "mix": {kind.name: kind.share for kind in MIX},
            "windows": run.windows, "idle": idle, "verdict": judge(run, warmup_s, idle),
            "router_log_tracebacks": [line for line in log_problems if "Traceback" in line],
            "machine": machine_info()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    table = markdown(data)
    args.out.with_suffix(".md").write_text(table)
    print("\n" + table)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0 if data["verdict"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
