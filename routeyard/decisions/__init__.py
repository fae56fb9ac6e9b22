"""Decisions: rule trees over signals that pick candidates, an algorithm and fallbacks."""

from routeyard.decisions.engine import Decision, DecisionEngine, DecisionOutcome

__all__ = ["Decision", "DecisionEngine", "DecisionOutcome"]
