"""The pool: models, their endpoints, providers, and how calls reach them."""

from __future__ import annotations

from routeyard.config.schema import ModelConfig, RouteyardConfig
from routeyard.metrics import Metrics
from routeyard.pool.endpoint import CircuitBreaker, Endpoint, PooledModel
from routeyard.pool.executor import AttemptLog, Executor, PoolExhausted, Served
from routeyard.pool.health import HealthChecker
from routeyard.pool.latency import LatencyTracker
from routeyard.pool.providers import PROVIDERS, EndpointTarget, HttpClient, Provider, UpstreamError

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

    def __init__(self, config: RouteyardConfig, metrics: Metrics,
                 tracker: LatencyTracker | None = None) -> None:
        """`tracker` records each successful attempt's latency (the Router shares it with
        latency-aware selection); None: a private one."""
        self.config = config
        self.metrics = metrics
        self.http = HttpClient(max_connections=config.pool.max_connections)
        self.executor = Executor(config.pool, metrics,
                                 tracker if tracker is not None else LatencyTracker())
        self.providers: dict[str, Provider] = {
            kind: cls(self.http) for kind, cls in PROVIDERS.items()
        }
        self.models: dict[str, PooledModel] = {
            model.name: self._pooled(model) for model in config.models
        }
        self._health: HealthChecker | None = None

    def _pooled(self, model: ModelConfig) -> PooledModel:
        breaker = self.config.pool.breaker
        pooled = PooledModel(model.name, model)
        for index, endpoint in enumerate(model.endpoints):
            ttft_ms = endpoint.ttft_timeout_ms if endpoint.ttft_timeout_ms is not None \
                else model.ttft_timeout_ms  # the endpoint's own bound wins
            target = EndpointTarget(
                base_url=endpoint.base_url,
                upstream_model=endpoint.upstream_model or model.name,
                api_key=endpoint.api_key.get_secret_value() if endpoint.api_key else None,
                headers=dict(endpoint.headers),
                query=dict(endpoint.query),
                auth_header=endpoint.auth_header,
                stream_usage=endpoint.stream_usage,
                ttft_timeout_s=ttft_ms / 1000 if ttft_ms is not None else None,
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
        await self.http.start()
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
        await self.http.close()
