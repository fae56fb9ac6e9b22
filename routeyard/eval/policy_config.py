"""A config file as the candidate policy of `routeyard evaluate-policy`.

By default rules are not re-run: each logged request keeps its logged decision, and the
config's decision of that name chooses among the config's candidates
with its algorithm, re-applied offline where that is possible from the record (`ALGORITHMS`, a
registry): `static` (the first candidate), `cheapest` and `quality_cost` (priced from the config's
`pricing` and the logged prompt tokens), `learned` (its artifact on the logged prompt, which needs
`state.log_content`). Algorithms that depend on live state (health, load, latency, online
learners, budgets, sessions) cannot be re-applied and are an error. A model the config chooses
that was not among the logged candidates has no support: no figure is given.

With `rerun_rules`, the config's own signals and rules decide each request again, on the
messages the log kept (`state.log_content`), and the decision they choose then picks the model:
a candidate config that moves traffic between decisions is evaluated as it would have routed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routeyard.eval.policy import Event, PolicyInputError, explore, learned_choices

DEFAULT_OUTPUT_TOKENS = 256


@dataclass(frozen=True, slots=True)
class ConfigDecision:
    name: str
    candidates: tuple[str, ...]
    algorithm: str
    options: dict[str, Any]
    epsilon: float = 0.0  # its `exploration: {epsilon}`, which the policy includes


@dataclass(frozen=True, slots=True)
class ConfigPolicy:
    path: Path
    decisions: dict[str, ConfigDecision]
    pricing: dict[str, tuple[float, float]]  # model -> $/Mtok in, out
    config: Any = None  # the RouteyardConfig, whose rules `rerun_rules` runs


def load_policy(path: str) -> ConfigPolicy:
    from routeyard.catalog import load_config
    from routeyard.config import ConfigError

    try:
        config = load_config(path)
    except ConfigError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid config"
        raise PolicyInputError(f"{path}: {first}") from None
    except OSError as exc:
        raise PolicyInputError(f"{path}: cannot read the config ({exc.strerror})") from None
    decisions = {}
    for d in [*config.decisions, *([config.default] if config.default else [])]:
        if d.exploration is not None and d.exploration.temperature is not None:
            raise PolicyInputError(
                f"{path}: decision '{d.name}' explores with a softmax over live scores, which "
                "cannot be re-applied offline; evaluate it with an epsilon exploration instead")
        epsilon = d.exploration.epsilon if d.exploration is not None else None
        decisions[d.name] = ConfigDecision(d.name, tuple(c.model for c in d.candidates),
                                           d.algorithm, dict(d.algorithm_options),
                                           float(epsilon or 0.0))
    pricing = {m.name: (m.pricing.input_per_mtok, m.pricing.output_per_mtok)
               for m in config.models}
    return ConfigPolicy(Path(path), decisions, pricing, config)


def _expected_cost(policy: ConfigPolicy, model: str, e: Event, options: dict[str, Any]) -> float:
    inp, out = policy.pricing.get(model, (0.0, 0.0))
    tokens = float(options.get("expected_output_tokens", DEFAULT_OUTPUT_TOKENS))
    return (e.prompt_tokens * inp + tokens * out) / 1e6


def _static(policy: ConfigPolicy, d: ConfigDecision, events: list[Event]
            ) -> list[dict[str, float]]:
    return [{d.candidates[0]: 1.0} for _ in events]


def _cheapest(policy: ConfigPolicy, d: ConfigDecision, events: list[Event]
              ) -> list[dict[str, float]]:
    return [{min(d.candidates, key=lambda m: _expected_cost(policy, m, e, d.options)): 1.0}
            for e in events]


def _quality_cost(policy: ConfigPolicy, d: ConfigDecision, events: list[Event]
                  ) -> list[dict[str, float]]:
    priors = d.options.get("priors") or {}
    default = float(d.options.get("default_prior", 0.5))
    lam = float(d.options.get("lambda", 1.0))
    out = []
    for e in events:
        costs = {m: _expected_cost(policy, m, e, d.options) for m in d.candidates}
        top = max(costs.values()) or 1.0
        out.append({max(d.candidates, key=lambda m: float(priors.get(m, default))
                        - lam * costs[m] / top): 1.0})
    return out


def _learned(policy: ConfigPolicy, d: ConfigDecision, events: list[Event]
             ) -> list[dict[str, float]]:
    artifact = d.options.get("artifact")
    if artifact is not None:
        artifact = str((policy.path.parent / str(artifact)).resolve())
    return learned_choices(events, "learned", artifact, float(d.options.get("lambda", 1.0)),
                           lambda e: d.candidates, d.options.get("model_map"))


Algorithm = Callable[[ConfigPolicy, ConfigDecision, list[Event]], list[dict[str, float]]]
ALGORITHMS: dict[str, Algorithm] = {"static": _static, "first_healthy": _static,
                                    "cheapest": _cheapest, "quality_cost": _quality_cost,
                                    "learned": _learned}


def rerun_decisions(policy: ConfigPolicy, events: list[Event]) -> list[str]:
    """The decision the config's signals and rules choose for each event's logged messages."""
    missing = sum(1 for e in events if not e.messages)
    if missing:
        raise PolicyInputError(
            f"rules can only be re-run on logged prompts: {missing} of {len(events)} events "
            "carry none (log with state.log_content: true)")
    from routeyard.decisions import DecisionEngine

    engine = DecisionEngine(policy.config, policy.path.parent)
    alias = next(iter(policy.config.aliases), "auto")

    async def decide_all() -> list[str]:
        await engine.signals.warm_up()
        names = []
        for e in events:
            ctx = engine.context({"model": alias, "messages": e.messages})
            names.append((await engine.decide(ctx)).decision.name)
        return names

    return asyncio.run(decide_all())


def config_probabilities(policy: ConfigPolicy, events: list[Event], epsilon: float = 0.0,
                         *, rerun_rules: bool = False) -> list[dict[str, float]]:
    """The config's probability of each model per event (see the module doc)."""
    names = rerun_decisions(policy, events) if rerun_rules else [e.decision for e in events]
    by_decision: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        by_decision.setdefault(name, []).append(i)
    out: list[dict[str, float]] = [{} for _ in events]
    for name, rows in by_decision.items():
        decision = policy.decisions.get(name)
        if decision is None:
            raise PolicyInputError(f"decision '{name}' of the log is not in {policy.path}")
        algorithm = ALGORITHMS.get(decision.algorithm)
        if algorithm is None:
            raise PolicyInputError(
                f"{policy.path}: decision '{name}' uses algorithm '{decision.algorithm}', which "
                "depends on live state and cannot be re-applied offline (offline: "
                f"{', '.join(ALGORITHMS)})")
        chosen = algorithm(policy, decision, [events[i] for i in rows])
        # --epsilon, when given, replaces the config's own exploration.
        mixed = explore([events[i] for i in rows], chosen, epsilon or decision.epsilon,
                        lambda e, d=decision: d.candidates)
        for i, probs in zip(rows, mixed, strict=True):
            out[i] = probs
    return out
