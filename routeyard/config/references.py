"""Cross-reference checks that pydantic cannot express: names must resolve."""

from __future__ import annotations

from collections.abc import Iterable

from routeyard.config.schema import RouteyardConfig
from routeyard.selection import SELECTION_ALGORITHMS
from routeyard.state import STORE_BACKENDS

Problem = tuple[str, str]  # (location, message)


def check_references(config: RouteyardConfig) -> list[Problem]:
    problems: list[Problem] = []
    model_names = [model.name for model in config.models]
    problems += _duplicates("models", model_names, "model")
    known = set(model_names)
    problems += _duplicates("decisions", [d.name for d in config.decisions], "decision")
    for index, alias in enumerate(config.aliases):
        if alias in known:
            problems.append((f"aliases[{index}]", f"alias '{alias}' is also a model name"))
    for index, model in enumerate(config.models):
        endpoint_names = [e.name for e in model.endpoints if e.name]
        problems += _duplicates(f"models[{index}].endpoints", endpoint_names, "endpoint")
    for index, decision in enumerate(config.decisions):
        where = f"decisions[{index}]"
        problems += _unknown_models(f"{where}.candidates", decision.candidates, known)
        problems += _unknown_models(f"{where}.fallback", decision.fallback, known)
        problems += _unknown_algorithm(f"{where}.algorithm", decision.algorithm)
    if config.default is not None:
        problems += _unknown_models("default.candidates", config.default.candidates, known)
        problems += _unknown_models("default.fallback", config.default.fallback, known)
        problems += _unknown_algorithm("default.algorithm", config.default.algorithm)
    if config.state.backend not in STORE_BACKENDS:
        problems.append(
            ("state.backend", f"unknown backend '{config.state.backend}' "
             f"(known: {', '.join(sorted(STORE_BACKENDS))})")
        )
    elif config.state.backend == "redis" and not config.state.redis_url:
        problems.append(("state.redis_url", "required when state.backend is 'redis'"))
    return problems


def _unknown_models(where: str, names: Iterable[str], known: set[str]) -> list[Problem]:
    return [
        (f"{where}[{index}]", f"unknown model '{name}'")
        for index, name in enumerate(names)
        if name not in known
    ]


def _unknown_algorithm(where: str, name: str) -> list[Problem]:
    if name in SELECTION_ALGORITHMS:
        return []
    known = ", ".join(sorted(SELECTION_ALGORITHMS))
    return [(where, f"unknown algorithm '{name}' (known: {known})")]


def _duplicates(where: str, names: list[str | None], what: str) -> list[Problem]:
    seen: set[str] = set()
    problems: list[Problem] = []
    for index, name in enumerate(names):
        if name is None:
            continue
        if name in seen:
            problems.append((f"{where}[{index}].name", f"duplicate {what} name '{name}'"))
        seen.add(name)
    return problems
