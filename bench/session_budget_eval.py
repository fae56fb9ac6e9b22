"""Session budgets: task success against the budget, degrading gracefully vs a hard cap.

    python bench/session_budget_eval.py            # markdown, a few seconds
    python bench/session_budget_eval.py --json [--steps 4] [--shared DIR]

Simulated agent sessions: each is `--steps` consecutive prompts of one task of the llmrouter
test split, with every model's recorded score and cost. Each step is planned by a real Router
(in process, a memory store, the session budget as configured), exactly as a served request:
the session's state is what the steps so far spent at the recorded cost of the model each was
given, and the plan's model answers with its recorded score. The decision is `static` on the
best model of the split (llama-3.1-nemotron-51b, 0.563 at $255/M prompts), with the cheaper
llama-3.1-8b and gemma-2-9b as candidates.

Success: every step of the session was answered (none refused with `budget_exceeded`) and the
final step's model scored 1 on it. The same sessions and the same dollar budget per session
run three times: the default degrading curve, one that presses from the first dollar
([[0, 0], [0.6, 1]]), and a hard cap (curve [[1, 0]]: no pressure, refused once spent).
Budgets are multiples of the median session's cost on the best model.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from collections import defaultdict
from typing import Any

import orjson
from paths import add_shared_option, shared_dir

from routeyard import Router
from routeyard.catalog import build_config
from routeyard.errors import BudgetExceeded
from routeyard.gateway.sessions import SessionState
from routeyard.signals.session import session_key
from routeyard.state import MemoryStore

BEST, MIDDLE, CHEAP = ("llama-3.1-nemotron-51b-instruct", "llama-3.1-8b-instruct",
                       "gemma-2-9b-it")
LEVELS = (0.25, 0.5, 0.75, 1.0, 1.5)
CURVES: dict[str, list[tuple[float, float]]] = {
    "degrade": [(0.5, 0.0), (0.8, 0.5), (1.0, 1.0)],  # the default
    "degrade early": [(0.0, 0.0), (0.6, 1.0)],  # pressure from the first dollar
    "hard cap": [(1.0, 0.0)],
}
DEAD = "http://127.0.0.1:9/v1"  # never called: steps are planned, answers are recorded


def sessions_of(rows: list[dict[str, Any]], steps: int) -> list[list[dict[str, Any]]]:
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_task[row["task"]].append(row)
    found = []
    for task_rows in by_task.values():
        for start in range(0, len(task_rows) - steps + 1, steps):
            found.append(task_rows[start:start + steps])
    return found


def router_for(prices: dict[str, Any], limit: float, curve: list[tuple[float, float]]
               ) -> Router:
    models = [{"name": name, "pricing": {"input_per_mtok": prices[name]["input_price_per_mtok"],
                                         "output_per_mtok": prices[name]["output_price_per_mtok"]},
               "context_window": 1_000_000, "endpoints": [{"base_url": DEAD}]}
              for name in (BEST, MIDDLE, CHEAP)]
    config = build_config({
        "models": models, "pool": {"health_check": {"interval_s": 0}},
        "default": {"candidates": [BEST, MIDDLE, CHEAP], "algorithm": "static"},
        "sessions": {"budgets": [{"scope": "session", "kind": "usd", "limit": limit,
                                  "curve": [list(p) for p in curve]}]}})
    return Router(config, store=MemoryStore())


async def replay(router: Router, sessions: list[list[dict[str, Any]]]) -> dict[str, Any]:
    succeeded, spent, refused, models = 0, [], 0, defaultdict(int)
    for number, session in enumerate(sessions):
        sid = f"bench-{number}"
        state = SessionState()
        final_score = None
        for step in session:
            await router.store.set_value(session_key("h:" + sid, "budget"), state.to_bytes())
            body = {"model": "auto", "messages": [{"role": "user", "content": step["prompt"]}]}
            try:
                plan = await router.plan(body, {"x-session-id": sid})
            except BudgetExceeded:
                refused += 1
                final_score = None
                break
            models[plan.model] += 1
            state.usd += step["costs"][plan.model]
            state.steps += 1
            final_score = step["scores"][plan.model]
        succeeded += int(final_score is not None and final_score >= 0.999)
        spent.append(state.usd)
    return {"success": succeeded / len(sessions), "mean_spend": statistics.fmean(spent),
            "refused": refused, "steps_by_model": dict(models)}


def fixed(sessions: list[list[dict[str, Any]]], model: str) -> dict[str, Any]:
    """No budget: every step on one model."""
    success = sum(s[-1]["scores"][model] >= 0.999 for s in sessions) / len(sessions)
    spend = statistics.fmean(sum(step["costs"][model] for step in s) for s in sessions)
    return {"success": success, "mean_spend": spend}


async def evaluate(steps: int, shared: Any) -> dict[str, Any]:
    folder = shared_dir(shared) / "data" / "llmrouter"
    rows = [orjson.loads(line) for line in (folder / "test.jsonl").read_bytes().splitlines()]
    prices = orjson.loads((folder / "models.json").read_bytes())["models"]
    sessions = sessions_of(rows, steps)
    unit = statistics.median(sum(step["costs"][BEST] for step in s) for s in sessions)
    results: dict[str, Any] = {"sessions": len(sessions), "steps": steps,
                               "median_best_session_usd": unit,
                               "always": {m: fixed(sessions, m) for m in (BEST, CHEAP)},
                               "levels": []}
    for level in LEVELS:
        row: dict[str, Any] = {"budget_x": level, "budget_usd": level * unit}
        for mode, curve in CURVES.items():
            row[mode] = await replay(router_for(prices, level * unit, curve), sessions)
        results["levels"].append(row)
    return results


def markdown(results: dict[str, Any]) -> str:
    lines = [f"{results['sessions']} sessions of {results['steps']} steps (llmrouter test); "
             f"budget unit: the median session on {BEST}, "
             f"${results['median_best_session_usd'] * 1000:.3f} per 1000 sessions.", "",
             "Each cell: task success rate / mean spend (x unit) / sessions refused.", "",
             "| budget (x unit) | " + " | ".join(CURVES) + " |",
             "|---|" + "---|" * len(CURVES)]
    unit = results["median_best_session_usd"]
    for row in results["levels"]:
        cells = [f"{row[mode]['success']:.3f} / {row[mode]['mean_spend'] / unit:.2f} / "
                 f"{row[mode]['refused']}" for mode in CURVES]
        lines.append(f"| {row['budget_x']:g} | " + " | ".join(cells) + " |")
    lines.append("")
    for model, found in results["always"].items():
        lines.append(f"No budget, always {model}: success {found['success']:.3f}, spend "
                     f"{found['mean_spend'] / unit:.2f} x unit.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    add_shared_option(parser)
    args = parser.parse_args()
    results = asyncio.run(evaluate(args.steps, args.shared))
    sys.stdout.write((orjson.dumps(results, option=orjson.OPT_INDENT_2).decode() if args.json
                      else markdown(results)) + "\n")


if __name__ == "__main__":
    main()
