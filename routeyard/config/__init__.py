"""Configuration: schema, loading with located errors, and the built-in default."""

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
