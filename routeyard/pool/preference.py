"""A preferred endpoint for the current request: session affinity (docs/sessions.md).

An agent session's next request is cheapest on the endpoint that served its last one: that
backend still holds the conversation's prefix in its KV cache. The serving layer names that
endpoint around the request's backend calls; the executor then tries it first among its
model's endpoints, when it may: it is available (healthy, breaker closed or probing) and not
much busier than the least-loaded endpoint of the model. Otherwise balancing is as usual.

A context variable, like the upstream header edits: the executor's retries and failovers (same
task) see it, and a request without a preference pays one lookup per executor call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EndpointPreference:
    """Try `endpoint` of `model` first while its weighted load exceeds the model's least-loaded
    available endpoint's by at most `max_extra_load` (`PooledModel.endpoints_in_order`)."""

    model: str
    endpoint: str
    max_extra_load: float


_PREFERRED: ContextVar[EndpointPreference | None] = ContextVar(
    "routeyard_preferred_endpoint", default=None)


@contextmanager
def preferred_endpoint(preference: EndpointPreference | None) -> Iterator[None]:
    """Prefer `preference` for the backend calls made inside this block (None: none)."""
    token = _PREFERRED.set(preference)
    try:
        yield
    finally:
        _PREFERRED.reset(token)


def current_preference() -> EndpointPreference | None:
    return _PREFERRED.get()
