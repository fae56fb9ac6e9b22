"""Where each arrival goes: named policies (`POLICIES`, a registry) and Routeyard's own
routing config applied to token counts.

Each factory gets the front pools (those that take arrivals: mixed or prefill), their replicas
and the workload, and returns `pick(request) -> Replica`:
- `round_robin`: every replica in turn, whatever its pool;
- `least_loaded`: the replica with the fewest requests queued or running;
- `context_pools`: the pool with the smallest `max_context` that holds the request's input plus
  output (a pool without one holds anything; too long for all: the largest), then its least
  loaded replica.
- `config:FILE` (see `config_policy`): a Routeyard config's decisions, evaluated on the only
  signal a trace carries, the prompt's token count.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import cycle
from typing import Any

from routeyard.fleet.engine import Picker, PolicyFactory, Replica
from routeyard.fleet.profiles import FleetInputError, PoolSpec
from routeyard.fleet.workload import Workload


def _load(replica: Replica) -> int:
    return replica.load


def round_robin(pools: list[PoolSpec], replicas: list[Replica], work: Workload) -> Picker:
    order = cycle(replicas)
    return lambda _request: next(order)


def least_loaded(pools: list[PoolSpec], replicas: list[Replica], work: Workload) -> Picker:
    return lambda _request: min(replicas, key=_load)


def _by_pool(pools: list[PoolSpec], replicas: list[Replica]) -> list[tuple[float, list[Replica]]]:
    groups = [(float(p.max_context) if p.max_context else float("inf"),
               [r for r in replicas if r.pool is p]) for p in pools]
    return sorted(groups, key=lambda g: g[0])


def context_pools(pools: list[PoolSpec], replicas: list[Replica], work: Workload) -> Picker:
    groups = _by_pool(pools, replicas)
    inputs, outputs = work.input_list, work.output_list

    def pick(request: int) -> Replica:
        need = inputs[request] + outputs[request]
        for bound, members in groups:
            if need <= bound:
                return min(members, key=_load)
        return min(groups[-1][1], key=_load)

    return pick


POLICIES: dict[str, PolicyFactory] = {
    "round_robin": round_robin,
    "least_loaded": least_loaded,
    "context_pools": context_pools,
}


def config_policy(path: str) -> PolicyFactory:
    """Route with a Routeyard config: each decision's conditions are evaluated on the prompt's
    token count alone (`when.min/max_prompt_tokens`, `context_length:` bands in rule trees);
    any other condition (keywords, domains, embeddings...) needs the prompt's text, which a
    trace has not, and counts as not holding. The first
    matching decision (by priority, then order) gives candidates; the request goes to the pools
    serving its first candidate (static selection), least loaded; no pool serves it: any pool.
    """
    from routeyard.catalog import load_config
    from routeyard.config import ConfigError

    try:
        config = load_config(path)
    except ConfigError as error:
        raise FleetInputError(error.render().replace("\n", "; ")) from None
    rules = _token_rules(config)

    def factory(pools: list[PoolSpec], replicas: list[Replica], work: Workload) -> Picker:
        by_model: dict[str, list[Replica]] = {}
        for replica in replicas:
            by_model.setdefault(replica.profile.model, []).append(replica)
        inputs = work.input_list

        def pick(request: int) -> Replica:
            tokens = inputs[request]
            for matches, model in rules:
                if matches(tokens) and model in by_model:
                    return min(by_model[model], key=_load)
            return min(replicas, key=_load)

        return pick

    return factory


def _token_rules(config: Any) -> list[tuple[Callable[[int], bool], str]]:
    """(does a token count match, first candidate) per decision, highest priority first; the
    default decision last, matching everything."""
    family = getattr(getattr(config, "signals", None), "context_length", None)
    bands = {name: (band.min_tokens, band.max_tokens)
             for name, band in (family.bands.items() if family is not None else [])}
    found: list[tuple[Callable[[int], bool], str]] = []
    for decision in sorted(config.decisions, key=lambda d: -d.priority):
        when = decision.when
        low, high = when.min_prompt_tokens, when.max_prompt_tokens
        tree = _matcher(decision.rules, bands) if decision.rules is not None else None

        def matches(tokens: int, low: int | None = low, high: int | None = high,
                    keywords: bool = bool(when.keywords_any),
                    tree: Callable[[int], bool] | None = tree) -> bool:
            if keywords:  # needs the prompt's text: cannot match a trace
                return False
            if (low is not None and tokens < low) or (high is not None and tokens > high):
                return False
            return tree is None or tree(tokens)

        found.append((matches, decision.candidates[0].model))
    found.append((lambda _t: True, config.default.candidates[0].model))
    return found


def _matcher(rule: Any, bands: dict[str, tuple[int, int | None]]) -> Callable[[int], bool]:
    """A rule tree over token counts: context_length leaves are decided, others never hold."""
    if rule.all is not None:
        parts = [_matcher(child, bands) for child in rule.all]
        return lambda t: all(p(t) for p in parts)
    if rule.any is not None:
        parts = [_matcher(child, bands) for child in rule.any]
        return lambda t: any(p(t) for p in parts)
    if rule.not_ is not None:
        inner = _matcher(rule.not_, bands)
        return lambda t: not inner(t)
    family, _, name = rule.signal.partition(":")
    if family == "context_length" and name in bands:
        low, high = bands[name]
        return lambda t: t >= low and (high is None or t <= high)
    return lambda _t: False


def make_policy(name: str) -> PolicyFactory:
    if name.startswith("config:"):
        return config_policy(name.removeprefix("config:"))
    if name not in POLICIES:
        raise FleetInputError(f"unknown policy {name!r}: known {', '.join(POLICIES)}, "
                              "config:FILE")
    return POLICIES[name]
