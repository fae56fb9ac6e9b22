"""The ensemble router's variants on the shared routing datasets: each member alone, and all.

    python scripts/routing_variants.py [--datasets llmrouter,routerbench] [--shared DIR] [--json]

Every variant is an `EnsembleRouter` over a subset of `ensemble.MEMBERS`, so each one chooses
its hyper-parameters, its weights and its pricing (mean or expected cost) on 5 folds of train
exactly as the full router does; test is read once per variant, for the figures. A few
minutes on 2 cores. `routeyard eval --data DIR` gives the other algorithms' rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from paths import add_shared_option, shared_dir

from routeyard.eval import metrics
from routeyard.eval.runner import (
    LAMBDAS,
    _dedup,
    _Progress,
    _score,
    _trainable_curve,
    embed,
)
from routeyard.eval.runner import load as load_data
from routeyard.selection.learned.ensemble import MEMBERS, EnsembleRouter, MemberSpec


def variants() -> dict[str, tuple[MemberSpec, ...]]:
    out = {f"{spec.name} alone": (spec,) for spec in MEMBERS}
    out["ensemble (all members)"] = MEMBERS
    return out


def run(folder: Path) -> dict[str, Any]:
    train, test = load_data(folder)
    train_x, test_x = embed(train.prompts), embed(test.prompts)
    singles, best = metrics.single_model_points(test), metrics.best_single(test)
    rows: dict[str, Any] = {}
    for name, members in variants().items():
        started = time.perf_counter()
        router = EnsembleRouter(members=members)
        router.fit(train, train_x)
        points = _trainable_curve(router, test, test_x, LAMBDAS, _Progress(1, False), name)
        curve, _ = _dedup(points)
        scored = _score(curve, singles, best)
        rows[name] = {"aiq": scored["aiq"], "max_quality": scored["max_quality"],
                      "cost_ratio_at_best": scored["cost_ratio_at_best"],
                      "validation": router.validation,
                      "chosen": [[n, round(w, 3), h] for n, w, h in router.chosen],
                      "expected_costs": router.cost_model is not None,
                      "seconds": round(time.perf_counter() - started, 1)}
        print(f"{folder.name} {name}: AIQ {scored['aiq']:.4f}", file=sys.stderr, flush=True)
    return rows


def markdown(report: dict[str, dict[str, Any]]) -> str:
    names = list(next(iter(report.values())))
    head = " | ".join(f"{d} AIQ | {d} max q" for d in report)
    lines = [f"| variant | {head} |", "|---|" + "---|" * (2 * len(report))]
    for name in names:
        cells = " | ".join(f"{report[d][name]['aiq']:.4f} | {report[d][name]['max_quality']:.4f}"
                           for d in report)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default="llmrouter,routerbench")
    parser.add_argument("--json", action="store_true")
    add_shared_option(parser)
    args = parser.parse_args()
    data = shared_dir(args.shared) / "data"
    report = {name: run(data / name) for name in args.datasets.split(",")}
    sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n"
                     if args.json else markdown(report))


if __name__ == "__main__":
    main()
