"""The gateway layer: virtual keys and tenants, roles, rate limits and budgets.

Keys and tenants live in the store's key-value space (any backend); limits and spend are
counted in Redis when `state.redis_url` is set (exact across replicas), else in this process.
The Router builds one `Gateway`; the HTTP edge resolves each request's caller through it, the
planner is steered by soft budgets, and the accounting settles each admitted request.
"""

from routeyard.gateway.callers import ANONYMOUS, EDGE_CALLER, LIBRARY, ROLES, Caller, Scope
from routeyard.gateway.gateway import Gateway
from routeyard.gateway.limiter import Ticket
from routeyard.gateway.steer import SoftBudgetSteer

__all__ = ["ANONYMOUS", "EDGE_CALLER", "LIBRARY", "ROLES", "Caller", "Gateway", "Scope",
           "SoftBudgetSteer", "Ticket"]
