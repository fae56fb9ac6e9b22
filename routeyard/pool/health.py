"""Active health checks: a background task that probes every endpoint's model listing."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from routeyard.config.schema import HealthCheckConfig
from routeyard.metrics import Metrics
from routeyard.pool.endpoint import Endpoint

log = logging.getLogger("routeyard.pool")


class HealthChecker:
    def __init__(self, endpoints: list[Endpoint], config: HealthCheckConfig, metrics: Metrics):
        self.endpoints = endpoints
        self.config = config
        self.metrics = metrics
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.config.interval_s > 0 and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="routeyard-health")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def check_all(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        results = await asyncio.gather(
            *(e.provider.health(e.target, timeout) for e in self.endpoints)
        )
        for endpoint, healthy in zip(self.endpoints, results, strict=True):
            if healthy != endpoint.healthy:
                log.warning("endpoint %s is now %s", endpoint.name,
                            "healthy" if healthy else "unhealthy")
            endpoint.healthy = healthy
            self.metrics.endpoint_up.labels(endpoint.model, endpoint.name).set(
                1 if endpoint.is_available() else 0
            )

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.interval_s)
            await self.check_all()
