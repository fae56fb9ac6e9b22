"""Off-policy estimates checked against the truth on routing datasets.

    python bench/offpolicy_validation.py                       # 50 logs x 2,000 events
    python bench/offpolicy_validation.py --logs 10 --events 1000 --datasets llmrouter

Every model's score and cost is known for every prompt of `routerbench` and `llmrouter`, so a
policy's true value on a set of prompts is known. For each dataset: kNN and MF routers are fitted
on train. The logging policy is the kNN router at λ = 1 with ε = 0.1 exploration (its greedy
choice with probability 0.9 + 0.1/K, every other model 0.1/K). Each log resamples `--events`
test prompts with a seed and draws the logged model from the logging policy; its outcome is that
model's recorded score (and cost). Five deterministic target policies are estimated off-policy
from the log: kNN and MF at λ = 0 and λ = 0.3, and "always the cheapest" (lowest mean train cost);
the truth is each target's mean recorded score (cost) on the same resampled prompts. The reward
model of DM and DR is the MF router's predicted quality (and train's mean cost per model).

Prints a markdown table: per estimator and dataset, the 95% interval's coverage of the truth
and the mean absolute error, over every (log, target) pair.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from paths import add_shared_option, shared_dir

from routeyard.dataset import RoutingDataset, load_dataset
from routeyard.eval.offpolicy import ESTIMATORS, LoggedBandit, estimate
from routeyard.eval.runner import embed
from routeyard.selection.learned.knn import KnnRouter
from routeyard.selection.learned.mf import MfRouter

EPSILON = 0.1
LOGGING_LAMBDA = 1.0
TARGET_LAMBDAS = (0.0, 0.3)


def _policies(train: RoutingDataset, test: RoutingDataset
              ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """(logging greedy choice, targets' choices, reward model quality, reward model cost), each
    per test prompt."""
    e_train, e_test = embed(train.prompts), embed(test.prompts)
    knn, mf = KnnRouter(), MfRouter()
    knn.fit(train, e_train)
    mf.fit(train, e_train)
    targets: dict[str, np.ndarray] = {}
    for name, router in (("knn", knn), ("mf", mf)):
        for lam in TARGET_LAMBDAS:
            targets[f"{name} λ={lam:g}"] = router.choose(e_test, lam)
    cheapest = int(np.argmin(train.costs.mean(axis=0)))
    targets["cheapest"] = np.full(len(test), cheapest)
    quality = np.clip(mf.predict(e_test), 0.0, 1.0)
    cost = np.broadcast_to(train.costs.mean(axis=0), quality.shape)
    return knn.choose(e_test, LOGGING_LAMBDA), targets, quality, cost


def _one_hot(choice: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((len(choice), k))
    out[np.arange(len(choice)), choice] = 1.0
    return out


def run_dataset(folder: Path, logs: int, events: int, resamples: int, epsilon: float,
                method: str = "percentile") -> dict[str, dict[str, list[float]]]:
    """{outcome: {"estimator:cover" | "estimator:error" | "estimator:target": [...]}} over
    (log, target) pairs."""
    train, test = load_dataset(folder)
    greedy, targets, q_model, c_model = _policies(train, test)
    k = len(test.models)
    logging_probs = (1 - epsilon) * _one_hot(greedy, k) + epsilon / k
    results: dict[str, dict[str, list[float]]] = {
        o: {f"{e}:{m}": [] for e in ESTIMATORS for m in ("cover", "error", "target")}
        for o in ("quality", "cost")}
    for seed in range(logs):
        rng = np.random.default_rng(seed)
        rows = rng.integers(0, len(test), events)
        probs = logging_probs[rows]
        actions = (probs.cumsum(axis=1) > rng.random((events, 1))).argmax(axis=1)
        propensity = probs[np.arange(events), actions]
        outcomes = {"quality": (test.scores[rows], q_model[rows]),
                    "cost": (test.costs[rows], c_model[rows])}
        for t, choice in enumerate(targets.values()):
            target = _one_hot(choice[rows], k)
            for outcome, (truth_matrix, model) in outcomes.items():
                truth = float(truth_matrix[np.arange(events), choice[rows]].mean())
                log = LoggedBandit(actions, propensity,
                                   truth_matrix[np.arange(events), actions], target, model)
                for name in ESTIMATORS:
                    est = estimate(log, name, seed=seed, n_resamples=resamples, method=method)
                    results[outcome][f"{name}:cover"].append(float(est.low <= truth <= est.high))
                    results[outcome][f"{name}:error"].append(abs(est.value - truth))
                    results[outcome][f"{name}:target"].append(t)
    return results


def _per_target(dataset: str, quality: dict[str, list[float]]) -> list[str]:
    names = [f"knn λ={lam:g}" for lam in TARGET_LAMBDAS] + [
        f"mf λ={lam:g}" for lam in TARGET_LAMBDAS] + ["cheapest"]
    rows = []
    for t, name in enumerate(names):
        mask = np.array(quality["dr:target"]) == t

        def mean(key: str, mask: np.ndarray = mask) -> float:
            return float(np.mean(np.array(quality[key])[mask]))

        rows.append(f"| {dataset} | {name} | {mean('dr:cover'):.0%} | {mean('dr:error'):.4f} | "
                    f"{mean('snips:error'):.4f} | {mean('ips:error'):.4f} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logs", type=int, default=50)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--datasets", default="routerbench,llmrouter")
    parser.add_argument("--epsilon", type=float, default=EPSILON,
                        help=f"the logging policy's exploration (default {EPSILON})")
    parser.add_argument("--method", default="percentile", choices=("percentile", "BCa"),
                        help="the bootstrap interval's method (default percentile)")
    add_shared_option(parser)
    args = parser.parse_args(argv)
    base = shared_dir(args.shared) / "data"
    table = ["| dataset | estimator | quality coverage | quality MAE | cost coverage | "
             "cost MAE ($) |", "|---|---|---|---|---|---|"]
    per_target = ["| dataset | target | DR coverage | DR MAE | SNIPS MAE | IPS MAE |",
                  "|---|---|---|---|---|---|"]
    for dataset in args.datasets.split(","):
        start = time.perf_counter()
        results = run_dataset(base / dataset, args.logs, args.events, args.resamples,
                              args.epsilon, args.method)
        print(f"{dataset}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
        per_target += _per_target(dataset, results["quality"])
        for name in ESTIMATORS:
            cells = []
            for outcome in ("quality", "cost"):
                cover = np.mean(results[outcome][f"{name}:cover"])
                error = np.mean(results[outcome][f"{name}:error"])
                cells += [f"{cover:.1%}", f"{error:.4f}" if outcome == "quality"
                          else f"{error:.2e}"]
            table.append(f"| {dataset} | {name} | " + " | ".join(cells) + " |")
    print(f"{args.logs} logs x {args.events} events x 5 targets per dataset; ε = "
          f"{args.epsilon:g}; {args.resamples} bootstrap resamples ({args.method})\n")
    print("\n".join(table))
    print("\nQuality, per target policy:\n")
    print("\n".join(per_target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
