"""Deep validation: build every configured signal family, as serving would.

Pydantic checks a config's shape; this reads the files families name (classifier examples and
artifacts), fits what must be fitted, and checks rule leaves against labels that only those
files declare. `routeyard validate` runs it, so that a config that validates also serves.
"""

from __future__ import annotations

from pathlib import Path

from routeyard.config import RouteyardConfig
from routeyard.signals.base import FAMILIES
from routeyard.signals.embedder import Embedder, load_embedder

BUILD_ERRORS = (OSError, ValueError, RuntimeError)

Problem = tuple[str, str]


def check_signal_build(config: RouteyardConfig, base_dir: Path | None) -> list[Problem]:
    problems: list[Problem] = []
    embedder: Embedder | None = None
    declared: dict[str, set[str] | None] = {}
    for name, family_config in config.signals.families().items():
        family_class = FAMILIES[name]
        try:
            if family_class.needs_embedder and embedder is None:
                embedder = load_embedder(config.signals.embedding_model.model)
            family = family_class.build(family_config, embedder, base_dir)
        except BUILD_ERRORS as error:
            problems.append((f"signals.{name}", f"cannot build: {error}"))
            continue
        declared[name] = family.declared_names()
    problems += _check_algorithms(config, base_dir)
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


def _check_algorithms(config: RouteyardConfig, base_dir: Path | None) -> list[Problem]:
    """Build each decision's selection algorithm (a learned one reads its artifact)."""
    from routeyard.selection import AlgorithmBuild, make_algorithm

    located = [(f"decisions[{i}]", d.algorithm, d.algorithm_options)
               for i, d in enumerate(config.decisions)]
    if config.default is not None:
        located.append(("default", config.default.algorithm, config.default.algorithm_options))
    problems: list[Problem] = []
    models = {m.name for m in config.models}
    for where, name, options in located:
        try:
            make_algorithm(name, options, AlgorithmBuild(base_dir))
        except BUILD_ERRORS as error:
            problems.append((f"{where}.algorithm_options", f"cannot build '{name}': {error}"))
        if "cascade" in options:
            problems += _check_cascade(f"{where}.algorithm_options.cascade",
                                       options["cascade"], models)
    return problems


def _check_cascade(where: str, raw: object, models: set[str]) -> list[Problem]:
    from routeyard.cascade import CascadeOptions  # loads the router: only when cascading

    try:
        options = CascadeOptions.parse(raw)
    except ValueError as error:
        return [(where, str(error))]
    return [(f"{where}.models", f"unknown model '{m}'") for m in options.models
            if m not in models]
