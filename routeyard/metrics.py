"""Prometheus metrics, one registry per Router so that several can live in one process."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics import MetricWrapperBase

# Latency buckets in seconds, dense below 100 ms where router overhead lives.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Between output tokens: from under a millisecond (small models, batched) to a slow second.
_TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.2, 0.5, 1)
# One signal family on one request: keyword tables take microseconds, learned models
# milliseconds, an external guard up to its timeout.
_SIGNAL_BUCKETS = (0.00002, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                   0.025, 0.05, 0.1, 0.25, 1)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "routeyard_requests", "Chat requests by served model, decision and outcome.",
            ["model", "decision", "status"], registry=r,
        )
        self.request_latency = Histogram(
            "routeyard_request_duration_seconds",
            "Time from request arrival to the last byte of the answer.",
            ["model", "stream"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.ttft = Histogram(
            "routeyard_time_to_first_token_seconds",
            "Streaming: time from request arrival to the first chunk sent to the client.",
            ["model"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.time_per_output_token = Histogram(
            "routeyard_time_per_output_token_seconds",
            "Streaming: time per output token after the first, (duration - TTFT) / "
            "(completion tokens - 1).",
            ["model"], buckets=_TPOT_BUCKETS, registry=r,
        )
        self.signal_latency = Histogram(
            "routeyard_signal_duration_seconds",
            "Time one signal family took on one request.",
            ["family"], buckets=_SIGNAL_BUCKETS, registry=r,
        )
        self.upstream_latency = Histogram(
            "routeyard_upstream_duration_seconds",
            "One attempt against one endpoint: until the answer (or first chunk) arrived.",
            ["model", "endpoint"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.tokens = Counter(
            "routeyard_tokens", "Tokens by model and kind (prompt or completion).",
            ["model", "kind"], registry=r,
        )
        self.cost = Counter(
            "routeyard_cost_dollars", "Dollars spent by model, at configured prices.",
            ["model"], registry=r,
        )
        self.energy = Counter(
            "routeyard_energy_joules",
            "Estimated joules by model, from its (or its endpoint's) energy figures; models "
            "without figures are not counted.",
            ["model"], registry=r,
        )
        self.errors = Counter(
            "routeyard_errors", "Errors by kind (client input, upstream kinds, stream breaks).",
            ["kind"], registry=r,
        )
        self.feedback = Counter(
            "routeyard_feedback", "Feedback events counted, by decision.",
            ["decision"], registry=r,
        )
        self.implicit_feedback = Counter(
            "routeyard_implicit_feedback",
            "Implicit feedback counted (feedback.implicit), by kind (regeneration, "
            "abandoned_stream) and decision.",
            ["kind", "decision"], registry=r,
        )
        self.shadow_requests = Counter(
            "routeyard_shadow_requests",
            "Shadow traffic: mirrored requests by decision, shadow model and status (ok, "
            "failed, timeout, error) and outcome (win, tie, loss, none).",
            ["decision", "model", "status", "outcome"], registry=r,
        )
        self.shadow_cost = Counter(
            "routeyard_shadow_cost_dollars",
            "Shadow traffic's spend by decision and kind (shadow, judge); not in "
            "routeyard_cost_dollars.",
            ["decision", "kind"], registry=r,
        )
        self.endpoint_up = Gauge(
            "routeyard_endpoint_up", "1 when an endpoint is healthy and its breaker closed.",
            ["model", "endpoint"], registry=r,
        )

        # (metric, label values) → child: `labels()` costs a few microseconds (argument
        # checks, a lock); the label sets are few (models x decisions x outcomes).
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: MetricWrapperBase, *labels: str) -> Any:
        """`metric.labels(*labels)`, cached."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def render(self) -> bytes:
        return generate_latest(self.registry)
