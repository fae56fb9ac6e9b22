"""Live load from the backends' own Prometheus metrics (docs/pool.md#backend-metrics).

A background task of the pool GETs each scraped endpoint's metrics URL every `interval_s`,
reads the requests waiting and running and the KV-cache usage for the endpoint's model, and
stores them on the endpoint as a `BackendLoad`. The request path only reads that object (an
attribute and a clock read); a reading older than three intervals is ignored, so a backend
that stops answering falls back to Routeyard's own in-flight count. A failed scrape never fails
a request: it is logged once, and the last reading simply goes stale.

The metric names differ by server; `METRIC_NAMES` maps each server kind to its names, and
`auto` takes the first kind whose names the exposition has.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from routeyard.config.schema import BackendMetricsConfig

if TYPE_CHECKING:
    from routeyard.pool.providers import EndpointTarget, HttpClient

log = logging.getLogger("routeyard.pool")

STALE_AFTER_INTERVALS = 3
# Added to a saturated endpoint's in-flight estimate: it sorts after every unsaturated one.
SATURATED_PENALTY = 1e6


@dataclass(frozen=True, slots=True)
class MetricNames:
    """One server kind's gauges; the first name present wins (servers renamed some)."""

    waiting: tuple[str, ...]
    running: tuple[str, ...]
    kv_usage: tuple[str, ...] = ()  # a fraction in [0, 1]; () when the server has none

    def all(self) -> tuple[str, ...]:
        return (*self.waiting, *self.running, *self.kv_usage)


METRIC_NAMES: dict[str, MetricNames] = {
    # vLLM >= 0.10 (V1) names KV usage kv_cache_usage_perc; older versions gpu_cache_usage_perc.
    "vllm": MetricNames(("vllm:num_requests_waiting",), ("vllm:num_requests_running",),
                        ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")),
    "sglang": MetricNames(("sglang:num_queue_reqs",), ("sglang:num_running_reqs",),
                          ("sglang:token_usage",)),
    # TGI: one model per server, no model label, and no KV-usage fraction.
    "tgi": MetricNames(("tgi_queue_size",), ("tgi_batch_current_size",)),
}
_WANTED = frozenset(name for names in METRIC_NAMES.values() for name in names.all())
# Lines worth parsing: a wanted sample (name then labels or value) or its TYPE line. A vLLM
# exposition is mostly histogram buckets; dropping them first makes the parse ~100x cheaper.
_KEEP = tuple(f"{n}{{" for n in _WANTED) + tuple(f"{n} " for n in _WANTED) + tuple(
    f"# TYPE {n} " for n in _WANTED)

Samples = dict[str, list[tuple[dict[str, str], float]]]


@dataclass(frozen=True, slots=True)
class Reading:
    """One model's load as a server reported it."""

    kind: str
    waiting: float
    running: float
    kv_usage: float | None


@dataclass(slots=True)
class BackendLoad:
    """The latest reading of one endpoint, with when it stops counting (monotonic clock)."""

    waiting: float
    running: float
    kv_usage: float | None
    scraped_at: float
    fresh_until: float
    outstanding_at_scrape: int  # Routeyard's own in flight when the reading arrived
    saturated: bool

    def in_flight(self, outstanding: int, now: float) -> float:
        """The backend's queue now: what it reported (waiting + running) plus the requests
        Routeyard sent it since (net), plus its KV usage (0..1, a tie-breaker); a saturated
        backend gets `SATURATED_PENALTY` on top. Stale: Routeyard's own count."""
        if now > self.fresh_until:
            return outstanding
        queue = self.waiting + self.running + max(0, outstanding - self.outstanding_at_scrape)
        return queue + (self.kv_usage or 0.0) + (SATURATED_PENALTY if self.saturated else 0.0)

    def is_fresh(self, now: float) -> bool:
        return now <= self.fresh_until


def parse_exposition(text: str) -> Samples:
    """The samples of the known load gauges in a Prometheus text exposition: name → [(labels,
    value)]. Uses prometheus_client's parser on the relevant lines only."""
    kept = "\n".join(line for line in text.splitlines() if line.startswith(_KEEP))
    samples: Samples = {}
    for family in text_string_to_metric_families(kept + "\n"):
        for sample in family.samples:
            if sample.name in _WANTED:
                samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def read_model(samples: Samples, model: str, kind: str = "auto") -> Reading | None:
    """`model`'s load under `kind`'s names (auto: the first kind present), or None when the
    exposition has none of them for it. Samples labelled with another `model_name` are
    ignored; counts are summed over the rest (vLLM's data-parallel engines), KV usage is their
    maximum (the fullest engine is the one that preempts)."""
    kinds = METRIC_NAMES if kind == "auto" else {kind: METRIC_NAMES[kind]}
    for name, names in kinds.items():
        waiting = _values(samples, names.waiting, model)
        running = _values(samples, names.running, model)
        if waiting is None and running is None:
            continue
        kv = _values(samples, names.kv_usage, model)
        return Reading(name, sum(waiting or ()), sum(running or ()),
                       max(kv) if kv else None)
    return None


def _values(samples: Samples, names: Iterable[str], model: str) -> list[float] | None:
    for name in names:
        found = samples.get(name)
        values = [value for labels, value in found or ()
                  if labels.get("model_name", model) == model]
        if values:
            return values
    return None


def default_metrics_url(base_url: str) -> str:
    """The base URL's origin + /metrics: vLLM, SGLang and TGI serve it at the server root."""
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}/metrics"


class ScrapedEndpoint(Protocol):
    """What the scraper needs of a pool endpoint (`Endpoint`; endpoint.py imports this module)."""

    name: str
    target: EndpointTarget
    outstanding: int
    backend_load: BackendLoad | None


@dataclass(slots=True, eq=False)
class ScrapeTarget:
    """One scraped endpoint: where its metrics are, which names, which model to read."""

    endpoint: ScrapedEndpoint
    url: str
    kind: str
    headers: dict[str, str] = field(default_factory=dict)
    problem: str | None = None  # the last failure, logged once until it changes


class BackendMetricsScraper:
    """The pool's scraping task. Endpoints sharing a metrics URL (one server, several models)
    cost one GET and one parse per round."""

    def __init__(self, http: HttpClient, targets: list[ScrapeTarget],
                 config: BackendMetricsConfig, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.http = http
        self.targets = targets
        self.config = config
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.targets and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="routeyard-backend-metrics")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.scrape_all()
            except Exception:  # a bug here must not end scraping for good
                log.exception("backend metrics scrape failed")
            await asyncio.sleep(self.config.interval_s)

    async def scrape_all(self) -> None:
        by_url: dict[tuple[str, tuple[tuple[str, str], ...]], list[ScrapeTarget]] = {}
        for target in self.targets:
            by_url.setdefault((target.url, tuple(sorted(target.headers.items()))),
                              []).append(target)
        await asyncio.gather(*(self._scrape(url, dict(headers), group)
                               for (url, headers), group in by_url.items()))

    async def _scrape(self, url: str, headers: dict[str, str],
                      group: list[ScrapeTarget]) -> None:
        try:
            text = await self._fetch(url, headers)
            # Off the event loop: a big exposition's parse must not stall requests.
            samples = await asyncio.to_thread(parse_exposition, text)
        except _ScrapeFailed as error:
            for target in group:
                self._problem(target, str(error))
            return
        except Exception as error:  # a bad exposition must never fail requests
            for target in group:
                self._problem(target, f"unreadable metrics at {url}: {error}")
            return
        now = self.clock()
        fresh_until = now + STALE_AFTER_INTERVALS * self.config.interval_s
        for target in group:
            endpoint = target.endpoint
            reading = read_model(samples, endpoint.target.upstream_model, target.kind)
            if reading is None:
                self._problem(target, f"no {target.kind} load metrics for "
                                      f"{endpoint.target.upstream_model} at {url}")
                continue
            endpoint.backend_load = BackendLoad(
                reading.waiting, reading.running, reading.kv_usage, now, fresh_until,
                endpoint.outstanding, self._saturated(reading))
            if target.problem is not None:
                log.warning("backend metrics of %s are readable again", endpoint.name)
                target.problem = None

    def _saturated(self, reading: Reading) -> bool:
        config = self.config
        return (reading.kv_usage is not None and reading.kv_usage >= config.saturation_kv_usage
                and reading.waiting > config.saturation_waiting)

    async def _fetch(self, url: str, headers: dict[str, str]) -> str:
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        try:
            async with self.http.session.get(url, headers=headers, timeout=timeout) as response:
                if response.status != 200:
                    raise _ScrapeFailed(f"{url} answered HTTP {response.status}")
                return await response.text()
        except (aiohttp.ClientError, TimeoutError) as error:
            raise _ScrapeFailed(f"{url} could not be read: {error!r}") from None

    def _problem(self, target: ScrapeTarget, message: str) -> None:
        if target.problem != message:
            log.warning("backend metrics of %s: %s; using Routeyard's own in-flight count "
                        "until they are readable", target.endpoint.name, message)
            target.problem = message


class _ScrapeFailed(Exception):
    pass
