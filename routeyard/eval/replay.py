"""`routeyard replay`: stream a routing dataset through an online learner as live traffic.

For each row in order, the learner chooses among the dataset's models (cost: that row's
recorded cost of each model), is rewarded with the chosen model's recorded score and updates.
Reported: mean quality, cumulative regret against the best fixed model (best mean score over the
replayed rows) and against the oracle (the best model of every row), the quality of the last
1,000 events and of the events after the first 2,000, each against the best fixed model on the
same events. With an output folder, regret.png plots both cumulative regrets.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson

import routeyard.selection.online  # noqa: F401  (registers the online algorithms)
from routeyard.dataset import RoutingDataset, load_dataset
from routeyard.selection.base import SELECTION_ALGORITHMS, make_algorithm
from routeyard.selection.online.base import OnlineAlgorithm

WARMUP = 2000  # "within 5% of the best fixed model after 2,000 feedback events"
TAIL = 1000
PLOT_MISSING = "regret.png skipped: plots need matplotlib (pip install 'routeyard[eval]')"


def online_algorithms() -> list[str]:
    return sorted(n for n, c in SELECTION_ALGORITHMS.items() if issubclass(c, OnlineAlgorithm))


def _window(chosen: np.ndarray, scores: np.ndarray, start: int) -> dict[str, Any] | None:
    """The learner's quality over events [start:], against the best fixed model there."""
    if start >= len(chosen) or start < 0:
        return None
    quality = float(chosen[start:].mean())
    means = scores[start:].mean(axis=0)
    fixed = float(means.max())
    return {"events": int(len(chosen) - start), "quality": quality,
            "best_fixed_quality": fixed,
            "relative_to_best_fixed": quality / fixed if fixed > 0 else None}


def _contexts(data: RoutingDataset, algorithm: OnlineAlgorithm) -> np.ndarray | None:
    if not algorithm.needs_embedding:
        return None
    from routeyard.signals.embedder import load_embedder

    return np.asarray(load_embedder("builtin").embed(data.prompts), dtype=np.float64)


def replay(folder: str | Path, algorithm: str, *, split: str = "train",
           limit: int | None = None, lam: float = 0.0, seed: int = 0,
           out_dir: str | Path | None = None, options: dict[str, Any] | None = None,
           shuffle: bool = False) -> dict[str, Any]:
    """Replay `split` of a dataset folder through `algorithm`; see the module docstring.

    `shuffle` (seeded by `seed`) replays the rows in a random order instead of file order.
    """
    if algorithm not in SELECTION_ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; online ones: "
                         f"{', '.join(online_algorithms())}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    if limit is not None and limit < 1:
        raise ValueError("limit must be >= 1")
    learner = make_algorithm(algorithm, {**(options or {}), "lambda": lam, "seed": seed})
    if not isinstance(learner, OnlineAlgorithm):
        raise ValueError(f"algorithm {algorithm!r} does not learn online; online ones: "
                         f"{', '.join(online_algorithms())}")
    train, test = load_dataset(folder)
    data = train if split == "train" else test
    order = np.arange(len(data))
    if shuffle:
        order = np.random.default_rng(seed).permutation(len(data))
    if limit is not None:
        order = order[:limit]
    data = data.subset(order)
    contexts = _contexts(data, learner)
    models, scores, costs = data.models, data.scores, data.costs
    n = len(data)
    picks = np.empty(n, dtype=np.int64)
    for t in range(n):
        context = None if contexts is None else contexts[t]
        index = learner.choose_index(models, costs[t], context)
        picks[t] = index
        learner.update(models[index], float(scores[t, index]), context)
    rows = np.arange(n)
    chosen = scores[rows, picks]
    chosen_cost = costs[rows, picks]
    means = scores.mean(axis=0)
    best = int(np.argmax(means))
    oracle = scores.max(axis=1)
    regret_fixed = np.cumsum(scores[:, best] - chosen)
    regret_oracle = np.cumsum(oracle - chosen)
    after = _window(chosen, scores, WARMUP)
    counts = np.bincount(picks, minlength=len(models))
    result: dict[str, Any] = {
        "algorithm": algorithm,
        "dataset": data.name,
        "split": split,
        "lambda": lam,
        "seed": seed,
        "shuffled": shuffle,
        "events": n,
        "mean_quality": float(chosen.mean()),
        "mean_cost": float(chosen_cost.mean()),
        "best_fixed": {"model": models[best], "quality": float(means[best]),
                       "cost": float(costs[:, best].mean())},
        "oracle_quality": float(oracle.mean()),
        "regret_vs_best_fixed": float(regret_fixed[-1]),
        "regret_vs_oracle": float(regret_oracle[-1]),
        "quality_last_1000": float(chosen[-TAIL:].mean()),
        "last_1000": _window(chosen, scores, max(0, n - TAIL)),
        "after_2000": after,
        "within_5pct_of_best_fixed_after_2000": bool(
            after is not None and after["relative_to_best_fixed"] is not None
            and after["relative_to_best_fixed"] >= 0.95),
        "choices": {m: int(c) for m, c in zip(models, counts, strict=True)},
        "state_bytes": len(learner.get_state()),
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if _regret_png(result, regret_fixed, regret_oracle, out / "regret.png"):
            result["plot"] = str(out / "regret.png")
        else:
            print(PLOT_MISSING, file=sys.stderr)
    return result


def _regret_png(result: dict[str, Any], fixed: np.ndarray, oracle: np.ndarray,
                path: Path) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 5), dpi=110)
    try:
        events = np.arange(1, len(fixed) + 1)
        axes.plot(events, fixed, label=f"vs best fixed ({result['best_fixed']['model']})")
        axes.plot(events, oracle, label="vs oracle (best model per row)")
        axes.axhline(0, color="0.6", linewidth=0.8)
        if len(fixed) > WARMUP:
            axes.axvline(WARMUP, color="0.6", linestyle="--", linewidth=0.8)
        axes.set_xlabel("feedback events")
        axes.set_ylabel("cumulative regret (quality)")
        axes.set_title(f"{result['algorithm']} on {result['dataset']} {result['split']} "
                       f"(λ={result['lambda']:g}): mean quality {result['mean_quality']:.3f}")
        axes.grid(True, alpha=0.3)
        axes.legend(loc="upper left")
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)
    return True


# -- CLI -------------------------------------------------------------------------------------

def configure_replay(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="routing dataset folder with train.jsonl and test.jsonl")
    parser.add_argument("--algorithm", required=True, metavar="NAME",
                        help="an online algorithm: ema, thompson, linucb, elo")
    parser.add_argument("--split", choices=("train", "test"), default="train")
    parser.add_argument("--limit", type=int, metavar="N", help="replay the first N rows only")
    parser.add_argument("--lambda", dest="lam", type=float, default=0.0, metavar="L",
                        help="cost weight (costs relative to the dearest model; default 0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shuffle", action="store_true",
                        help="replay the rows in a seeded random order, not file order")
    parser.add_argument("--out", metavar="DIR", help="write replay.json and regret.png there")
    parser.add_argument("--json", action="store_true", help="print one JSON object to stdout")


def summary(result: dict[str, Any]) -> str:
    best = result["best_fixed"]
    lines = [f"{result['algorithm']} on {result['dataset']} {result['split']}: "
             f"{result['events']} events, λ={result['lambda']:g}",
             f"mean quality        {result['mean_quality']:.4f} at ${result['mean_cost']:.6g}",
             f"best fixed          {best['model']}: {best['quality']:.4f}",
             f"oracle              {result['oracle_quality']:.4f}",
             f"regret vs fixed     {result['regret_vs_best_fixed']:.1f}",
             f"regret vs oracle    {result['regret_vs_oracle']:.1f}"]
    for key in ("last_1000", "after_2000"):
        window = result[key]
        if window is not None:
            lines.append(f"{key:<19} {window['quality']:.4f} vs best fixed "
                         f"{window['best_fixed_quality']:.4f} "
                         f"({window['relative_to_best_fixed']:.1%}, {window['events']} events)")
    lines.append(f"within 5% of best fixed after 2000: "
                 f"{result['within_5pct_of_best_fixed_after_2000']}")
    return "\n".join(lines) + "\n"


def run_replay(args: argparse.Namespace) -> int:
    try:
        result = replay(args.data, args.algorithm, split=args.split, limit=args.limit,
                        lam=args.lam, seed=args.seed, out_dir=args.out,
                        shuffle=getattr(args, "shuffle", False))
        if args.out:
            Path(args.out, "replay.json").write_bytes(
                orjson.dumps(result, option=orjson.OPT_INDENT_2))
    except (ValueError, OSError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(result).decode() + "\n")
    else:
        sys.stdout.write(summary(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m routeyard.eval.replay ...`, until cli.py wires `routeyard replay` in."""
    parser = argparse.ArgumentParser(prog="routeyard replay")
    configure_replay(parser)
    return run_replay(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
