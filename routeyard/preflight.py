"""Preflight: build every part a config names, as serving would, and report what fails.

Pydantic checks a config's shape; this builds each signal family (reading the files it names,
fitting what must be fitted), each decision's selection algorithm (a learned one reads its
artifact), its plugins and its cascade, and checks rule leaves against labels that only those
files declare. `routeyard validate` runs it, so that a config that validates also serves.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from routeyard.config import RouteyardConfig
from routeyard.config.schema import DecisionConfig, DefaultDecisionConfig
from routeyard.plugins import PLUGINS, PluginBuild
from routeyard.selection import AlgorithmBuild, make_algorithm
from routeyard.serving.cascade import CascadeOptions
from routeyard.signals.base import FAMILIES, FamilyBuild
from routeyard.signals.embedder import Embedder, load_embedder

# What building a part raises for a bad config or a missing file; anything else is a bug.
BUILD_ERRORS = (OSError, ValueError, RuntimeError)

Problem = tuple[str, str]


def preflight(config: RouteyardConfig, base_dir: Path | None) -> list[Problem]:
    """Every build problem of the config, each with its location."""
    problems: list[Problem] = []
    embedder: Embedder | None = None
    declared: dict[str, set[str] | None] = {}
    for name, family_config in config.signals.families().items():
        family_class = FAMILIES[name]
        try:
            if family_class.needs_embedder and embedder is None:
                embedder = load_embedder(config.signals.embedding_model.model)
            family = family_class.build(family_config, FamilyBuild(embedder, base_dir))
        except BUILD_ERRORS as error:
            problems.append((f"signals.{name}", f"cannot build: {error}"))
            continue
        declared[name] = family.declared_names()
    models = {m.name for m in config.models}
    located: list[tuple[str, DecisionConfig | DefaultDecisionConfig]] = [
        (f"decisions[{i}]", d) for i, d in enumerate(config.decisions)]
    if config.default is not None:
        located.append(("default", config.default))
    for where, decision in located:
        problems += _decision_problems(where, decision, models, base_dir)
    if config.tracing.enabled and not _installed("opentelemetry.sdk"):
        problems.append(("tracing.enabled", "needs the otel extra: "
                         "pip install 'routeyard[otel]'"))
    for index, decision in enumerate(config.decisions):
        if decision.rules is None:
            continue
        for leaf in decision.rules.leaves():
            family, label = leaf.split(":", 1)
            names = declared.get(family)
            if names is not None and label not in names:
                known = ", ".join(sorted(names)) or "none"
                problems.append((f"decisions[{index}].rules",
                                 f"signal '{leaf}' can never match ({family} names: {known})"))
    return problems


def _installed(module: str) -> bool:
    try:
        return find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def _decision_problems(where: str, decision: DecisionConfig | DefaultDecisionConfig,
                       models: set[str], base_dir: Path | None) -> list[Problem]:
    problems: list[Problem] = []
    try:
        make_algorithm(decision.algorithm, decision.algorithm_options, AlgorithmBuild(base_dir))
    except BUILD_ERRORS as error:
        problems.append((f"{where}.algorithm_options",
                         f"cannot build '{decision.algorithm}': {error}"))
    for index, plugin in enumerate(decision.plugins):
        options = {k: v for k, v in plugin.model_dump().items() if k != "type"}
        if plugin.type not in PLUGINS:
            problems.append((f"{where}.plugins[{index}].type",
                             f"unknown plugin '{plugin.type}'"))
            continue
        try:
            PLUGINS[plugin.type](options, PluginBuild())
        except BUILD_ERRORS as error:
            problems.append((f"{where}.plugins[{index}]", f"{plugin.type}: {error}"))
    if decision.cascade is not None:
        try:
            cascade = CascadeOptions.parse(decision.cascade)
        except ValueError as error:
            problems.append((f"{where}.cascade", str(error)))
        else:
            problems += [(f"{where}.cascade.models", f"unknown model '{m}'")
                         for m in cascade.models if m not in models]
    return problems
