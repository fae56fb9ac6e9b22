"""OpenTelemetry traces of the request path (`tracing:` in the config; the `otel` extra).

Off by default, and then nearly free: every hook below is one read of a module global and
returns a shared no-op. On, each request is one SERVER span (continuing the caller's
`traceparent`) with a child span per stage: validation, signals (one child per learned
family), decision, selection, each plugin, each upstream attempt (a CLIENT span whose
context goes to the backend as `traceparent`) and the stream relay. Attribute names follow the
OpenTelemetry GenAI semantic conventions (`gen_ai.*`), plus `routeyard.*` for what only a
router knows.

The tracer has its own provider rather than the process-global one, so that a config reload
(or a test) can replace it; the Router activates it on start and retires it on close.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, SpanKind, Tracer

AttributeValue = str | bool | int | float | list[str]
_NO_SPAN: AbstractContextManager[None] = nullcontext(None)


class Tracing:
    """A tracer, its provider (which batches spans to the exporter) and the W3C propagator."""

    def __init__(self, provider: TracerProvider, sample_ratio: float = 1.0) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.sample_ratio = sample_ratio
        self.tracer: Tracer = provider.get_tracer("routeyard")
        self.propagator = TraceContextTextMapPropagator()

    @classmethod
    def build(cls, *, endpoint: str | None, headers: Mapping[str, str], sample_ratio: float,
              service_name: str, resource_attributes: Mapping[str, Any], timeout_s: float,
              exporter: SpanExporter | None = None) -> Tracing:
        """Spans go to `exporter` (given: a test's in-memory one, exported at once) or, by
        default, in batches to an OTLP/HTTP receiver at `endpoint`."""
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
            from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
        except ImportError as missing:
            raise RuntimeError("tracing.enabled needs the otel extra: "
                               "pip install 'routeyard[otel]'") from missing
        resource = Resource.create({"service.name": service_name, **resource_attributes})
        # A new trace is sampled in `begin_request`, before any span exists; a continued one
        # follows its caller's sampled flag.
        provider = TracerProvider(resource=resource, sampler=ParentBased(ALWAYS_ON))
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
                endpoint=endpoint, headers=dict(headers) or None, timeout=timeout_s)))
        return cls(provider, sample_ratio)

    def shutdown(self) -> None:
        """Export what is still batched, then stop (blocks up to the export timeout)."""
        self.provider.shutdown()


_active: Tracing | None = None


def activate(tracing: Tracing) -> None:
    global _active
    _active = tracing


def retire(tracing: Tracing) -> None:
    """Stop tracing through `tracing`, unless another has been activated since."""
    global _active
    if _active is tracing:
        _active = None


def enabled() -> bool:
    return _active is not None


def recording() -> bool:
    """Tracing is on and the current span records (its request was sampled)."""
    return _active is not None and _recording()


def _recording() -> bool:
    """Whether the current span records: under a request that was not sampled, no stage
    span is made at all (the SDK's non-recording spans still cost several µs each). The
    backend then gets the request's own context, marked not sampled."""
    from opentelemetry.trace import get_current_span

    return get_current_span().is_recording()


def _kind(name: str) -> SpanKind:
    from opentelemetry.trace import SpanKind

    return SpanKind[name]


def span(name: str | None, attributes: Mapping[str, AttributeValue] | None = None
         ) -> AbstractContextManager[Span | None]:
    """A child of the current span around a stage; a shared no-op when tracing is off (or
    `name` is None). An exception leaving it is recorded and marks the span an error."""
    tracing = _active
    if tracing is None or name is None or not _recording():
        return _NO_SPAN
    return tracing.tracer.start_as_current_span(name, attributes=attributes)


def client_span(name: str, attributes: Mapping[str, AttributeValue]
                ) -> AbstractContextManager[Span | None]:
    """As `span`, for a call to another service (an upstream attempt)."""
    tracing = _active
    if tracing is None or not _recording():
        return _NO_SPAN
    return tracing.tracer.start_as_current_span(name, kind=_kind("CLIENT"),
                                                attributes=attributes)


def child(parent: Span | None, name: str,
          attributes: Mapping[str, AttributeValue] | None = None) -> Span | None:
    """A span under `parent` that is not made current: one that outlives the code that
    starts it (a stream relay, ended when the stream ends). None when off or no parent."""
    tracing = _active
    if tracing is None or parent is None or not parent.is_recording():
        return None
    from opentelemetry.trace import set_span_in_context

    return tracing.tracer.start_span(name, context=set_span_in_context(parent),
                                     attributes=attributes)


def use(span_: Span | None) -> AbstractContextManager[Any]:
    """Make `span_` current for a block (children started in it hang under it)."""
    if span_ is None:
        return _NO_SPAN
    from opentelemetry.trace import use_span

    return use_span(span_, end_on_exit=False)


def set_attributes(span_: Span | None, attributes: Mapping[str, AttributeValue | None]) -> None:
    """Set the attributes that have a value (OpenTelemetry takes no None)."""
    if span_ is not None and span_.is_recording():
        span_.set_attributes({k: v for k, v in attributes.items() if v is not None})


def mark_error(span_: Span | None, description: str) -> None:
    if span_ is not None:
        from opentelemetry.trace import Status, StatusCode

        span_.set_status(Status(StatusCode.ERROR, description))


def end(span_: Span | None, error: str | None = None) -> None:
    if span_ is not None:
        if error is not None:
            mark_error(span_, error)
        span_.end()


def with_traceparent(headers: dict[str, str]) -> dict[str, str]:
    """`headers` plus the current span's `traceparent` (and `tracestate`): a copy when
    tracing is on and a span is current, `headers` itself otherwise."""
    tracing = _active
    if tracing is None:
        return headers
    carrier: dict[str, str] = {}
    tracing.propagator.inject(carrier)
    return {**headers, **carrier} if carrier else headers


class RequestTrace:
    """One request's SERVER span: current while the edge plans and calls, ended by the edge
    when the response is done (for a stream, when it ends)."""

    def __init__(self, tracing: Tracing, name: str, headers: Mapping[str, str],
                 attributes: Mapping[str, AttributeValue]) -> None:
        from opentelemetry import context
        from opentelemetry.trace import set_span_in_context

        parent: Context = tracing.propagator.extract(headers)  # the caller's traceparent
        self.span: Span = tracing.tracer.start_span(name, context=parent, kind=_kind("SERVER"),
                                                    attributes=attributes)
        self._token: object | None = context.attach(set_span_in_context(self.span, parent))

    def detach(self) -> None:
        """The span stops being current here (it may still be ended later, elsewhere)."""
        if self._token is not None:
            from opentelemetry import context

            context.detach(self._token)  # type: ignore[arg-type]
            self._token = None

    def end(self, http_status: int) -> None:
        self.detach()
        self.span.set_attribute("http.response.status_code", http_status)
        if http_status >= 500:
            mark_error(self.span, f"HTTP {http_status}")
        self.span.end()


def begin_request(name: str, headers: Mapping[str, str],
                  attributes: Mapping[str, AttributeValue]) -> RequestTrace | None:
    """The request's root span; None when tracing is off, or when a request that continues
    no trace is not sampled (then nothing is traced or propagated: one random draw is all it
    costs). A caller's `traceparent` is always continued, sampled or not, as it says."""
    tracing = _active
    if tracing is None or ("traceparent" not in headers
                           and random.random() >= tracing.sample_ratio):
        return None
    return RequestTrace(tracing, name, headers, attributes)


@contextmanager
def request_scope(name: str, headers: Mapping[str, str],
                  attributes: Mapping[str, AttributeValue]) -> Iterator[RequestTrace | None]:
    """A root span for a request answered within the block (no stream outlives it)."""
    trace = begin_request(name, headers, attributes)
    status = 500
    try:
        yield trace
        status = 200
    except BaseException as error:
        status = int(getattr(error, "status", 500))
        raise
    finally:
        if trace is not None:
            trace.end(status)
