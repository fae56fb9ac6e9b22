"""Errors a client can see, each with its HTTP status and OpenAI error fields."""

from __future__ import annotations

from typing import Any


class RouteyardError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type,
                          "param": self.param, "code": self.code}}


class InvalidRequest(RouteyardError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class ClientDisconnected(RouteyardError):
    """The client left before its request was read: nobody reads the answer, nothing failed."""

    status = 499  # nginx's "client closed request"
    type = "invalid_request_error"
    code = "client_disconnected"


class ContextTooLong(InvalidRequest):
    code = "context_length_exceeded"


class CapabilityMissing(InvalidRequest):
    """No model the request may go to can serve it: it sends images to text-only models, say.
    The message names what is missing and each model skipped."""

    code = "capability_missing"


class Unauthorized(RouteyardError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(RouteyardError):
    status = 403
    type = "permission_error"
    code = "direct_model_not_allowed"


class NotFound(RouteyardError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class Conflict(RouteyardError):
    """The request contradicts what is stored (a tenant that still has keys, an id taken)."""

    status = 409
    type = "invalid_request_error"
    code = "conflict"


class RateLimited(RouteyardError):
    """The caller's key or tenant is over a limit: RPM, TPM or concurrent requests. Carries
    `retry-after` (and `retry-after-ms`, which the openai SDK reads first)."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class BudgetExceeded(RateLimited):
    """A hard budget is spent. Retrying soon cannot help, so the SDKs are told not to
    (`x-should-retry: false`)."""

    code = "budget_exceeded"


class LimiterUnavailable(RouteyardError):
    """Limits cannot be checked (Redis is down) and `gateway.on_redis_down` is fail_closed."""

    status = 503
    type = "server_error"
    code = "rate_limiter_unavailable"


class ServerShuttingDown(RouteyardError):
    """The server's drain window ended before the answer did (streams get an SSE error event
    instead). A client may retry on another replica."""

    status = 503
    type = "server_error"
    code = "server_shutting_down"


# The message the drain cancels requests still running at the end of its window with: how a
# handler tells that cancellation from a client going away.
SHUTDOWN_CUT = "the server is shutting down: the drain window ended before the answer"


class PayloadTooLarge(RouteyardError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class UpstreamRateLimited(RouteyardError):
    status = 429
    type = "rate_limit_error"
    code = "upstream_rate_limited"


class UpstreamFailed(RouteyardError):
    status = 502
    type = "upstream_error"
    code = "upstream_failed"


class NoBackendAvailable(RouteyardError):
    status = 503
    type = "upstream_error"
    code = "no_backend_available"


class UpstreamTimeout(RouteyardError):
    status = 504
    type = "upstream_error"
    code = "upstream_timeout"


class UpstreamRejected(RouteyardError):
    """The backend refused the request itself (a 4xx): its status and message pass through."""

    type = "invalid_request_error"
    code = "upstream_rejected"

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
