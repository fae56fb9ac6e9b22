"""Provider adapters by wire protocol; a model endpoint names one in config."""

from routeyard.pool.providers.anthropic import AnthropicProvider
from routeyard.pool.providers.base import (
    ChatStream,
    EndpointTarget,
    Provider,
    UpstreamError,
)
from routeyard.pool.providers.http import HttpClient, HttpProvider
from routeyard.pool.providers.openai import OpenAIProvider

# Every provider is built with the gateway's one HttpClient: `PROVIDERS[kind](http)`.
PROVIDERS: dict[str, type[HttpProvider]] = {
    OpenAIProvider.kind: OpenAIProvider,
    AnthropicProvider.kind: AnthropicProvider,
}

__all__ = [
    "PROVIDERS",
    "AnthropicProvider",
    "ChatStream",
    "EndpointTarget",
    "HttpClient",
    "HttpProvider",
    "OpenAIProvider",
    "Provider",
    "UpstreamError",
]
