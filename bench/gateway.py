"""Gateway benchmark: direct-to-simulator vs through Routeyard (vs through LiteLLM), in one run.

    python bench/gateway.py [--with-litellm] [--duration 10] [--out bench/results/gateway.json]
                            [--markdown]

Starts a simulator (0 ms backend), `routeyard serve` (1 worker, keyword decisions, model
`auto`) and optionally the LiteLLM proxy on the same simulator, then measures:

1. latency at concurrency 1 (wrk, p50/p99), the added part being the gap to direct;
2. throughput at concurrency 64 (wrk, non-streaming, small prompt, ~16 output tokens);
3. streaming time to the first `data:` chunk at concurrency 16 (ttfb_client.py, own process);
4. routeyard's RSS after 1k requests and after 100k in all (topped up with wrk at c=64).

See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from paths import add_shared_option
from procs import (
    Target,
    free_port,
    machine_info,
    rss_kib,
    start_litellm,
    start_routeyard,
    start_simulator,
    tree_cpu_seconds,
)
from report import markdown_report, text_report, verdicts
from wrkload import run_wrk, send_requests, wrk_available

HERE = Path(__file__).resolve().parent
SIM_MODEL = "small"  # the backend model every path ends up on
CHAT_PROFILE = {"ttft_ms": 0, "tpot_ms": 0, "output_tokens_mean": 16}
STREAM_PROFILE = {"ttft_ms": 0, "tpot_ms": 5, "output_tokens_mean": 32}
PROMPT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France? Answer in one word."},
]
WARMUP_REQUESTS = 1000
WORKLOAD = (f"simulator at 0 ms, {CHAT_PROFILE['output_tokens_mean']} output tokens "
            "(non-streaming); streams of "
            f"{STREAM_PROFILE['output_tokens_mean']} tokens at {STREAM_PROFILE['tpot_ms']} ms "
            "per token, 0 ms to the first; a 2-message prompt of ~25 tokens")


def simulator_config() -> dict[str, Any]:
    return {"models": {name: CHAT_PROFILE for name in (SIM_MODEL, "large", "coder")}, "seed": 1}


def routeyard_config(backend_v1: str, tmp: Path) -> dict[str, Any]:
    """Heuristic routing: a few keyword/size decisions; the benchmark prompt takes the default."""
    def model(name: str, window: int) -> dict[str, Any]:
        return {"name": name, "context_window": window,
                "pricing": {"input_per_mtok": 0.15, "output_per_mtok": 0.6},
                "endpoints": [{"base_url": backend_v1, "api_key": "sk-bench"}]}

    return {
        "server": {"log_level": "warning"},
        "models": [model(SIM_MODEL, 16000), model("large", 128000), model("coder", 32000)],
        "aliases": ["auto"],
        "decisions": [
            {"name": "hard", "priority": 5, "candidates": ["large"], "fallback": [SIM_MODEL],
             "when": {"keywords_any": ["prove", "theorem", "derive", "step by step"]}},
            {"name": "code", "priority": 3, "candidates": ["coder"], "fallback": ["large"],
             "when": {"keywords_any": ["python", "function", "stack trace", "compile"]}},
            {"name": "long", "priority": 1, "candidates": ["large"],
             "when": {"min_prompt_tokens": 4000}},
        ],
        "default": {"name": "everyday", "candidates": [SIM_MODEL], "fallback": ["large"]},
        "state": {"backend": "sqlite", "path": str(tmp / "state.db")},
        "pool": {"health_check": {"interval_s": 0}},
    }


def chat_body(target: Target, *, stream: bool = False) -> bytes:
    body: dict[str, Any] = {"model": target.model, "messages": PROMPT, "max_tokens": 256}
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


def set_sim_profile(sim_url: str, profile: dict[str, Any]) -> None:
    request = urllib.request.Request(f"{sim_url}/_sim/profiles/{SIM_MODEL}", method="PUT",
                                     data=json.dumps(profile).encode())
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def check_target(target: Target) -> None:
    """One request by hand: fail early (and clearly) if a path is not wired up."""
    request = urllib.request.Request(target.chat_url, data=chat_body(target),
                                     headers={"Content-Type": "application/json",
                                              **target.headers})
    with urllib.request.urlopen(request, timeout=30) as response:
        reply = json.loads(response.read())
        decision = response.headers.get("x-routeyard-decision")
    if not reply.get("choices"):
        raise RuntimeError(f"{target.name}: unexpected reply {reply!r}")
    if target.name == "routeyard" and decision != "everyday":
        raise RuntimeError(f"routeyard routed the benchmark prompt to {decision!r}")


class GatewayBench:
    """Runs every measure over the same targets; `served` counts routeyard's requests."""

    def __init__(self, targets: list[Target], sim: Target, duration_s: float, rounds: int,
                 rss_requests: int) -> None:
        self.targets = targets
        self.sim = sim
        self.duration_s = duration_s
        self.rounds = rounds
        self.rss_requests = rss_requests
        self.router = next(t for t in targets if t.name == "routeyard")
        self.served = 0
        self.rss_points: list[dict[str, Any]] = []

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def note_rss(self, after: str) -> None:
        self.rss_points.append({"after": after, "served": self.served,
                                "rss_kib": rss_kib(self.router.pid)})

    def count(self, target: Target, requests: int) -> None:
        if target is self.router:
            self.served += requests

    def warm_up(self) -> None:
        """1k requests at c=64 to each target; routeyard's RSS baseline is read after these."""
        for target in self.targets:
            check_target(target)
            run = send_requests(target.chat_url, chat_body(target), WARMUP_REQUESTS,
                                connections=64, headers=target.headers)
            self.count(target, run.requests + 1)
            self.log(f"warm-up {target.name}: {run.requests} requests, {run.rps:,.0f} req/s, "
                     f"{run.errors} errors")
        self.note_rss("warm-up")

    def wrk_measure(self, connections: int) -> dict[str, Any]:
        """wrk at `connections`, each target `rounds` times interleaved; keeps the median run
        (by p50 at c=1, by throughput otherwise) and the server and simulator CPU it used."""
        runs: dict[str, list[dict[str, Any]]] = {t.name: [] for t in self.targets}
        for round_no in range(self.rounds):
            for target in self.targets:
                cpu = self._cpu_meter(target)
                result = run_wrk(target.chat_url, chat_body(target), connections=connections,
                                 duration_s=self.duration_s, headers=target.headers)
                run = {**result.to_dict(), **cpu(result.requests)}
                runs[target.name].append(run)
                self.count(target, result.requests)
                self.log(f"c={connections} {target.name} round {round_no + 1}: "
                         f"{result.rps:,.0f} req/s, p50 {result.p50_ms:.3f} ms, "
                         f"p99 {result.p99_ms:.3f} ms, {result.errors} errors")
        key = "p50_ms" if connections == 1 else "rps"
        return {name: _median_run(found, key) for name, found in runs.items()}

    def _cpu_meter(self, target: Target) -> Callable[[int], dict[str, float]]:
        before = (tree_cpu_seconds(target.pid), tree_cpu_seconds(self.sim.pid))

        def per_request(requests: int) -> dict[str, float]:
            used = (tree_cpu_seconds(target.pid) - before[0],
                    tree_cpu_seconds(self.sim.pid) - before[1])
            n = max(requests, 1)
            return {"server_cpu_ms_per_req": round(used[0] * 1000 / n, 4),
                    "sim_cpu_ms_per_req": round(used[1] * 1000 / n, 4)}

        return per_request

    def stream_ttfb(self, concurrency: int = 16) -> dict[str, Any]:
        """Time to the first `data:` chunk, measured by ttfb_client.py in its own process."""
        set_sim_profile(self.sim.base_url.removesuffix("/v1"), STREAM_PROFILE)
        out: dict[str, Any] = {}
        try:
            for target in self.targets:
                command = [sys.executable, str(HERE / "ttfb_client.py"), "--url",
                           target.chat_url, "--body", chat_body(target, stream=True).decode(),
                           "--concurrency", str(concurrency), "--duration",
                           str(self.duration_s), "--warmup", "1"]
                command += [f"--header={k}: {v}" for k, v in target.headers.items()]
                done = subprocess.run(command, capture_output=True, text=True, check=True,
                                      timeout=self.duration_s + 120)
                result = json.loads(done.stdout)
                out[target.name] = result
                self.count(target, result["streams"] + result["warmup_streams"] + result["errors"])
                self.log(f"streams c={concurrency} {target.name}: TTFB p50 "
                         f"{result['ttfb_p50_ms']:.3f} ms, p99 {result['ttfb_p99_ms']:.3f} ms, "
                         f"{result['streams_per_s']:,.0f} streams/s, {result['errors']} errors")
        finally:
            set_sim_profile(self.sim.base_url.removesuffix("/v1"), CHAT_PROFILE)
        return out

    def rss_soak(self) -> dict[str, Any]:
        """Top routeyard up to `rss_requests` served in all (c=64), then read RSS again."""
        self.note_rss("latency, throughput and streaming runs")
        missing = self.rss_requests - self.served
        if missing > 0:
            self.log(f"memory soak: {missing:,} more requests to routeyard at c=64 ...")
            run = send_requests(self.router.chat_url, chat_body(self.router), missing,
                                connections=64, max_s=1800)
            self.served += run.requests
            self.log(f"memory soak: {run.requests:,} requests, {run.rps:,.0f} req/s, "
                     f"{run.errors} errors")
        time.sleep(0.5)  # let the decision log flush its buffer
        self.note_rss("memory soak")
        first, last = self.rss_points[0], self.rss_points[-1]
        return {"points": self.rss_points, "first_served": first["served"],
                "last_served": last["served"], "first_kib": first["rss_kib"],
                "last_kib": last["rss_kib"],
                "growth_pct": round((last["rss_kib"] / first["rss_kib"] - 1) * 100, 2)}

    def run(self) -> dict[str, Any]:
        self.warm_up()
        results: dict[str, Any] = {"latency_c1": self.wrk_measure(1)}
        results["throughput_c64"] = self.wrk_measure(64)
        results["stream_ttfb_c16"] = self.stream_ttfb(16)
        results["rss"] = self.rss_soak()
        return results


def _median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda r: r[key])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    if len(runs) > 1:
        chosen["rounds"] = [r[key] for r in runs]
        chosen["rounds_median"] = statistics.median(chosen["rounds"])
    return chosen


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Routeyard gateway overhead benchmark.")
    parser.add_argument("--with-litellm", action="store_true",
                        help="also measure the LiteLLM proxy (1 worker) on the same simulator")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds per wrk / streaming run (default 10)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="interleaved rounds per wrk measure; the median run is kept")
    parser.add_argument("--rss-requests", type=int, default=100_000,
                        help="requests routeyard has served at the second RSS reading")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "gateway.json")
    parser.add_argument("--markdown", action="store_true", help="also print a markdown table")
    add_shared_option(parser)  # where peers/litellm-proxy is
    return parser.parse_args(argv)


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not wrk_available():
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _raise_interrupt)  # clean up on kill as on Ctrl-C
    command = "python bench/gateway.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    meta: dict[str, Any] = {
        "command": command.strip(), "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(), "routeyard_version": version("routeyard"),
        "duration_s": args.duration, "rounds": args.rounds, "workload": WORKLOAD,
        "note": "load generator, simulator and router share the machine's cores (not pinned)",
    }
    with tempfile.TemporaryDirectory(prefix="routeyard-bench-") as tmp_name, \
            contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        sim_url, sim_pid = stack.enter_context(start_simulator(simulator_config(), tmp))
        direct = Target("direct", sim_url + "/v1", SIM_MODEL, sim_pid)
        targets = [direct, stack.enter_context(start_routeyard(routeyard_config(direct.base_url,
                                                                                tmp), tmp))]
        if args.with_litellm:
            litellm = stack.enter_context(start_litellm(direct.base_url, SIM_MODEL, free_port(),
                                                        shared=args.shared))
            meta["litellm_version"] = litellm.version
            targets.append(litellm)
        results = {"meta": meta, **GatewayBench(targets, direct, args.duration, args.rounds,
                                                  args.rss_requests).run()}
    results["goals"] = [v.to_dict() for v in verdicts(results)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(text_report(results))
    if args.markdown:
        print("\n" + markdown_report(results))
    print(f"\nresults written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
