"""`routeyard evaluate-policy`: a candidate policy's quality, cost and latency, estimated from a
decision log, per decision and per slice (see docs/evaluation.md)."""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from routeyard.eval.offpolicy import ESTIMATORS, N_RESAMPLES, LoggedBandit, Report, estimate_all
from routeyard.eval.policy import (
    Event,
    PolicyInputError,
    PolicySpec,
    add_implicit_argument,
    events_of,
    read_log,
    target_probabilities,
    with_implicit,
)
from routeyard.eval.policy_config import config_probabilities, load_policy

# Each outcome: how an event gives it (None: not observed), and its unit in the text table.
OUTCOMES: dict[str, tuple[Callable[[Event], float | None], str]] = {
    "quality": (lambda e: e.quality, ""),
    "cost": (lambda e: e.cost, "$"),
    "latency": (lambda e: e.latency, "ms"),
}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("log", help="the decision log: a SQLite file, a redis:// or "
                                    "postgresql:// URL")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--config", default=None,
                       help="the candidate policy as a config file: each logged request's "
                            "decision chooses with the config's candidates and algorithm")
    which.add_argument("--algorithm", default=None,
                       help="the candidate policy: static, cheapest, or a trained router's "
                            "kind (knn, mf, ...) with --artifact")
    parser.add_argument("--artifact", default=None, help="the trained router (.npz)")
    parser.add_argument("--lambda", dest="lam", type=float, default=1.0,
                        help="the router's cost/quality knob (default 1)")
    parser.add_argument("--rerun-rules", action="store_true",
                        help="with --config: re-run the config's signals and rules on the "
                             "logged prompts (needs state.log_content) instead of keeping each "
                             "request's logged decision")
    parser.add_argument("--epsilon", type=float, default=0.0,
                        help="mix the candidate with a uniform choice (default 0)")
    parser.add_argument("--slice", dest="slices", action="append", default=[],
                        metavar="SIGNAL", help="also break down by a logged signal, e.g. "
                                               "domain:code (repeatable)")
    parser.add_argument("--key-prefix", default="routeyard",
                        help="a Redis log's state.key_prefix (default routeyard)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--resamples", type=int, default=N_RESAMPLES,
                        help=f"bootstrap resamples (default {N_RESAMPLES})")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    add_implicit_argument(parser)


def _reward_model(events: list[Event], get: Callable[[Event], float | None]
                  ) -> Callable[[str, str], float]:
    """Per (decision, model) mean of the observed outcome, else per model, else overall."""
    by_pair: dict[tuple[str, str], list[float]] = defaultdict(list)
    by_model: dict[str, list[float]] = defaultdict(list)
    everything: list[float] = []
    for e in events:
        value = get(e)
        if value is not None:
            by_pair[(e.decision, e.model)].append(value)
            by_model[e.model].append(value)
            everything.append(value)
    overall = float(np.mean(everything)) if everything else 0.0
    pair_mean = {k: float(np.mean(v)) for k, v in by_pair.items()}
    model_mean = {k: float(np.mean(v)) for k, v in by_model.items()}

    def predict(decision: str, model: str) -> float:
        return pair_mean.get((decision, model), model_mean.get(model, overall))

    return predict


def _bandit(events: list[Event], targets: list[dict[str, float]], outcome: list[float],
            predict: Callable[[str, str], float]) -> LoggedBandit:
    models = sorted({m for e in events for m in e.candidates} | {m for t in targets for m in t})
    column = {m: i for i, m in enumerate(models)}
    target = np.zeros((len(events), len(models)))
    predicted = np.zeros_like(target)
    supported = np.zeros(target.shape, dtype=bool)
    for row, (e, probs) in enumerate(zip(events, targets, strict=True)):
        supported[row, [column[m] for m in e.candidates]] = True
        for model, p in probs.items():
            target[row, column[model]] = p
        for model in models:
            predicted[row, column[model]] = predict(e.decision, model)
    return LoggedBandit(np.array([column[e.model] for e in events]),
                        np.array([e.propensity for e in events]), np.array(outcome),
                        target, predicted, supported)


def _group(events: list[Event], targets: list[dict[str, float]],
           models: dict[str, Callable[[str, str], float]], seed: int,
           resamples: int) -> dict[str, Any]:
    out: dict[str, Any] = {"events": len(events)}
    for name, (get, _) in OUTCOMES.items():
        rows = [i for i, e in enumerate(events) if get(e) is not None]
        values = [float(get(events[i]) or 0.0) for i in rows]
        entry: dict[str, Any] = {"n": len(rows),
                                 "logging": float(np.mean(values)) if values else None}
        if not rows:
            entry.update(Report(unsupported=f"no event carries a {name}").to_dict())
        else:
            log = _bandit([events[i] for i in rows], [targets[i] for i in rows], values,
                          models[name])
            entry.update(estimate_all(log, seed=seed, n_resamples=resamples).to_dict())
        out[name] = entry
    return out


def evaluate(events: list[Event], targets: list[dict[str, float]], slices: list[str], *,
             seed: int = 0, resamples: int = N_RESAMPLES) -> dict[str, Any]:
    """{"groups": {"all" | "decision:NAME" | "slice:SIGNAL": {...}}}: see docs/evaluation.md."""
    # Per-(decision, model) means: a per-prompt reward model was measured (issue 16) and lowered
    # DR's error by at most 6% at a cost of 2-4 points of coverage (docs/benchmarks.md).
    models = {name: _reward_model(events, get) for name, (get, _) in OUTCOMES.items()}
    groups: dict[str, list[int]] = {"all": list(range(len(events)))}
    for i, e in enumerate(events):
        groups.setdefault(f"decision:{e.decision}", []).append(i)
    for signal in slices:
        groups[f"slice:{signal}"] = [i for i, e in enumerate(events)
                                     if _matched(e.signals.get(signal))]
    result: dict[str, Any] = {}
    for name, rows in groups.items():
        if not rows:
            result[name] = {"events": 0, "unsupported": "no logged event in this slice"}
            continue
        result[name] = _group([events[i] for i in rows], [targets[i] for i in rows], models,
                              seed, resamples)
    return {"groups": result}


def _cell(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "$":
        return f"${value:.6f}"
    return f"{value:.1f}" if unit == "ms" else f"{value:.3f}"


def render_text(result: dict[str, Any]) -> str:
    excluded = "; implicit feedback excluded" if result.get("implicit_feedback") == "exclude" \
        else ""
    lines = [f"candidate: {result['policy']}    log: {result['log']} "
             f"({result['events']} routed events{excluded})"]
    for group, data in result["groups"].items():
        lines.append("")
        lines.append(f"{group}  ({data['events']} events)")
        if "quality" not in data:
            lines.append(f"  unsupported: {data['unsupported']}")
            continue
        lines.append(f"  {'outcome':<8} {'logging':>10} {'estimator':<6} {'estimate':>10} "
                     f"{'95% interval':>24} {'ESS':>8}")
        for outcome, (_, unit) in OUTCOMES.items():
            entry = data[outcome]
            head = f"  {outcome:<8} {_cell(entry['logging'], unit):>10}"
            if entry["unsupported"]:
                lines.append(f"{head} unsupported: {entry['unsupported']}")
                continue
            for i, (name, est) in enumerate(entry["estimates"].items()):
                interval = f"[{_cell(est['low'], unit)}, {_cell(est['high'], unit)}]"
                lead = head if i == 0 else " " * len(head)
                lines.append(f"{lead} {name:<6} {_cell(est['value'], unit):>10} "
                             f"{interval:>24} {est['ess']:>8.1f}")
    return "\n".join(lines)


def run_command(args: argparse.Namespace) -> int:
    try:
        if args.rerun_rules and args.config is None:
            raise PolicyInputError("--rerun-rules needs a candidate --config (its rules)")
        events = events_of(with_implicit(read_log(args.log, args.key_prefix), args.implicit))
        if args.config is not None:
            targets = config_probabilities(load_policy(args.config), events, args.epsilon,
                                           rerun_rules=args.rerun_rules)
        else:
            spec = PolicySpec(args.algorithm, args.artifact, args.lam, args.epsilon)
            targets = target_probabilities(events, spec)
        result = evaluate(events, targets, args.slices, seed=args.seed,
                          resamples=args.resamples)
        _check_support(result["groups"]["all"])
    except PolicyInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    policy = (f"config {args.config}" if args.config else args.algorithm
              + (f" {args.artifact} λ={args.lam:g}" if args.artifact else ""))
    if args.epsilon:
        policy += f" ε={args.epsilon:g}"
    if args.rerun_rules:
        policy += " (rules re-run)"
    result = {"log": args.log.split("@")[-1], "policy": policy, "events": len(events),
              "implicit_feedback": args.implicit, "estimators": list(ESTIMATORS), **result}
    if args.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n")
    else:
        print(render_text(result))
    return 0


def _check_support(group: dict[str, Any]) -> None:
    """Missing support anywhere in the log is an error, not a figure (every event has a cost,
    so the cost entry counts every event's support)."""
    problems = group["cost"]["support_problems"]
    if problems:
        raise PolicyInputError(
            f"missing support: on {problems} of {group['events']} logged events the candidate "
            "gives positive probability to a model the logging policy could not choose "
            "(logged probability 0 or missing); no estimate is given")


def _matched(confidence: object) -> bool:
    return isinstance(confidence, (int, float)) and confidence > 0
