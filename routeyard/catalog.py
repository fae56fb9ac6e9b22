"""The catalog of known names, built from the registries, and config loading that uses it.

Config is a leaf and imports no registry; this module, above every layer that registers
something (plugins, selection algorithms, state backends), hands it the names. Load configs
through here to have every reference checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from routeyard.config import Catalog, RouteyardConfig
from routeyard.config import loader as _loader
from routeyard.config.references import Problem


@cache
def known_names() -> Catalog:
    from routeyard.plugins import PLUGINS
    from routeyard.selection import SELECTION_ALGORITHMS
    from routeyard.state import STORE_BACKENDS

    return Catalog(plugins=frozenset(PLUGINS), algorithms=frozenset(SELECTION_ALGORITHMS),
                   stores=frozenset(STORE_BACKENDS),
                   scoring_algorithms=frozenset(
                       name for name, cls in SELECTION_ALGORITHMS.items() if cls.gives_scores))


def load_config(path: str | Path, environ: Mapping[str, str] | None = None, *,
                env_warnings: list[Problem] | None = None) -> RouteyardConfig:
    return _loader.load_config(path, environ, catalog=known_names(), env_warnings=env_warnings)


def parse_config(text: str, *, source: str = "<config>",
                 environ: Mapping[str, str] | None = None,
                 env_warnings: list[Problem] | None = None) -> RouteyardConfig:
    return _loader.parse_config(text, source=source, environ=environ, catalog=known_names(),
                                env_warnings=env_warnings)


def build_config(raw: dict[str, Any], *, source: str = "<config>",
                 environ: Mapping[str, str] | None = None,
                 env_warnings: list[Problem] | None = None) -> RouteyardConfig:
    return _loader.build_config(raw, source=source, environ=environ, catalog=known_names(),
                                env_warnings=env_warnings)
