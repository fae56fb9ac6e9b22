"""The pool: models, their endpoints, providers, and how calls reach them."""

from __future__ import annotations

from routeyard.config.schema import EndpointConfig, ModelConfig, RouteyardConfig
from routeyard.metrics import Metrics
from routeyard.pool.backend_metrics import BackendMetricsScraper, ScrapeTarget, default_metrics_url
from routeyard.pool.endpoint import CircuitBreaker, Endpoint, PooledModel
from routeyard.pool.executor import AttemptLog, Executor, PoolExhausted, Served
from routeyard.pool.health import HealthChecker
from routeyard.pool.latency import LatencyTracker
from routeyard.pool.providers import PROVIDERS, EndpointTarget, HttpClient, Provider, UpstreamError
from routeyard.pool.providers.base import auth_headers

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
        self._scraper: BackendMetricsScraper | None = None

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

    def _scrape_target(self, endpoint: Endpoint, config: EndpointConfig) -> ScrapeTarget | None:
        """How to scrape an endpoint's own load metrics, or None when it is not scraped."""
        defaults = self.config.pool.backend_metrics
        own = config.metrics
        if not (own.enabled if own is not None else defaults.enabled):
            return None
        default_url = default_metrics_url(config.base_url)
        url = own.url if own is not None and own.url else default_url
        kind = own.kind if own is not None and own.kind else defaults.kind
        # The endpoint's credentials go only to its own server, never to another host's URL.
        same_origin = default_metrics_url(url) == default_url
        headers = auth_headers(endpoint.target) if same_origin else {}
        return ScrapeTarget(endpoint, url, kind, headers)

    async def start(self) -> None:
        await self.http.start()
        self._health = HealthChecker(self.endpoints(), self.config.pool.health_check, self.metrics)
        self._health.start()
        targets = [target for model in self.config.models
                   for endpoint, config in zip(self.models[model.name].endpoints, model.endpoints,
                                               strict=True)
                   if (target := self._scrape_target(endpoint, config)) is not None]
        if targets:
            self._scraper = BackendMetricsScraper(self.http, targets,
                                                  self.config.pool.backend_metrics)
            self._scraper.start()

    def endpoints(self) -> list[Endpoint]:
        return [e for model in self.models.values() for e in model.endpoints]

    async def check_health(self) -> None:
        if self._health is not None:
            await self._health.check_all()

    async def scrape_backend_metrics(self) -> None:
        """One scrape round now (tests, and a first reading before traffic)."""
        if self._scraper is not None:
            await self._scraper.scrape_all()

    async def close(self) -> None:
        if self._health is not None:
            await self._health.stop()
        if self._scraper is not None:
            await self._scraper.stop()
            self._scraper = None
        await self.http.close()
