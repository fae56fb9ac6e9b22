"""How an exhausted pool (every attempt failed) becomes the client's error: its status and
OpenAI error body."""

from __future__ import annotations

from routeyard.errors import (
    NoBackendAvailable,
    RouteyardError,
    UpstreamFailed,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
)
from routeyard.pool import PoolExhausted


def client_error(exhausted: PoolExhausted) -> RouteyardError:
    last = exhausted.last
    if last is None:
        return NoBackendAvailable(exhausted.message)
    if not last.failover and last.status is not None:
        return UpstreamRejected(f"the backend rejected the request: {last.message}", last.status)
    if last.kind == "timeout":
        return UpstreamTimeout(exhausted.message)
    if last.status == 429:
        headers = {"retry-after": str(int(last.retry_after))} if last.retry_after else {}
        return UpstreamRateLimited(exhausted.message, headers=headers)
    return UpstreamFailed(exhausted.message)
