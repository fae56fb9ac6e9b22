"""Signals: what Routeyard reads from a request before deciding where it goes.

Each family lives in a module and registers itself in FAMILIES; the engine builds only the
families that some decision references.
"""

from routeyard.signals import (  # noqa: F401 - importing registers the families
    guard,
    jailbreak,
    pii,
    request_signals,
    semantic_signals,
    session_risk,
    step_type,
    text_signals,
)
from routeyard.signals.base import FAMILIES, FamilyResult, Match, RequestContext
from routeyard.signals.engine import SignalEngine, SignalFailed, SignalReport

__all__ = [
    "FAMILIES",
    "FamilyResult",
    "Match",
    "RequestContext",
    "SignalEngine",
    "SignalFailed",
    "SignalReport",
]
