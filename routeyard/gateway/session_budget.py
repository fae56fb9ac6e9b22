"""Budgets that degrade gracefully (docs/sessions.md): a session, a task or a key may spend so
many dollars, tokens or steps, and as it drains routing shifts toward cheaper candidates and
lower reasoning effort, following the budget's curve, instead of failing at the cap.

    spent fraction f ── curve ──> pressure p in [0, 1]
    p > 0   the selection is steered as a soft key budget that is p spent would steer it
            (SoftBudgetSteer: λ = 0.2 + 19.8·p², p = 1 the cheapest candidate), and the
            decision's reasoning effort steps down ⌊3p⌋ levels (high → medium → low → minimal)
    f >= 1  the request is refused: 429 `budget_exceeded`, with what was spent and what
            remains for the key

The tightest budget of a request (the one with the highest pressure) steers it.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from routeyard.config.sessions import SessionBudgetConfig
from routeyard.errors import BudgetExceeded
from routeyard.gateway.steer import SoftBudgetSteer
from routeyard.selection.base import CandidateView, Selection
from routeyard.selection.budget import Budget, BudgetState

if TYPE_CHECKING:
    from routeyard.signals import RequestContext

EFFORTS = ("minimal", "low", "medium", "high")  # reasoning_effort, least to most
UNITS = {"usd": "$", "tokens": " tokens", "steps": " steps"}


class Curve:
    """Spent fraction → pressure: linear between the points, 0 before the first point, the
    last point's pressure after it."""

    def __init__(self, points: Sequence[tuple[float, float]]) -> None:
        self.fractions = [float(f) for f, _ in points]
        self.pressures = [float(p) for _, p in points]

    def __call__(self, fraction: float) -> float:
        i = bisect_right(self.fractions, fraction)
        if i == 0:
            return 0.0
        if i == len(self.fractions):
            return self.pressures[-1]
        f0, f1 = self.fractions[i - 1], self.fractions[i]
        p0, p1 = self.pressures[i - 1], self.pressures[i]
        return p0 + (p1 - p0) * (fraction - f0) / (f1 - f0)


def amount(kind: str, value: float) -> str:
    return f"${value:.4f}" if kind == "usd" else f"{value:g}{UNITS[kind]}"


@dataclass(frozen=True, slots=True)
class BudgetRule:
    """One configured budget, ready to weigh a scope's state."""

    scope: str  # session, task or key
    kind: str  # usd, tokens or steps
    limit: float
    curve: Curve

    @classmethod
    def of(cls, config: SessionBudgetConfig) -> BudgetRule:
        return cls(config.scope, config.kind, config.limit, Curve(config.curve))


@dataclass(frozen=True, slots=True)
class Standing:
    """Where one budget of one scope stands before a request."""

    rule: BudgetRule
    scope_id: str  # the session, task or key it counts for
    spent: float

    @property
    def fraction(self) -> float:
        return self.spent / self.rule.limit

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.rule.limit

    @property
    def remaining(self) -> float:
        return max(0.0, self.rule.limit - self.spent)

    def describe(self) -> str:
        kind = self.rule.kind
        return (f"{self.rule.scope} {self.scope_id} budget: {amount(kind, self.spent)} of "
                f"{amount(kind, self.rule.limit)}")


@dataclass(frozen=True, slots=True)
class SessionSteer:
    """Shifts a selection toward cheaper candidates, and the reasoning effort down, by the
    pressure of a request's tightest budget."""

    pressure: float  # in (0, 1]
    standing: Standing

    def adjust(self, selection: Selection, candidates: list[CandidateView], prompt_tokens: int,
               ctx: RequestContext | None) -> Selection:
        """The selection, or a cheaper candidate: SoftBudgetSteer at fraction = pressure."""
        as_soft = BudgetState(Budget(self.standing.scope_id, 1.0, "session"), self.pressure)
        steered = SoftBudgetSteer(as_soft).adjust(selection, candidates, prompt_tokens, ctx)
        if steered is selection:
            return selection
        return replace(steered, reason=f"{selection.reason}; steered by the "
                                       f"{self.standing.describe()} (pressure "
                                       f"{self.pressure:.2f}): a cheaper candidate")

    def effort(self, effort: str | None) -> str | None:
        """The decision's reasoning effort, stepped down ⌊3·pressure⌋ levels."""
        if effort not in EFFORTS:
            return effort
        steps = math.floor(self.pressure * (len(EFFORTS) - 1) + 1e-9)
        return EFFORTS[max(0, EFFORTS.index(effort) - steps)]


class SessionBudgetExceeded(BudgetExceeded):
    """A session's, task's or key's budget is spent. `extra` holds the figures (spent, limit,
    remaining, and what remains of the key's own budgets) for the error body."""

    def __init__(self, standing: Standing, key_left: list[Standing]) -> None:
        kind = standing.rule.kind
        left = "; ".join(f"{amount(s.rule.kind, s.remaining)} left of the key's "
                         f"{amount(s.rule.kind, s.rule.limit)} {s.rule.kind} budget"
                         for s in key_left)
        message = (f"The {standing.describe()} is spent; "
                   f"{amount(kind, standing.remaining)} remains. "
                   + (f"For the key: {left}." if left else
                      "The key has no budget of its own: a new session may go on."))
        super().__init__(message, headers={
            "x-should-retry": "false",
            "x-routeyard-budget-scope": standing.rule.scope,
            "x-routeyard-budget-kind": kind,
            "x-routeyard-budget-spent": f"{standing.spent:.6g}",
            "x-routeyard-budget-limit": f"{standing.rule.limit:.6g}",
            "x-routeyard-budget-remaining": f"{standing.remaining:.6g}",
            **({"x-routeyard-key-budget-remaining": ",".join(
                f"{s.rule.kind}={s.remaining:.6g}" for s in key_left)} if key_left else {})})
        self.extra = {"budget": {
            "scope": standing.rule.scope, "kind": kind, "spent": standing.spent,
            "limit": standing.rule.limit, "remaining": standing.remaining,
            "key_remaining": {s.rule.kind: s.remaining for s in key_left}}}


def weigh(standings: list[Standing]) -> SessionSteer | None:
    """The request's steer (None: no pressure), or SessionBudgetExceeded when a budget is
    spent."""
    exhausted = next((s for s in standings if s.exhausted), None)
    if exhausted is not None:
        raise SessionBudgetExceeded(exhausted, [s for s in standings if s.rule.scope == "key"])
    best: SessionSteer | None = None
    for standing in standings:
        pressure = min(1.0, max(0.0, standing.rule.curve(standing.fraction)))
        if pressure > 0 and (best is None or pressure > best.pressure):
            best = SessionSteer(pressure, standing)
    return best
