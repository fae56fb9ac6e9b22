"""Configuration: schema, loading with located errors, and the built-in default.

A leaf of the package: it imports no registry of the layers above. The names they define
(plugins, algorithms, state backends) come in as a `Catalog`; `routeyard.catalog` loads a
config with the full one.
"""

from routeyard.config.catalog import Catalog
from routeyard.config.loader import (
    ConfigError,
    build_config,
    depends_on_unset,
    load_config,
    parse_config,
)
from routeyard.config.schema import (
    DecisionConfig,
    EndpointConfig,
    ModelConfig,
    RouteyardConfig,
)

__all__ = [
    "Catalog",
    "ConfigError",
    "DecisionConfig",
    "EndpointConfig",
    "ModelConfig",
    "RouteyardConfig",
    "build_config",
    "depends_on_unset",
    "load_config",
    "parse_config",
]
