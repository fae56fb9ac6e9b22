"""The names the layers above config know, handed to config so that it can check a file's
references without importing any registry (config is a leaf of the package)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Catalog:
    """Known plugin types, selection algorithms and state backends. `routeyard.catalog`
    builds the full one from the registries; without one, config checks structure only."""

    plugins: frozenset[str] = frozenset()
    algorithms: frozenset[str] = frozenset()
    stores: frozenset[str] = frozenset()
    # Algorithms whose selections score every candidate (a softmax exploration needs them).
    scoring_algorithms: frozenset[str] = frozenset()
