"""Step-level collaboration against its threshold: the share of steps the large model writes,
the latency and the cost, relative to the small model alone and the large model alone, all
measured in the same run: `python bench/collaborate_sweep.py [--prompts 12] [--markdown]`

One simulator serves a small model (fast, cheap) and a large one (slower, dearer). Every answer
is `STEPS` reasoning steps of `STEP_TOKENS` words. The entropy model: the first token of each
step has an entropy drawn, per (prompt, step), from a two-part mixture: an easy step with
probability 1 - HARD_SHARE (uniform in EASY ± SPREAD nats), a hard one otherwise (uniform in
HARD ± SPREAD, clipped to ln 5 by the 5 alternatives reported). `routeyard serve` routes one
model name per decision: `small` and `large` (one model answers whole, directly) and
`collab-<threshold>` per threshold swept. Requests go one at a time, non-streamed, over HTTP;
latency is the client's, cost the decision log's (each call at its own model's price).

Expected: below the easy entropies every step goes large (and each is drafted by the small
model first, so it costs and takes more than the large model alone); between the easy and
hard bands, about HARD_SHARE of the steps go large; above the hard band none do, and the step
loop costs only its extra prompt tokens and per-call latency over the small model alone.
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

from routeyard.simulator.text import stepped_text

STEPS, STEP_TOKENS = 8, 24
EASY, HARD, SPREAD, HARD_SHARE, SEED = 0.35, 1.4, 0.25, 0.25, 11
TOP_LOGPROBS = 5
ADMIN_KEY = "bench-admin-key"
THRESHOLDS = (0.0, 0.3, 0.5, 0.8, 1.0, 1.2, 1.4, 2.0)
# model → (ttft ms, tpot ms, $ per million input tokens, $ per million output tokens)
MODELS = {"small": (30.0, 1.0, 0.15, 0.60), "large": (120.0, 5.0, 2.50, 10.00)}


def simulator_config() -> dict[str, Any]:
    entropy = {"mean": EASY, "spread": SPREAD, "hard_share": HARD_SHARE, "hard_mean": HARD,
               "seed": SEED}
    return {"models": {name: {"ttft_ms": ttft, "tpot_ms": tpot,
                              "output_tokens_mean": STEPS * STEP_TOKENS,
                              "step_tokens": STEP_TOKENS, "step_entropy": entropy}
                       for name, (ttft, tpot, _, _) in MODELS.items()}}


def router_config(sim_v1: str) -> dict[str, Any]:
    models = [{"name": name, "continuation": "continue_final_message",
               "capabilities": {"logprobs": True},
               "pricing": {"input_per_mtok": cin, "output_per_mtok": cout},
               "endpoints": [{"base_url": sim_v1}]}
              for name, (_, _, cin, cout) in MODELS.items()]
    # The baselines answer whole, directly: `small` and `large` name the models themselves.
    decisions: list[dict[str, Any]] = []
    decisions += [{"name": f"collab-{t}", "candidates": ["small"], "collaborate": {
        "small": "small", "large": "large", "entropy_threshold": t,
        "top_logprobs": TOP_LOGPROBS, "max_steps": STEPS + 2,
        "max_step_tokens": STEP_TOKENS * 2}} for t in THRESHOLDS]
    return {"models": models, "decisions": decisions, "default": {"candidates": ["small"]},
            "model_routes": [{"match": d["name"], "decision": d["name"]} for d in decisions],
            "pool": {"health_check": {"interval_s": 0}},
            "server": {"admin_keys": [ADMIN_KEY]}}  # to read the decision log


def run(client: httpx.Client, route: str, prompts: int) -> dict[str, Any]:
    """Mean latency, cost and share of steps to the large model over `prompts` requests."""
    latencies, ids, whole = [], [], True
    expected = stepped_text(STEPS * STEP_TOKENS, STEP_TOKENS)
    for i in range(prompts):
        body = {"model": route, "messages": [{"role": "user", "content": f"Problem {i}."}]}
        started = time.perf_counter()
        reply = client.post("/v1/chat/completions", json=body)
        latencies.append(time.perf_counter() - started)
        reply.raise_for_status()
        ids.append(reply.headers["x-routeyard-request-id"])
        whole = whole and reply.json()["choices"][0]["message"]["content"] == expected
    costs, small, large = [], 0, 0
    for request_id in ids:
        record = _record(client, request_id)
        costs.append(record["cost_usd"])
        selection = (record.get("detail") or {}).get("selection") or {}
        steps = selection.get("collaborate") or {}
        small += steps.get("steps", {}).get("small", 0)
        large += steps.get("steps", {}).get("large", 0)
    return {"latency_s": statistics.mean(latencies), "cost_usd": statistics.mean(costs),
            "large_share": large / (small + large) if small + large else None,
            "steps": (small + large) / prompts, "answers_whole": whole}


def _record(client: httpx.Client, request_id: str) -> dict[str, Any]:
    for _ in range(50):  # the log is written off the request path
        reply = client.get(f"/v1/decisions/{request_id}")
        if reply.status_code == 200:
            return reply.json()
        time.sleep(0.1)
    raise RuntimeError(f"no decision record for {request_id}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--prompts", type=int, default=12, help="requests per route")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        with start_simulator(simulator_config(), tmp) as (sim_url, _), \
                start_routeyard(router_config(sim_url + "/v1"), tmp / "router") as target, \
                httpx.Client(base_url=target.base_url.removesuffix("/v1"), timeout=60,
                             headers={"authorization": f"Bearer {ADMIN_KEY}"}) as client:
            routes = [*MODELS, *(f"collab-{t}" for t in THRESHOLDS)]
            run(client, "small", 2)  # warm up connections and the tokenizer
            results = {route: run(client, route, args.prompts) for route in routes}
    small, large = results["small"], results["large"]
    for found in results.values():
        found["latency_vs_small"] = found["latency_s"] / small["latency_s"]
        found["latency_vs_large"] = found["latency_s"] / large["latency_s"]
        found["cost_vs_small"] = found["cost_usd"] / small["cost_usd"]
        found["cost_vs_large"] = found["cost_usd"] / large["cost_usd"]
    report = {"machine": machine_info(), "prompts": args.prompts, "steps": STEPS,
              "step_tokens": STEP_TOKENS, "entropy": {"easy": EASY, "hard": HARD,
                                                      "spread": SPREAD,
                                                      "hard_share": HARD_SHARE},
              "models": MODELS, "results": results}
    if args.markdown:
        print(markdown(results))
    else:
        json.dump(report, sys.stdout, indent=2)
        print()
    return 0


def markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| route | threshold (nats) | steps to large | latency (s) | latency vs small | "
             "latency vs large | cost vs small | cost vs large |",
             "|---|---|---|---|---|---|---|---|"]
    for route, found in results.items():
        threshold = route.removeprefix("collab-") if route.startswith("collab-") else "—"
        share = found["large_share"]
        lines.append(
            f"| {route} | {threshold} | {'—' if share is None else f'{share:.0%}'} | "
            f"{found['latency_s']:.3f} | {found['latency_vs_small']:.2f} | "
            f"{found['latency_vs_large']:.2f} | {found['cost_vs_small']:.2f} | "
            f"{found['cost_vs_large']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
