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
the truth is each target's mean recorded score (cost) on the same resampled prompts.

The reward model of DM and DR (`--reward-model`):
- `mf`: the MF router's predicted quality (and train's mean cost per model), fitted on train,
  where every model's score is known: more than a real decision log offers.
- `log`: what `routeyard evaluate-policy` fits from the log alone, through the same code
  (`_reward_model`): the per-(decision, model) mean; one decision here, so per model.
- `log-features`: the same plus `crossfit_reward`'s cross-fitted ridge shift on what a log
  holds about each prompt (`log_features`: its length, its signals, and the static embedding
  of its text, as with state.log_content; the bench has no signals). Measured, not used by
  the command.
- `oracle`: a bound, not an estimator: per model, a ridge on the same features fitted to every
  model's score on every test prompt (in-sample, full information). No reward model built from
  these features can be much better, so DR's error with it is the floor for this log size.

Prints a markdown table: per estimator (and the variants sndr, dr-clip, dr-switch) and dataset,
the 95% interval's coverage of the truth and the mean absolute error, over every (log, target)
pair; then DR's error per target, and DR's predicted standard deviation from the log.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from paths import add_shared_option, shared_dir

from routeyard.dataset import RoutingDataset, load_dataset
from routeyard.eval.offpolicy import ESTIMATORS, VARIANTS, LoggedBandit, crossfit_reward, estimate
from routeyard.eval.offpolicy_command import _reward_model
from routeyard.eval.policy import Event
from routeyard.eval.runner import embed
from routeyard.selection.learned.knn import KnnRouter
from routeyard.selection.learned.mf import MfRouter

EPSILON = 0.1
LOGGING_LAMBDA = 1.0
TARGET_LAMBDAS = (0.0, 0.3)
NAMES = (*ESTIMATORS, *VARIANTS)
REWARD_MODELS = ("mf", "log", "log-features", "oracle")


def _policies(train: RoutingDataset, test: RoutingDataset, e_train: np.ndarray,
              e_test: np.ndarray
              ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """(logging greedy choice, targets' choices, MF reward model quality, train's mean cost),
    each per test prompt."""
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


def log_features(events: list[Event], embeddings: np.ndarray | None = None) -> np.ndarray:
    """What a decision log holds about each prompt: its length (log prompt tokens), each logged
    signal's confidence, and the static embedding of the last user turn (`embeddings`, else
    computed when every event logged its text)."""
    names = sorted({k for e in events for k in e.signals})
    columns = [np.log1p([e.prompt_tokens for e in events])]
    columns += [np.array([float(e.signals.get(k, 0.0)) for e in events]) for k in names]
    out = np.column_stack(columns)
    if embeddings is None and all(e.prompt is not None for e in events):
        embeddings = embed([e.prompt or "" for e in events])
    return out if embeddings is None else np.hstack([out, embeddings.astype(float)])


def _prompt_features(test: RoutingDataset, e_test: np.ndarray) -> np.ndarray:
    """`log_features` per test prompt (~4 characters a token; embedded once, not per log)."""
    events = [Event("bench", tuple(test.models), test.models[0], 1.0, None, 0.0, 0.0, {}, p,
                    max(1, len(p) // 4)) for p in test.prompts]
    return log_features(events, e_test)


def _oracle(test: RoutingDataset, features: np.ndarray, values: np.ndarray,
            alpha: float = 10.0) -> np.ndarray:
    """Per model, a ridge on standardised features fitted to every test prompt's value."""
    x = (features - features.mean(axis=0)) / np.maximum(features.std(axis=0), 1e-12)
    x = np.hstack([x, np.ones((len(x), 1))])
    coef = np.linalg.solve(x.T @ x + alpha * np.eye(x.shape[1]), x.T @ values)
    return np.clip(x @ coef, values.min(), values.max())


def _log_model(test: RoutingDataset, rows: np.ndarray, actions: np.ndarray,
               propensity: np.ndarray, features: np.ndarray | None) -> dict[str, np.ndarray]:
    """The command's reward models (quality, cost) fitted on this log, per (event, model)."""
    n = len(rows)
    events = [Event("bench", tuple(test.models), test.models[a], float(p),
                    float(test.scores[r, a]), float(test.costs[r, a]), 0.0, {}, None, 0)
              for r, a, p in zip(rows, actions, propensity, strict=True)]
    out = {}
    for outcome in ("quality", "cost"):
        predict = _reward_model(events, lambda e, o=outcome: getattr(e, o))
        means = np.tile([predict("bench", m) for m in test.models], (n, 1))
        out[outcome] = means if features is None else crossfit_reward(
            means, actions, np.array([getattr(e, outcome) for e in events]), features[rows])
    return out


def run_dataset(folder: Path, logs: int, events: int, resamples: int, epsilon: float,
                method: str = "percentile", reward_model: str = "mf"
                ) -> dict[str, dict[str, list[float]]]:
    """{outcome: {"estimator:cover" | "estimator:error" | "estimator:target" |
    "estimator:sd": [...]}} over (log, target) pairs."""
    train, test = load_dataset(folder)
    e_train, e_test = embed(train.prompts), embed(test.prompts)
    greedy, targets, q_model, c_model = _policies(train, test, e_train, e_test)
    features = _prompt_features(test, e_test)
    if reward_model == "oracle":
        q_model, c_model = _oracle(test, features, test.scores), _oracle(test, features,
                                                                         test.costs)
    k = len(test.models)
    logging_probs = (1 - epsilon) * _one_hot(greedy, k) + epsilon / k
    results: dict[str, dict[str, list[float]]] = {
        o: {f"{e}:{m}": [] for e in NAMES for m in ("cover", "error", "target", "sd")}
        for o in ("quality", "cost")}
    for seed in range(logs):
        rng = np.random.default_rng(seed)
        rows = rng.integers(0, len(test), events)
        probs = logging_probs[rows]
        actions = (probs.cumsum(axis=1) > rng.random((events, 1))).argmax(axis=1)
        propensity = probs[np.arange(events), actions]
        models = (_log_model(test, rows, actions, propensity,
                             features if reward_model == "log-features" else None)
                  if reward_model.startswith("log")
                  else {"quality": q_model[rows], "cost": c_model[rows]})
        outcomes = {"quality": (test.scores[rows], models["quality"]),
                    "cost": (test.costs[rows], models["cost"])}
        for t, choice in enumerate(targets.values()):
            target = _one_hot(choice[rows], k)
            for outcome, (truth_matrix, model) in outcomes.items():
                truth = float(truth_matrix[np.arange(events), choice[rows]].mean())
                log = LoggedBandit(actions, propensity,
                                   truth_matrix[np.arange(events), actions], target, model)
                for name in NAMES:
                    est = estimate(log, name, seed=seed, n_resamples=resamples, method=method)
                    results[outcome][f"{name}:cover"].append(float(est.low <= truth <= est.high))
                    results[outcome][f"{name}:error"].append(abs(est.value - truth))
                    results[outcome][f"{name}:target"].append(t)
                    # The interval's width over 2 x 1.96: the log's own view of the spread.
                    results[outcome][f"{name}:sd"].append((est.high - est.low) / 3.92)
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
                    f"{mean('dr:sd'):.4f} | {mean('snips:error'):.4f} | "
                    f"{mean('ips:error'):.4f} |")
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
    parser.add_argument("--reward-model", default="mf", choices=REWARD_MODELS,
                        help="DM and DR's reward model (default mf; see the module doc)")
    add_shared_option(parser)
    args = parser.parse_args(argv)
    base = shared_dir(args.shared) / "data"
    table = ["| dataset | estimator | quality coverage | quality MAE | cost coverage | "
             "cost MAE ($) |", "|---|---|---|---|---|---|"]
    per_target = ["| dataset | target | DR coverage | DR MAE | DR interval / 3.92 | SNIPS MAE "
                  "| IPS MAE |", "|---|---|---|---|---|---|---|"]
    for dataset in args.datasets.split(","):
        start = time.perf_counter()
        results = run_dataset(base / dataset, args.logs, args.events, args.resamples,
                              args.epsilon, args.method, args.reward_model)
        print(f"{dataset}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
        per_target += _per_target(dataset, results["quality"])
        for name in NAMES:
            cells = []
            for outcome in ("quality", "cost"):
                cover = np.mean(results[outcome][f"{name}:cover"])
                error = np.mean(results[outcome][f"{name}:error"])
                cells += [f"{cover:.1%}", f"{error:.4f}" if outcome == "quality"
                          else f"{error:.2e}"]
            table.append(f"| {dataset} | {name} | " + " | ".join(cells) + " |")
    print(f"{args.logs} logs x {args.events} events x 5 targets per dataset; ε = "
          f"{args.epsilon:g}; {args.resamples} bootstrap resamples ({args.method}); reward "
          f"model {args.reward_model}\n")
    print("\n".join(table))
    print("\nQuality, per target policy:\n")
    print("\n".join(per_target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
