"""Selection latency of every serving algorithm: `select()` for one request, as the planner
calls it (issue 4's goal: p50 <= 1 ms for every non-cascade algorithm with 10k training
examples).

    python bench/selection_speed.py [--repeats 3000] [--shared DIR]

The candidates are the 11 routerbench models; `learned` serves a kNN artifact fitted on the
routerbench train split doubled to ~4.4k rows and on llmrouter train doubled to ~11k rows.
A baseline in the same run (`orjson.loads` of a small body) calibrates the noise.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from paths import add_shared_option, shared_dir
from timing import p50_ms

from routeyard.catalog import build_config
from routeyard.dataset import RoutingDataset, load_dataset
from routeyard.metrics import Metrics
from routeyard.pool import Pool
from routeyard.selection import SELECTION_ALGORITHMS, make_algorithm
from routeyard.selection.learned.knn import KnnRouter
from routeyard.signals import SignalEngine
from routeyard.signals.embedder import load_embedder

BODY = {"model": "auto", "messages": [{"role": "user", "content": "Which gas do plants absorb?"}]}




def knn_artifact(train: RoutingDataset, out: Path, copies: int) -> Path:
    embedder = load_embedder()
    x = embedder.embed(train.prompts)
    big = RoutingDataset(train.name, train.ids * copies, train.tasks * copies,
                         train.prompts * copies, train.models, np.tile(train.scores, (copies, 1)),
                         np.tile(train.costs, (copies, 1)))
    router = KnnRouter(k=40)
    router.fit(big, np.tile(x, (copies, 1)))
    router.save(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3000)
    add_shared_option(parser)
    args = parser.parse_args()
    data = shared_dir(args.shared) / "data"
    train, _ = load_dataset(data / "routerbench")
    llm_train, _ = load_dataset(data / "llmrouter")
    names = [m.replace("/", "_") for m in train.models]
    config = build_config({"models": [{"name": n, "pricing": {"input_per_mtok": 1 + i,
                                                              "output_per_mtok": 2 + i},
                                       "endpoints": [{"base_url": "http://127.0.0.1:9/v1"}]}
                                      for i, n in enumerate(names)]})
    pool = Pool(config, Metrics())
    candidates = list(pool.models.values())
    engine = SignalEngine(config.signals, {}, embedder_needed=True)
    ctx = engine.context(BODY, {"x-session-id": "s1"})
    ctx.embedding()
    raw = orjson.dumps(BODY)
    rows = [("baseline: orjson.loads(body)", p50_ms(lambda: orjson.loads(raw), args.repeats))]
    with tempfile.TemporaryDirectory() as tmp:
        small = knn_artifact(train, Path(tmp) / "rb.npz", 2)
        large = knn_artifact(llm_train, Path(tmp) / "llm.npz", 2)
        options: dict[str, dict[str, Any]] = {
            "learned": {"artifact": str(small), "model_map": dict(zip(train.models, names,
                                                                       strict=True))},
            "sticky": {"inner": "cheapest"},
        }
        for name in sorted(SELECTION_ALGORITHMS):
            algorithm = make_algorithm(name, options.get(name, {}))
            rows.append((name, p50_ms(lambda a=algorithm: a.select(candidates, 20, ctx),
                                      args.repeats)))
        llm_names = {m: m for m in llm_train.models}
        big_knn = make_algorithm("learned", {"artifact": str(large), "model_map": llm_names})
        llm_pool = Pool(build_config({"models": [
            {"name": m, "endpoints": [{"base_url": "http://127.0.0.1:9/v1"}]}
            for m in llm_train.models]}), Metrics())
        llm_candidates = list(llm_pool.models.values())
        rows.append((f"learned (kNN, {2 * len(llm_train):,} training prompts)",
                     p50_ms(lambda: big_knn.select(llm_candidates, 20, ctx), args.repeats)))
    print(f"`python bench/selection_speed.py --repeats {args.repeats}`\n")
    print("| algorithm | select() p50 ms |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value:.4f} |")


if __name__ == "__main__":
    main()
