"""Provider adapters by wire protocol; a model endpoint names one in config."""

from routeyard.pool.providers.anthropic import AnthropicProvider
from routeyard.pool.providers.base import (
    ChatStream,
    EndpointTarget,
    Provider,
    UpstreamError,
)
from routeyard.pool.providers.openai import OpenAIProvider

PROVIDERS: dict[str, type[Provider]] = {
    OpenAIProvider.kind: OpenAIProvider,
    AnthropicProvider.kind: AnthropicProvider,
}

__all__ = [
    "PROVIDERS",
    "AnthropicProvider",
    "ChatStream",
    "EndpointTarget",
    "OpenAIProvider",
    "Provider",
    "UpstreamError",
]
