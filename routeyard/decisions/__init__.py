"""Decisions: rules over request features that pick candidates, an algorithm and fallbacks."""

from routeyard.decisions.engine import Decision, DecisionEngine, DecisionOutcome, RequestFeatures

__all__ = ["Decision", "DecisionEngine", "DecisionOutcome", "RequestFeatures"]
