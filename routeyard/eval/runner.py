"""Offline evaluation: train each algorithm on train.jsonl, sweep its knob on test.jsonl.

The result is the Eval JSON of DESIGN.md §3. The λ grid is fixed in advance and never tuned
on test, so the curve is an honest estimate of what a deployment would see.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from routeyard.dataset import RoutingDataset, load_dataset, load_split, split_file
from routeyard.eval import metrics
from routeyard.eval.cascade_eval import CascadeEval  # cascade hook
from routeyard.selection.learned.base import TRAINABLE_ROUTERS, TrainableRouter

# 0 (pure quality) plus a geometric sweep: λ weighs cost / (train mean cost of the dearest
# model) against quality in [0, 1], so 1e-3..1e3 spans "ignore cost" to "cheapest always".
LAMBDAS: tuple[float, ...] = (0.0, *(float(x) for x in np.geomspace(1e-3, 1e3, 39)))

EMBED_BATCH = 1024


class OutputAwareAlgorithm(Protocol):
    """Hook for algorithms that see model outputs (cascades, ensembles, votes).

    They are scored offline on the dataset's recorded `responses`, and their cost must count
    every call they make, not only the final one (DESIGN.md §3). None exists yet: register a
    factory in OUTPUT_AWARE_ALGORITHMS and `evaluate` will score its curve like the others.
    """

    def fit(self, train: RoutingDataset, embeddings: np.ndarray) -> None: ...

    def curve(self, test: RoutingDataset, embeddings: np.ndarray,
              lambdas: tuple[float, ...]) -> list[tuple[float, metrics.Point]]:
        """(λ, (mean cost, mean quality)) per knob setting, on test."""


OUTPUT_AWARE_ALGORITHMS: dict[str, Callable[[], OutputAwareAlgorithm]] = {
    "cascade": CascadeEval,  # routeyard/eval/cascade_eval.py
}


def _load_registries() -> None:
    """Import every module of the learned-router package so its routers register."""
    package = importlib.import_module("routeyard.selection.learned")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")


def available_algorithms() -> list[str]:
    _load_registries()
    return sorted(TRAINABLE_ROUTERS) + sorted(OUTPUT_AWARE_ALGORITHMS)


def check_algorithms(algorithms: list[str]) -> None:
    known = available_algorithms()
    unknown = [name for name in algorithms if name not in known]
    if unknown:
        raise ValueError(f"unknown algorithm(s) {', '.join(unknown)}; "
                         f"known: {', '.join(known) or 'none registered'}")


def load(data: str | Path, *, test_fraction: float = 0.2,
         seed: int = 0) -> tuple[RoutingDataset, RoutingDataset]:
    """A dataset folder (train.jsonl + test.jsonl), or one JSONL file split by a seeded
    shuffle (`test_fraction` of its rows for test). Either way every row is checked against
    the schema first, and a DatasetError lists every problem with its line and field."""
    path = Path(data)
    if path.is_file():
        return split_file(path, test_fraction=test_fraction, seed=seed)
    if not path.is_dir():
        raise ValueError(f"{path}: no such dataset folder or JSONL file")
    for split in ("train.jsonl", "test.jsonl"):
        if not (path / split).is_file():
            raise ValueError(f"{path}: missing {split}")
    return load_dataset(path)


def load_train(data: str | Path) -> RoutingDataset:
    """What `train` fits on: a folder's train.jsonl, or every row of one JSONL file."""
    path = Path(data)
    if path.is_file():
        return load_split(path)
    if not path.is_dir() or not (path / "train.jsonl").is_file():
        raise ValueError(f"{path}: no train.jsonl there (nor a JSONL file)")
    return load_split(path / "train.jsonl")


# -- progress ---------------------------------------------------------------------------------

class _Progress:
    """tqdm on stderr when installed, plain stderr lines otherwise; silent if disabled."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._bar: Any = None
        self._enabled = enabled
        self._done = 0
        self._total = total
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self._bar = tqdm(total=total, file=sys.stderr, unit="step", dynamic_ncols=True)

    def stage(self, label: str) -> None:
        """What runs next: one description or line per stage, not per step."""
        if self._bar is not None:
            self._bar.set_description(label)
        elif self._enabled:
            print(f"[{self._done}/{self._total}] {label}", file=sys.stderr, flush=True)

    def step(self, n: int = 1) -> None:
        self._done += n
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _batches(texts: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(texts), EMBED_BATCH):
        yield texts[start:start + EMBED_BATCH]


def embed(texts: list[str], progress: _Progress | None = None, label: str = "embed") -> np.ndarray:
    from routeyard.signals.embedder import load_embedder

    embedder = load_embedder("builtin")
    if progress is not None:
        progress.stage(label)
    parts = []
    for batch in _batches(texts):
        parts.append(embedder.embed(batch))
        if progress is not None:
            progress.step()
    return np.concatenate(parts) if parts else np.zeros((0, embedder.dimensions), np.float32)


# -- curves -----------------------------------------------------------------------------------

def _trainable_curve(router: TrainableRouter, test: RoutingDataset, embeddings: np.ndarray,
                     lambdas: tuple[float, ...], progress: _Progress,
                     name: str) -> list[tuple[float, metrics.Point]]:
    rows = np.arange(len(test))
    # The base choose() predicts again on every call; predict once when it is not overridden.
    # Either way the router prices by the costs it expects (train's mean costs, or its own
    # estimate from the prompt), as when serving: a test row's true cost is not known before
    # the call.
    predicted, expected = router.predict_with_costs(embeddings, test.prompts)
    quality = predicted if type(router).choose is TrainableRouter.choose else None
    progress.stage(f"{name}: sweep λ")
    points = []
    for lam in lambdas:
        if quality is None:
            chosen = router.choose(embeddings, lam, texts=test.prompts)
        else:
            chosen = np.argmax(quality - lam * expected / router.cost_scale, axis=1)
        points.append((lam, (float(test.costs[rows, chosen].mean()),
                             float(test.scores[rows, chosen].mean()))))
        progress.step()
    return points


def _dedup(points: list[tuple[float, metrics.Point]]) -> tuple[list[metrics.Point], list[float]]:
    """Unique points sorted by cost (then quality), with the first λ that reached each."""
    first: dict[metrics.Point, float] = {}
    for lam, point in points:
        first.setdefault(point, lam)
    curve = sorted(first)
    return curve, [first[p] for p in curve]


def _score(curve: list[metrics.Point], singles: list[metrics.SingleModel],
           best: metrics.SingleModel) -> dict[str, Any]:
    return {
        "aiq": metrics.aiq(curve, [(s["cost"], s["quality"]) for s in singles]),
        "max_quality": metrics.max_quality(curve),
        "cost_ratio_at_best": metrics.cost_ratio_at_best(curve, best),
        "curve": [[c, q] for c, q in curve],
    }


def evaluate(folder: str | Path, algorithms: list[str] | None = None, *,
             lambdas: tuple[float, ...] | list[float] | None = None,
             progress: bool = True, test_fraction: float = 0.2,
             seed: int = 0, energy: bool = False) -> dict[str, Any]:
    """The Eval JSON for `algorithms` (default: every registered one) on `folder` (a dataset
    folder, or one JSONL file split into train and test by `test_fraction` and `seed`).

    With the default, an output-aware algorithm the dataset cannot score (no recorded
    `responses`) is left out and named under "skipped"; asked for by name, it is an error.
    `energy`: also each trainable router's energy-quality curve, energy estimated from model
    size (eval/energy_eval.py), under "energy"."""
    names = available_algorithms() if algorithms is None else list(algorithms)
    skipped: dict[str, str] = {}
    check_algorithms(names)
    grid = tuple(LAMBDAS if lambdas is None else lambdas)
    train, test = load(folder, test_fraction=test_fraction, seed=seed)
    singles = metrics.single_model_points(test)
    best = metrics.best_single(test)
    frontier = None
    if energy:
        from routeyard.eval.energy_eval import EnergyFrontier  # counts tokens: only when asked

        frontier = EnergyFrontier(folder, test)
    n_embed = len(list(_batches(train.prompts))) + len(list(_batches(test.prompts)))
    bar = _Progress(n_embed + len(names) * (len(grid) + 1), progress)
    try:
        train_emb = embed(train.prompts, bar, "embed train")
        test_emb = embed(test.prompts, bar, "embed test")
        results: dict[str, Any] = {}
        for name in names:
            started = time.perf_counter()
            bar.stage(f"{name}: fit")
            if name in TRAINABLE_ROUTERS:
                router = TRAINABLE_ROUTERS[name]()
                router.fit(train, train_emb)
                bar.step()
                points = _trainable_curve(router, test, test_emb, grid, bar, name)
                if frontier is not None and frontier.usable:
                    frontier.add(name, router.predict_with_costs(test_emb, test.prompts)[0],
                                 grid)
            else:
                algorithm = OUTPUT_AWARE_ALGORITHMS[name]()
                try:
                    algorithm.fit(train, train_emb)
                except ValueError as error:
                    if algorithms is not None:
                        raise
                    skipped[name] = str(error)
                    bar.step(len(grid) + 1)
                    continue
                bar.step()
                bar.stage(f"{name}: sweep λ")
                points = algorithm.curve(test, test_emb, grid)
                bar.step(len(grid))
            curve, curve_lambdas = _dedup(points)
            results[name] = {**_score(curve, singles, best), "lambdas": curve_lambdas,
                             "seconds": round(time.perf_counter() - started, 3)}
    finally:
        bar.close()
    source = Path(folder).resolve()
    split = ({"split": {"from_file": str(source), "test_fraction": test_fraction, "seed": seed}}
             if source.is_file() else {})
    return {
        "dataset": source.stem if source.is_file() else source.name,
        "n_test": len(test),
        "n_train": len(train),
        "models": list(test.models),
        "dropped_rows": {"train": train.dropped_rows, "test": test.dropped_rows},
        "best_single": best,
        "oracle": metrics.oracle(test),
        "random": metrics.random_router(test),
        "single_models": singles,
        "lambdas": list(grid),
        "algorithms": results,
        **({"skipped": skipped} if skipped else {}),
        **({"energy": frontier.result()} if frontier is not None else {}),
        **split,
    }


def train(folder: str | Path, algorithm: str, out: str | Path) -> dict[str, Any]:
    """Fit `algorithm` on the folder's train.jsonl and save its artifact to `out`."""
    _load_registries()
    if algorithm not in TRAINABLE_ROUTERS:
        known = ", ".join(sorted(TRAINABLE_ROUTERS)) or "none registered"
        raise ValueError(f"unknown trainable algorithm '{algorithm}'; known: {known}")
    folder, out = Path(folder), Path(out)
    started = time.perf_counter()
    data = load_train(folder)
    router = TRAINABLE_ROUTERS[algorithm]()
    router.fit(data, embed(data.prompts))
    out.parent.mkdir(parents=True, exist_ok=True)
    # np.savez appends ".npz" to other names; save beside and rename, which is also atomic.
    partial = out.with_name(out.name + ".partial.npz")
    router.save(partial)
    partial.replace(out)
    source = folder.resolve()
    return {"algorithm": algorithm,
            "dataset": source.stem if source.is_file() else source.name, "out": str(out),
            "n_train": len(data), "models": list(data.models),
            "seconds": round(time.perf_counter() - started, 3)}
