"""The pool: models, their endpoints, providers, and how calls reach them."""

from __future__ import annotations

import aiohttp

from routeyard.config.schema import ModelConfig, RouteyardConfig
from routeyard.metrics import Metrics
from routeyard.pool.endpoint import CircuitBreaker, Endpoint, PooledModel
from routeyard.pool.executor import AttemptLog, Executor, PoolExhausted, Served
from routeyard.pool.health import HealthChecker
from routeyard.pool.providers import PROVIDERS, EndpointTarget, Provider, UpstreamError

__all__ = [
    "AttemptLog",
    "Endpoint",
    "Pool",
    "PoolExhausted",
    "PooledModel",
    "Served",
    "UpstreamError",
]


class Pool:
    """Built from config at once (so dry runs need no network); `start()` opens the shared
    HTTP session inside the running loop and starts health checks."""

    def __init__(self, config: RouteyardConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.session: aiohttp.ClientSession | None = None
        self.executor = Executor(config.pool, metrics)
        self.providers: dict[str, Provider] = {kind: cls() for kind, cls in PROVIDERS.items()}
        self.models: dict[str, PooledModel] = {
            model.name: self._pooled(model) for model in config.models
        }
        self._health: HealthChecker | None = None

    def _pooled(self, model: ModelConfig) -> PooledModel:
        breaker = self.config.pool.breaker
        pooled = PooledModel(model.name, model)
        for index, endpoint in enumerate(model.endpoints):
            target = EndpointTarget(
                base_url=endpoint.base_url,
                upstream_model=endpoint.upstream_model or model.name,
                api_key=endpoint.api_key.get_secret_value() if endpoint.api_key else None,
                headers=dict(endpoint.headers),
                query=dict(endpoint.query),
                auth_header=endpoint.auth_header,
                stream_usage=endpoint.stream_usage,
            )
            pooled.endpoints.append(Endpoint(
                name=endpoint.name or f"{model.name}#{index}",
                model=model.name,
                target=target,
                provider=self.providers[endpoint.provider],
                weight=endpoint.weight,
                breaker=CircuitBreaker(breaker.failure_threshold, breaker.cooldown_s),
            ))
        return pooled

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.config.pool.max_connections, ttl_dns_cache=300, enable_cleanup_closed=True
        )
        # Large read buffer: one SSE line (a chunk with tool-call arguments) can be long.
        self.session = aiohttp.ClientSession(
            connector=connector, read_bufsize=2**20, skip_auto_headers=("User-Agent",)
        )
        for provider in self.providers.values():
            provider.bind(self.session)
        self._health = HealthChecker(self.endpoints(), self.config.pool.health_check, self.metrics)
        self._health.start()

    def endpoints(self) -> list[Endpoint]:
        return [e for model in self.models.values() for e in model.endpoints]

    async def check_health(self) -> None:
        if self._health is not None:
            await self._health.check_all()

    async def close(self) -> None:
        if self._health is not None:
            await self._health.stop()
        if self.session is not None:
            await self.session.close()
            self.session = None
