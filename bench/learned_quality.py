"""Quality and cost of the learned routers: fit on train, sweep λ, score on test.

    python bench/learned_quality.py                  # markdown, ~1-2 min
    python bench/learned_quality.py --json
    python bench/learned_quality.py --algorithms knn,mf --datasets llmrouter [--shared DIR]

Every hyper-parameter is chosen by the router itself on a validation split of train; test is
read once, for the figures. Selection latency is choose() for one prompt, with the routers
fitted on llmrouter train (kNN also with that train set doubled to ~11k rows).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from paths import add_shared_option, shared_dir

from routeyard.dataset import RoutingDataset, load_dataset
from routeyard.selection.learned import TRAINABLE_ROUTERS, TrainableRouter
from routeyard.selection.learned.knn import KnnRouter
from routeyard.signals.embedder import load_embedder

LAMBDAS = np.concatenate([[0.0], np.geomspace(1e-3, 1e3, 40)])
GOALS = {"routerbench": (0.88, 0.90, 0.30), "llmrouter": (0.61, 0.62, 0.20)}  # aiq, max q, ratio


def curve(router: TrainableRouter, test: RoutingDataset, embeddings: np.ndarray) -> list:
    """(cost, quality) per λ, priced by the costs the router expects, as when serving (train's
    mean costs, unless the router estimates them per prompt)."""
    quality, expected = router.predict_with_costs(embeddings, test.prompts)
    rows = np.arange(len(test))
    points = []
    for lam in LAMBDAS:
        chosen = np.argmax(quality - lam * expected / router.cost_scale, axis=1)
        points.append((float(test.costs[rows, chosen].mean()),
                       float(test.scores[rows, chosen].mean())))
    return sorted(set(points))


def score(points: list, test: RoutingDataset) -> dict[str, Any]:
    costs, quality = test.costs.mean(axis=0), test.scores.mean(axis=0)
    best = int(np.argmax(quality))
    best_cost, best_quality = float(costs[best]), float(quality[best])
    affordable = [q for c, q in points if c <= best_cost + 1e-12]
    reaching = [c for c, q in points if q >= best_quality - 1e-9]
    result: dict[str, Any] = {
        "max_quality": max(q for _, q in points),
        "quality_at_best_cost": max(affordable) if affordable else None,
        "cost_ratio_at_best": min(reaching) / best_cost if reaching else None,
    }
    try:  # the offline evaluation's AIQ, where that module is present
        from routeyard.eval import metrics
    except ImportError:
        return result
    if hasattr(metrics, "aiq"):
        result["aiq"] = metrics.aiq(points, list(zip(costs, quality, strict=True)))
    return result


def latency_ms(router: TrainableRouter, embedding: np.ndarray, text: str,
               repeats: int = 2000) -> float:
    one, texts = embedding[None, :], [text]
    for _ in range(50):
        router.choose(one, 1.0, texts=texts)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        router.choose(one, 1.0, texts=texts)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def run(data: Path, datasets: list[str], algorithms: list[str]) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    embedder = load_embedder("builtin")
    report: dict[str, Any] = {"datasets": {}, "latency_p50_ms": {}}
    for name in datasets:
        train, test = load_dataset(data / name)
        train_x, test_x = embedder.embed(train.prompts), embedder.embed(test.prompts)
        quality = test.scores.mean(axis=0)
        best = int(np.argmax(quality))
        rows: dict[str, Any] = {}
        for algorithm in algorithms:
            router = TRAINABLE_ROUTERS[algorithm]()
            start = time.perf_counter()
            router.fit(train, train_x)
            fit_s = time.perf_counter() - start
            rows[algorithm] = {**score(curve(router, test, test_x), test), "fit_s": fit_s,
                               "hyper": _hyper(router)}
            if name == "llmrouter":
                with threadpool_limits(1):  # serving runs one request at a time per worker
                    report["latency_p50_ms"][algorithm] = latency_ms(router, test_x[0],
                                                                         test.prompts[0])
            print(f"{name} {algorithm}: {rows[algorithm]}", file=sys.stderr)
        report["datasets"][name] = {
            "n_train": len(train), "n_test": len(test), "best_single": {
                "model": test.models[best], "cost": float(test.costs.mean(axis=0)[best]),
                "quality": float(quality[best])},
            "oracle": float(test.scores.max(axis=1).mean()), "algorithms": rows}
        if name == "llmrouter":
            report["latency_p50_ms"]["knn@10k"] = _knn_10k_latency(train, train_x, test_x[0])
    return report


def _knn_10k_latency(train: RoutingDataset, train_x: np.ndarray, query: np.ndarray) -> float:
    """kNN stores every training prompt: measure it at ~11k rows (train twice, jittered)."""
    from threadpoolctl import threadpool_limits

    doubled = np.concatenate([np.arange(len(train))] * 2)
    jitter = np.random.default_rng(0).normal(0, 0.01, (len(doubled), train_x.shape[1]))
    x = train_x[doubled] + jitter.astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    router = KnnRouter(k=40)
    router.fit(train.subset(doubled), x)
    with threadpool_limits(1):
        return latency_ms(router, query)


def _hyper(router: TrainableRouter) -> dict[str, Any]:
    keys = ("k", "dim", "weight_decay", "config")
    return {k: v for k, v in vars(router).items() if k in keys and v is not None}


def markdown(report: dict[str, Any]) -> str:
    lines = []
    for name, data in report["datasets"].items():
        best = data["best_single"]
        goal = GOALS.get(name)
        lines += [f"### {name} (train {data['n_train']}, test {data['n_test']}; best single "
                  f"{best['model']} {best['quality']:.3f} at ${best['cost']:.6f}; oracle "
                  f"{data['oracle']:.3f})", ""]
        if goal:
            lines += [f"Goals: AIQ ≥ {goal[0]}, max quality ≥ {goal[1]}, cost ratio ≤ {goal[2]}",
                      ""]
        lines += ["| algorithm | AIQ | max quality | quality at best's cost | cost ratio at best "
                  "| fit s | hyper-parameters |", "|---|---|---|---|---|---|---|"]
        for algorithm, row in data["algorithms"].items():
            lines.append(f"| {algorithm} | {_fmt(row.get('aiq'))} | {_fmt(row['max_quality'])} "
                         f"| {_fmt(row['quality_at_best_cost'])} "
                         f"| {_fmt(row['cost_ratio_at_best'])} | {row['fit_s']:.1f} "
                         f"| {row['hyper']} |")
        lines.append("")
    lines += ["Selection latency p50 (choose() for one prompt, routers fitted on llmrouter "
              "train):", ""]
    lines += [f"- {k}: {v:.3f} ms" for k, v in report["latency_p50_ms"].items()]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "never" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="routerbench,llmrouter")
    parser.add_argument("--algorithms", default=",".join(sorted(TRAINABLE_ROUTERS)))
    parser.add_argument("--json", action="store_true")
    add_shared_option(parser)
    args = parser.parse_args()
    data = shared_dir(args.shared) / "data"
    datasets = [d for d in args.datasets.split(",") if d]
    missing = [d for d in datasets if not (data / d / "train.jsonl").is_file()]
    if missing:
        sys.exit(f"dataset folder(s) absent under {data}: {', '.join(missing)}")
    report = run(data, datasets, [a for a in args.algorithms.split(",") if a])
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() if args.json
          else markdown(report))


if __name__ == "__main__":
    main()
