"""Per-request selection latency of the `ensemble` router against the previous best learned
router on each dataset, in one run: `select()` of `algorithm: learned`, as the planner calls it.

    python bench/routing_latency.py [--datasets llmrouter,routerbench] [--prompts 200]
                                    [--repeats 5] [--shared DIR]

Both routers are fitted on the dataset's train split (a few minutes: the ensemble chooses its
members on 5 folds), then serve the first `--prompts` test prompts, each `--repeats` times,
through one warmed-up `LearnedSelection`. Two figures per router, p50 over every call:
- `select`: the request's embedding already computed (the signals share it), as in serving;
- `select+embed`: a fresh request context, so the embedding is computed inside the call.
The previous best: kNN on llmrouter, IRT on routerbench (docs/benchmarks.md, issue 15).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from paths import add_shared_option, shared_dir
from threadpoolctl import threadpool_limits

from routeyard.catalog import build_config
from routeyard.dataset import load_dataset
from routeyard.metrics import Metrics
from routeyard.pool import Pool
from routeyard.selection import make_algorithm
from routeyard.selection.learned import TRAINABLE_ROUTERS
from routeyard.signals import SignalEngine
from routeyard.signals.embedder import load_embedder

PREVIOUS_BEST = {"llmrouter": "knn", "routerbench": "irt"}


def p50_ms(calls: list[Callable[[], Any]], repeats: int) -> float:
    for call in calls[:20]:
        call()
    samples = []
    for _ in range(repeats):
        for call in calls:
            started = time.perf_counter()
            call()
            samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def measure(data: Path, name: str, n_prompts: int, repeats: int,
            tmp: Path) -> dict[str, Any]:
    train, test = load_dataset(data / name)
    embedder = load_embedder()
    train_x = embedder.embed(train.prompts)
    config = build_config({"models": [{"name": m, "endpoints": [
        {"base_url": "http://127.0.0.1:9/v1"}]} for m in train.models]})
    candidates = list(Pool(config, Metrics()).models.values())
    engine = SignalEngine(config.signals, {}, embedder_needed=True)
    bodies = [{"model": "auto", "messages": [{"role": "user", "content": p}]}
              for p in test.prompts[:n_prompts]]
    warm = [engine.context(body) for body in bodies]
    for ctx in warm:
        ctx.embedding()
    row: dict[str, Any] = {}
    for algorithm in (PREVIOUS_BEST[name], "ensemble"):
        router = TRAINABLE_ROUTERS[algorithm]()
        router.fit(train, train_x)
        artifact = tmp / f"{name}-{algorithm}.npz"
        router.save(artifact)
        selection = make_algorithm("learned", {"artifact": str(artifact), "lambda": 1.0})
        with threadpool_limits(1):  # serving runs one request at a time per worker
            shared = p50_ms([lambda c=c, s=selection: s.select(candidates, 20, c)
                             for c in warm], repeats)
            fresh = p50_ms([lambda b=b, s=selection: s.select(candidates, 20, engine.context(b))
                            for b in bodies], repeats)
        row[algorithm] = {"select_ms": round(shared, 4), "select_embed_ms": round(fresh, 4),
                          "artifact_mb": round(artifact.stat().st_size / 1e6, 2)}
    old, new = row[PREVIOUS_BEST[name]], row["ensemble"]
    row["ratio_select"] = round(new["select_ms"] / old["select_ms"], 2)
    row["ratio_select_embed"] = round(new["select_embed_ms"] / old["select_embed_ms"], 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default="llmrouter,routerbench")
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    add_shared_option(parser)
    args = parser.parse_args()
    data = shared_dir(args.shared) / "data"
    print(f"`python bench/routing_latency.py --prompts {args.prompts} --repeats "
          f"{args.repeats}` (p50 over every call, ms)\n")
    print("| dataset | router | select() | select() + embedding | artifact MB |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets.split(","):
            row = measure(data, name, args.prompts, args.repeats, Path(tmp))
            for algorithm in (PREVIOUS_BEST[name], "ensemble"):
                r = row[algorithm]
                print(f"| {name} | {algorithm} | {r['select_ms']:.4f} | "
                      f"{r['select_embed_ms']:.4f} | {r['artifact_mb']} |")
            print(f"| {name} | ratio ensemble / {PREVIOUS_BEST[name]} | "
                  f"{row['ratio_select']}x | {row['ratio_select_embed']}x | |")


if __name__ == "__main__":
    main()
