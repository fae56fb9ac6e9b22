"""Budget-aware selection: `quality_cost` whose λ rises as the tightest budget drains.

    λ = lambda + (lambda_max - lambda) · spent_fraction²

Squared so that a fresh budget barely changes routing and the squeeze comes near the end.
Once a budget is exhausted the cheapest candidate that fits is chosen, and the reason says so.
Spend comes from the Router's BudgetLedger (`selection/ledger.py`), given at construction in
`AlgorithmBuild.ledger`; the algorithm tells it which scopes to record. Without one (a bare
algorithm, offline) nothing counts as spent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from routeyard.selection.base import AlgorithmBuild, CandidateView, Selection, register
from routeyard.selection.common import energy_note, energy_penalties, number, priced
from routeyard.selection.cost_aware import QualityCostSelection
from routeyard.selection.ledger import PERIODS, check_scope, scope_key

if TYPE_CHECKING:
    from routeyard.signals.base import RequestContext


@dataclass(slots=True, frozen=True)
class Budget:
    scope: str
    limit_usd: float
    period: str


@dataclass(slots=True, frozen=True)
class BudgetState:
    budget: Budget
    spent: float

    @property
    def fraction(self) -> float:
        return min(1.0, self.spent / self.budget.limit_usd)

    def describe(self) -> str:
        return (f"{self.budget.scope} {self.budget.period} budget ${self.spent:.4f} of "
                f"${self.budget.limit_usd:g}")


def parse_budgets(raw: object) -> list[Budget]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError("algorithm_options.budgets must be a list of {scope, limit_usd, period}")
    budgets = []
    for index, item in enumerate(raw):
        where = f"algorithm_options.budgets[{index}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where} must be a mapping of scope, limit_usd, period")
        limit = item.get("limit_usd")
        if isinstance(limit, bool) or not isinstance(limit, int | float) or not limit > 0:
            raise ValueError(f"{where}.limit_usd must be a positive number")
        period = item.get("period", "total")
        if period not in PERIODS:
            raise ValueError(f"{where}.period must be one of {', '.join(PERIODS)}")
        try:
            scope = check_scope(item.get("scope", "global"))
        except ValueError as exc:
            raise ValueError(f"{where}.scope: {exc}") from None
        budgets.append(Budget(scope, float(limit), str(period)))
    return budgets


@register
class BudgetSelection(QualityCostSelection):
    """quality - λ·relative cost, with λ driven by how much of the tightest budget is spent."""

    name = "budget"
    gives_scores = False  # its λ moves with the budget; its selections carry no scores

    def __init__(self, options: dict[str, Any] | None = None, build: AlgorithmBuild | None = None):
        options = {"lambda": 0.2, **(options or {})}  # a gentler default than quality_cost's
        super().__init__(options, build)
        self.lambda_max = number(self.options, "lambda_max", 20.0)
        if self.lambda_max < self.lam:
            raise ValueError("algorithm_options.lambda_max must be >= lambda")
        self.budgets = parse_budgets(self.options.get("budgets"))
        self.ledger = self.build.ledger
        if self.ledger is not None:
            self.ledger.watch_scopes(self.scopes())

    def scopes(self) -> set[str]:
        """The scopes whose spend the ledger must record for this algorithm."""
        return {b.scope for b in self.budgets}

    def tightest(self, ctx: RequestContext | None) -> BudgetState | None:
        """The applicable budget with the largest spent fraction, or None if none applies."""
        if self.ledger is None:
            return None
        states = []
        for budget in self.budgets:
            key = scope_key(budget.scope, ctx)
            if key is not None:
                states.append(BudgetState(budget, self.ledger.spent(key, budget.period)))
        return max(states, key=lambda s: s.fraction, default=None)

    def select(self, candidates: list[CandidateView], prompt_tokens: int,
               ctx: RequestContext | None = None) -> Selection | None:
        weighed = priced(candidates, prompt_tokens, self.output_tokens, ctx)
        if weighed is None:
            return None
        pool, costs, note = weighed.pool, weighed.costs, weighed.note
        state = self.tightest(ctx)
        if state is not None and state.fraction >= 1.0:
            cheapest = min(range(len(pool)), key=costs.__getitem__)  # ties: the first listed
            return Selection(pool[cheapest].name,
                             f"budget: {state.describe()} exhausted; the cheapest candidate "
                             f"(expected ${costs[cheapest]:.6f}){note}")
        fraction = state.fraction if state is not None else 0.0
        lam = self.lam + (self.lambda_max - self.lam) * fraction ** 2
        dearest = max(costs)
        qualities = [self.priors.get(c.name, self.default_prior) for c in pool]
        values = [q - lam * (cost / dearest if dearest > 0 else 0.0)
                  for q, cost in zip(qualities, costs, strict=True)]
        # λ_energy stays fixed: the budget squeezes dollars, not joules.
        energy = energy_penalties(pool, prompt_tokens, weighed.output_tokens, self.lam_energy)
        if energy is not None:
            values = [v - e for v, e in zip(values, energy, strict=True)]
        best = max(range(len(pool)), key=values.__getitem__)  # ties: the first listed
        relative = costs[best] / dearest if dearest > 0 else 0.0
        spent = (f"{state.describe()} ({fraction:.0%} spent)" if state is not None
                 else "no budget applies")
        return Selection(pool[best].name,
                         f"budget: quality {qualities[best]:.2f} - λ={lam:.3g} * relative cost "
                         f"{relative:.2f}{energy_note(energy, best)} = {values[best]:.2f}, the "
                         f"highest; {spent}{note}")
