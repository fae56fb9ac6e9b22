"""The sweep behind `routeyard eval --ensembles`: member sets x judges x judge accuracies,
chosen on validation rows carved from train, scored once on test (see ensemble_eval.py).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from routeyard.dataset import RoutingDataset
from routeyard.eval import ensemble_eval as ens
from routeyard.eval import metrics
from routeyard.eval.runner import LAMBDAS, load
from routeyard.selection.learned.tuning import split_rows


@dataclass(frozen=True, slots=True)
class Priors:
    """What the fit rows say about each model: the order every ensemble breaks ties by."""

    quality: np.ndarray
    cost: np.ndarray

    def order(self, columns: Sequence[int]) -> tuple[int, ...]:
        """Best mean score first; the cheaper first among equals."""
        return tuple(sorted(columns, key=lambda c: (-self.quality[c], self.cost[c])))

    @property
    def best(self) -> int:
        return self.order(range(len(self.quality)))[0]

    def cheap(self) -> list[int]:
        """Models costing at most CHEAP_SHARE of the best one's, best first."""
        limit = ens.CHEAP_SHARE * self.cost[self.best]
        return [c for c in self.order(range(len(self.cost))) if self.cost[c] <= limit]


def member_sets(priors: Priors, custom: Sequence[Sequence[int]] = ()) -> dict[tuple[int, ...],
                                                                              str]:
    """Every candidate member set and its name: named families fixed in advance by the fit
    rows, the user's sets, then every 3-5 subset of the POOL best models ("pool")."""
    ranked = list(priors.order(range(len(priors.quality))))
    cheap = [c for c in priors.cheap() if c != priors.best]
    families: dict[str, tuple[int, ...]] = {f"top{k}": tuple(ranked[:k]) for k in ens.SIZES}
    for k in (2, 4):
        families[f"best+cheap{k}"] = priors.order([priors.best, *cheap[:k]])
    for k in (3, 5):
        families[f"cheap{k}"] = priors.order(cheap[:k])
    for number, members in enumerate(custom, start=1):
        families[f"custom{number}"] = priors.order(members)
    named: dict[tuple[int, ...], str] = {}
    for name, members in families.items():
        if len(members) >= 2:
            named.setdefault(members, name)
    for k in ens.SIZES:
        for members in itertools.combinations(ranked[:ens.POOL], k):
            named.setdefault(priors.order(members), "pool")
    return named


def default_judges(priors: Priors) -> list[int]:
    """A cheap judge (the best cheap model) and the best model."""
    cheap = priors.cheap()
    return list(dict.fromkeys([*cheap[:1], priors.best]))


@dataclass(frozen=True, slots=True)
class Measured:
    quality: float
    cost: float
    judge_cost: float


class Scorer:
    """Scores configurations on one split, once each."""

    def __init__(self, t: ens.Tables, prices: np.ndarray, repeats: int, seed: int) -> None:
        self.t, self.prices = t, prices
        self.coins = ens.draw_coins(len(t), t.scores.shape[1], repeats, seed)
        self._cache: dict[ens.Config, Measured] = {}

    def __call__(self, config: ens.Config) -> Measured:
        if config not in self._cache:
            out = ens.score(config, self.t, self.prices, self.coins)
            self._cache[config] = Measured(float(out.quality.mean()), float(out.cost.mean()),
                                           float(out.judge_cost.mean()))
        return self._cache[config]


# The judge settings each method is scored under: rank also with its judge's own answers.
SCENARIOS: dict[str, Callable[[tuple[float, ...]], tuple[float | None, ...]]] = {
    "vote": lambda accuracies: (None,),
    "rank": lambda accuracies: (*accuracies, None),
    "synthesise": lambda accuracies: accuracies,
}


def _configs(method: str, sets: Sequence[tuple[int, ...]], judges: Sequence[int],
             accuracy: float | None) -> list[ens.Config]:
    if method not in ens.JUDGED:
        return [ens.Config(method, members) for members in sets]
    return [ens.Config(method, members, judge, accuracy) for members in sets for judge in judges]


def _best_on(configs: list[ens.Config], validation: Scorer) -> ens.Config:
    """Highest validation quality; the cheaper among equals."""
    return max(configs, key=lambda c: (validation(c).quality, -validation(c).cost))


def _row(config: ens.Config, family: str, chosen: bool, models: list[str], validation: Scorer,
         test: Scorer, best: metrics.SingleModel) -> dict[str, Any]:
    v, t = validation(config), test(config)
    return {**config.describe(models), "family": family, "chosen_on_validation": chosen,
            "validation": {"quality": v.quality, "cost": v.cost},
            "test": {"quality": t.quality, "cost": t.cost, "judge_cost": t.judge_cost,
                     "cost_ratio": t.cost / best["cost"] if best["cost"] > 0 else None}}


def _curve(configs: list[ens.Config], validation: Scorer, test: Scorer, priors: Priors,
           singles: list[metrics.SingleModel], best: metrics.SingleModel,
           models: list[str]) -> dict[str, Any]:
    """The runner's λ convention: per λ the configuration (single models included, as the
    cascade's chains of one) maximising validation quality - λ·cost/scale, scored on test."""
    candidates = [ens.Config("single", (c,)) for c in range(len(models))] + configs
    scale = float(priors.cost.max()) or 1.0
    value = np.array([(validation(c).quality, validation(c).cost) for c in candidates])
    first: dict[metrics.Point, float] = {}
    chosen: dict[metrics.Point, str] = {}
    for lam in LAMBDAS:
        config = candidates[int(np.argmax(value[:, 0] - lam * value[:, 1] / scale))]
        point = (test(config).cost, test(config).quality)
        if point not in first:
            first[point] = lam
            described = config.describe(models)
            chosen[point] = "+".join(described["members"]) + (
                f" judged by {described['judge']}" if described["judge"] else "")
    curve = sorted(first)
    return {"aiq": metrics.aiq(curve, [(s["cost"], s["quality"]) for s in singles]),
            "max_quality": metrics.max_quality(curve),
            "cost_ratio_at_best": metrics.cost_ratio_at_best(curve, best),
            "curve": [[c, q] for c, q in curve], "lambdas": [first[p] for p in curve],
            "chosen": [chosen[p] for p in curve]}


def evaluate(train: RoutingDataset, test: RoutingDataset, *,
             accuracies: Sequence[float] = ens.DEFAULT_ACCURACIES,
             judges: Sequence[str] | None = None, members: Sequence[Sequence[str]] = (),
             repeats: int = ens.DEFAULT_REPEATS, seed: int = 0) -> dict[str, Any]:
    """The `ensembles` block of the eval JSON."""
    started = time.perf_counter()
    accuracies = ens.check_accuracies(accuracies)
    models = list(train.models)
    judge_columns = None if judges is None else \
        list(dict.fromkeys(ens.check_models(judges, models, "judge")))
    custom = [list(dict.fromkeys(ens.check_models(names, models, "member")))
              for names in members]
    if any(len(columns) < 2 for columns in custom):
        raise ValueError("an ensemble needs at least two different members")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    whole_train, t_test = ens.tables(train), ens.tables(test)
    fit_rows, validation_rows = split_rows(len(whole_train), ens.VALIDATION_FRACTION, seed)
    fit = whole_train.rows(fit_rows)
    priors = Priors(fit.scores.mean(axis=0), fit.costs.mean(axis=0))
    prices = ens.fit_prices(whole_train)
    validation = Scorer(whole_train.rows(validation_rows), prices, repeats, seed)
    scored = Scorer(t_test, prices, repeats, seed + 1)
    sets = member_sets(priors, custom)
    judge_columns = judge_columns or default_judges(priors)
    singles, best = metrics.single_model_points(test), metrics.best_single(test)
    rows: list[dict[str, Any]] = []
    curves: dict[str, Any] = {}
    for method in ens.METHODS:
        for accuracy in SCENARIOS[method](accuracies):
            every = _configs(method, list(sets), judge_columns, accuracy)
            label = method if method not in ens.JUDGED else \
                f"{method}@{ens.OWN_ANSWER if accuracy is None else f'{accuracy:g}'}"
            curves[label] = _curve(every, validation, scored, priors, singles, best, models)
            for judge in (judge_columns if method in ens.JUDGED else (None,)):
                mine = [c for c in every if c.judge == judge]
                chosen = _best_on(mine, validation)
                rows.append(_row(chosen, sets[chosen.members], True, models, validation,
                                 scored, best))
                rows += [_row(c, sets[c.members], False, models, validation, scored, best)
                         for c in mine if sets[c.members] != "pool" and c != chosen]
    return {
        "method": "vote / rank / synthesise on the recorded answers; synthesise is a model "
                  "(best member's score with probability = judge accuracy, else the vote's)",
        "split": {"fit_rows": len(fit), "validation_rows": len(validation_rows),
                  "test_rows": len(t_test), "seed": seed,
                  "skipped_without_responses": {"train": whole_train.skipped,
                                                "test": t_test.skipped}},
        "judge_accuracies": list(accuracies), "repeats": repeats,
        "judges": {models[j]: {"input_per_mtok": round(float(prices[j][0]) * 1e6, 4),
                               "output_per_mtok": round(float(prices[j][1]) * 1e6, 4),
                               "answer_matching_accuracy":
                                   round(ens.answer_matching_accuracy(fit, j), 4)}
                   for j in judge_columns},
        "priors": {m: {"quality": round(float(q), 4), "cost": float(c)}
                   for m, q, c in zip(models, priors.quality, priors.cost, strict=True)},
        "best_single": best, "member_sets": len(sets),
        "configurations": rows, "curves": curves,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _short(model: str | None) -> str:
    return "-" if model is None else model.rsplit("/", 1)[-1]


def summary(report: dict[str, Any]) -> str:
    """Plain text: the validation-chosen configuration per method, judge and accuracy, the
    fixed families, and each method's λ curve."""
    best, split = report["best_single"], report["split"]
    lines = ["", f"ensembles: member sets chosen on {split['validation_rows']} validation rows "
                 f"of train, scored on {split['test_rows']} test rows; judge accuracy is "
                 f"simulated (stated per row); synthesise is a model, not a measurement",
             f"best single {_short(best['model'])}: quality {best['quality']:.4f} "
             f"at ${best['cost']:.6g}",
             *(f"judge {_short(name)}: ${judge['input_per_mtok']:g}/${judge['output_per_mtok']:g}"
               f" per Mtok in/out (fitted on train); a judge preferring the answer equal to "
               f"its own would be right on {judge['answer_matching_accuracy']:.1%} of pairs"
               for name, judge in report["judges"].items()), "",
             f"{'method':<11} {'judge':<17} {'acc':>5} {'set':<12} {'quality':>8} "
             f"{'cost':>10} {'x best':>7}  members"]
    for row in report["configurations"]:
        accuracy = {None: "-", "simulated": f"{row['judge_accuracy'] or 0:.2f}",
                    ens.OWN_ANSWER: "own"}[row["judge_mode"]]
        family = ("*" if row["chosen_on_validation"] else "") + row["family"]
        ratio = row["test"]["cost_ratio"]
        lines.append(f"{row['method']:<11} {_short(row['judge']):<17} {accuracy:>5} "
                     f"{family:<12} {row['test']['quality']:>8.4f} "
                     f"{row['test']['cost']:>10.6f} {ratio or 0:>7.2f}  "
                     + "+".join(_short(m) for m in row["members"]))
    lines += ["(* = chosen on validation; the others are families fixed in advance)",
              "(acc own = the judge prefers the answer equal to its own recorded answer)", "",
             f"{'curve':<16} {'AIQ':>7} {'max quality':>12} {'cost@best':>10}"]
    for label, curve in report["curves"].items():
        aiq = "n/a" if curve["aiq"] is None else f"{curve['aiq']:.4f}"
        ratio = curve["cost_ratio_at_best"]
        lines.append(f"{label:<16} {aiq:>7} {curve['max_quality']:>12.4f} "
                     f"{'never' if ratio is None else f'{ratio:.1%}':>10}")
    return "\n".join(lines) + "\n"


# -- `routeyard eval` options -----------------------------------------------------------------

def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("ensembles (docs/ensembles.md#measured-offline)")
    group.add_argument("--ensembles", action="store_true",
                       help="also score vote, rank and synthesise on the recorded answers")
    group.add_argument("--judge-accuracy", default="0.6,0.75,0.9,1.0", metavar="A,B,...",
                       help="simulated judge accuracies to sweep, each in [0, 1]")
    group.add_argument("--judges", metavar="MODEL,...",
                       help="judge models (default: the best cheap model and the best one)")
    group.add_argument("--members", action="append", default=[], metavar="MODEL,...",
                       help="a member set to score beside the built-in ones (repeatable)")
    group.add_argument("--judge-repeats", type=int, default=ens.DEFAULT_REPEATS, metavar="N",
                       help=f"judge simulations averaged per figure "
                            f"(default {ens.DEFAULT_REPEATS})")


def _names(spec: str, option: str) -> list[str]:
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names:
        raise ValueError(f"{option} names no model")
    return names


def from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The `ensembles` block for `routeyard eval --ensembles`; ValueError on bad options."""
    try:
        accuracies = [float(a) for a in args.judge_accuracy.split(",") if a.strip()]
    except ValueError:
        raise ValueError(f"--judge-accuracy: not a list of numbers: {args.judge_accuracy}"
                         ) from None
    ens.check_accuracies(accuracies)  # before loading anything
    judges = None if args.judges is None else _names(args.judges, "--judges")
    seed = getattr(args, "seed", 0)
    train, test = load(args.data, test_fraction=getattr(args, "test_fraction", 0.2), seed=seed)
    if not getattr(args, "quiet", False):
        print("ensembles: sweeping member sets, judges and accuracies", file=sys.stderr)
    return evaluate(train, test, accuracies=accuracies, judges=judges,
                    members=[_names(spec, "--members") for spec in args.members],
                    repeats=args.judge_repeats, seed=seed)
