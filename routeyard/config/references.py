"""Cross-reference checks that pydantic cannot express: names must resolve.

They read the raw (interpolated) data rather than the validated model, so that they run even
when some other part of the file has a structural error: `validate` lists everything at once.
Anything of the wrong shape is skipped here; pydantic reports it. Names the layers above config
define (algorithms, state backends) are checked against the `Catalog` the caller gives.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from routeyard.config.catalog import Catalog
from routeyard.config.signals import FAMILY_NAMES, declared_names

Problem = tuple[str, str]  # (location, message)


def check_references(data: dict[str, Any], catalog: Catalog | None = None) -> list[Problem]:
    """Every reference problem; without a catalog, names of algorithms and state backends
    are not checked."""
    problems: list[Problem] = []
    models = _dicts(data.get("models"))
    # Names of the wrong type (a list, say) are pydantic's to report: only strings are read.
    model_names = [m.get("name") for _, m in models]
    problems += _duplicates("models", model_names, "model")
    known = {name for name in model_names if isinstance(name, str)}
    # Decisions route chat requests: only chat models may be their candidates.
    embedding = {m.get("name") for _, m in models
                 if m.get("kind") == "embedding" and isinstance(m.get("name"), str)}
    chat = known - embedding
    for index, alias in enumerate(_list(data.get("aliases"))):
        if isinstance(alias, str) and alias in known:
            problems.append((f"aliases[{index}]", f"alias '{alias}' is also a model name"))
    for index, model in models:
        endpoint_names = [e.get("name") for _, e in _dicts(model.get("endpoints"))]
        problems += _duplicates(f"models[{index}].endpoints", endpoint_names, "endpoint")
    decisions = _dicts(data.get("decisions"))
    problems += _duplicates("decisions", [d.get("name") for _, d in decisions], "decision")
    signals = data.get("signals") if isinstance(data.get("signals"), dict) else {}
    guard = signals.get("guard")
    if isinstance(guard, dict) and isinstance(guard.get("model"), str) \
            and guard["model"] not in known:
        problems.append(("signals.guard.model", f"unknown model '{guard['model']}'"))
    state = data.get("state") if isinstance(data.get("state"), dict) else {}
    reference = state.get("savings_reference")
    if isinstance(reference, str) and reference not in chat:
        problems.append(("state.savings_reference", f"unknown chat model '{reference}'"))
    for index, decision in decisions:
        problems += _decision_references(f"decisions[{index}]", decision, known, chat,
                                         catalog)
        problems += _collaborate_references(f"decisions[{index}]", decision, models)
        if "rules" in decision:
            problems += _signal_references(f"decisions[{index}].rules", decision["rules"],
                                           signals)
    default = data.get("default")
    default_name = "default"
    if isinstance(default, dict):
        problems += _decision_references("default", default, known, chat, catalog)
        problems += _collaborate_references("default", default, models)
        if isinstance(default.get("name"), str):
            default_name = default["name"]
    for index, decision in decisions:
        if decision.get("name") == default_name:
            problems.append((f"decisions[{index}].name",
                             f"'{default_name}' is the default decision's name"))
    decision_names = {d.get("name") for _, d in decisions
                      if isinstance(d.get("name"), str)} | {default_name}
    for index, route in _dicts(data.get("model_routes")):
        target = route.get("decision")
        if isinstance(target, str) and target not in decision_names:
            problems.append((f"model_routes[{index}].decision",
                             f"unknown decision '{target}'"))
    state = data.get("state")
    if isinstance(state, dict):
        backend = state.get("backend", "sqlite")
        if catalog is not None and isinstance(backend, str) and backend not in catalog.stores:
            problems.append(("state.backend", f"unknown backend '{backend}' "
                             f"(known: {', '.join(sorted(catalog.stores))})"))
        elif backend == "redis" and not state.get("redis_url"):
            problems.append(("state.redis_url", "required when state.backend is 'redis'"))
        elif backend == "postgres" and not state.get("postgres_url"):
            problems.append(("state.postgres_url", "required when state.backend is 'postgres' "
                             "(e.g. postgresql://routeyard@127.0.0.1:5432/routeyard)"))
    return problems


def _decision_references(where: str, decision: dict[str, Any], known: set[str],
                         chat: set[str], catalog: Catalog | None) -> list[Problem]:
    candidates = [c.get("model") if isinstance(c, dict) else c
                  for c in _list(decision.get("candidates"))]
    problems = _unknown_models(f"{where}.candidates", candidates, known)
    problems += _unknown_models(f"{where}.fallback", _list(decision.get("fallback")), known)
    for part, names in (("candidates", candidates), ("fallback", _list(decision.get("fallback")))):
        problems += [(f"{where}.{part}[{i}]", f"'{name}' is an embedding model, not a chat "
                      "model") for i, name in enumerate(names)
                     if isinstance(name, str) and name in known and name not in chat]
    cascade = decision.get("cascade")
    options = decision.get("algorithm_options")
    if cascade is None and isinstance(options, dict):
        cascade = options.get("cascade")  # where earlier versions read it
    if isinstance(cascade, dict):
        problems += _unknown_models(f"{where}.cascade.models", _list(cascade.get("models")),
                                    known)
    ensemble = decision.get("ensemble")
    if isinstance(ensemble, dict):  # its members and its judge: chat models
        named = [(f"members[{i}]", n) for i, n in enumerate(_list(ensemble.get("members")))]
        for part, name in [*named, ("judge", ensemble.get("judge"))]:
            if isinstance(name, str) and name not in chat:
                problems.append((f"{where}.ensemble.{part}", f"unknown model '{name}'"
                                 if name not in known else f"'{name}' is an embedding model, "
                                 "not a chat model"))
    shadow = decision.get("shadow")
    if isinstance(shadow, dict):  # the candidate it mirrors to, and its judge: chat models
        for part in ("model", "judge"):
            name = shadow.get(part)
            if isinstance(name, str) and name not in chat:
                problems.append((f"{where}.shadow.{part}", f"unknown model '{name}'"
                                 if name not in known else f"'{name}' is an embedding model, "
                                 "not a chat model"))
    algorithm = decision.get("algorithm", "static")
    if catalog is not None and isinstance(algorithm, str) \
            and algorithm not in catalog.algorithms:
        choices = ", ".join(sorted(catalog.algorithms))
        problems.append((f"{where}.algorithm", f"unknown algorithm '{algorithm}' "
                         f"(known: {choices})"))
    exploration = decision.get("exploration")
    if catalog is not None and isinstance(exploration, dict) \
            and exploration.get("temperature") is not None \
            and algorithm in catalog.algorithms and algorithm not in catalog.scoring_algorithms:
        scoring = ", ".join(sorted(catalog.scoring_algorithms))
        problems.append((f"{where}.exploration.temperature",
                         f"a softmax exploration needs an algorithm that scores its candidates "
                         f"({scoring}), not '{algorithm}'; use epsilon instead"))
    return problems


def _collaborate_references(where: str, decision: dict[str, Any],
                            models: list[tuple[int, dict[str, Any]]]) -> list[Problem]:
    """A collaborate's small and large must be chat models that can continue a partial answer
    (each step continues the transcript), and the small one must declare logprobs."""
    collaborate = decision.get("collaborate")
    if not isinstance(collaborate, dict):
        return []
    by_name = {m.get("name"): m for _, m in models if isinstance(m.get("name"), str)}
    name_of = decision.get("name", where)
    problems: list[Problem] = []
    for part in ("small", "large"):
        name = collaborate.get(part)
        if not isinstance(name, str):
            continue
        model = by_name.get(name)
        at = f"{where}.collaborate.{part}"
        if model is None:
            problems.append((at, f"unknown model '{name}'"))
        elif model.get("kind") == "embedding":
            problems.append((at, f"'{name}' is an embedding model, not a chat model"))
        elif not _continues(model):
            problems.append((at, f"decision '{name_of}': model '{name}' cannot continue a "
                             "partial answer; set its `continuation` to continue_final_message "
                             "(vLLM, the simulator) or prefill (Anthropic)"))
        elif part == "small" and not _declares_logprobs(model):
            problems.append((at, f"decision '{name_of}': model '{name}' does not return "
                             "logprobs; step-level collaboration reads the small model's "
                             "first-token logprobs (declare `capabilities: {logprobs: true}` "
                             "if its backend gives them)"))
    return problems


def _continues(model: dict[str, Any]) -> bool:
    """Whether every endpoint of a model can continue an answer (see serving/continuation.py:
    an unset mode follows the provider, and only Anthropic's default continues)."""
    mode = model.get("continuation")
    if mode is not None:
        return mode != "none"
    endpoints = _dicts(model.get("endpoints"))
    return bool(endpoints) and all(e.get("provider") == "anthropic" for _, e in endpoints)


def _declares_logprobs(model: dict[str, Any]) -> bool:
    capabilities = model.get("capabilities")
    return isinstance(capabilities, dict) and capabilities.get("logprobs") is True


def _signal_references(where: str, rule: Any, signals: dict[str, Any]) -> list[Problem]:
    """Every `family:name` leaf must name a configured family and one of its names."""
    if isinstance(rule, str):
        rule = {"signal": rule}
    if not isinstance(rule, dict):
        return []
    problems: list[Problem] = []
    for kind in ("all", "any"):
        for index, child in enumerate(_list(rule.get(kind))):
            problems += _signal_references(f"{where}.{kind}[{index}]", child, signals)
    if "not" in rule:
        problems += _signal_references(f"{where}.not", rule["not"], signals)
    leaf = rule.get("signal")
    if isinstance(leaf, str) and leaf.count(":") == 1:
        family, name = leaf.split(":")
        if family not in FAMILY_NAMES:
            problems.append((f"{where}.signal", f"unknown signal family '{family}' "
                             f"(known: {', '.join(FAMILY_NAMES)})"))
        elif not isinstance(signals.get(family), dict):
            problems.append((f"{where}.signal",
                             f"signal '{leaf}': family '{family}' is not configured under signals"))
        else:
            names = declared_names(family, signals[family])
            if names is not None and name not in names:
                known = ", ".join(sorted(names)) or "none"
                problems.append((f"{where}.signal",
                                 f"unknown signal '{leaf}' ({family} names: {known})"))
    return problems


def _unknown_models(where: str, names: Iterable[Any], known: set[str]) -> list[Problem]:
    return [
        (f"{where}[{index}]", f"unknown model '{name}'")
        for index, name in enumerate(names)
        if isinstance(name, str) and name not in known
    ]


def _duplicates(where: str, names: list[Any], what: str) -> list[Problem]:
    seen: set[str] = set()
    problems: list[Problem] = []
    for index, name in enumerate(names):
        if not isinstance(name, str):
            continue
        if name in seen:
            problems.append((f"{where}[{index}].name", f"duplicate {what} name '{name}'"))
        seen.add(name)
    return problems


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dicts(value: Any) -> list[tuple[int, dict[str, Any]]]:
    return [(i, item) for i, item in enumerate(_list(value)) if isinstance(item, dict)]
