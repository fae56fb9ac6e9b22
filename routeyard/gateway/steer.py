"""Soft budgets: as a key's (or its tenant's) soft budget drains, routing shifts to cheaper
candidates, the way the `budget` selection algorithm steers by its own budgets.

It works on top of any decision's algorithm instead of replacing it: the candidate that
algorithm chose counts as the better one (quality 1, the others 0.5), and every candidate pays
λ times its expected cost relative to the dearest, with the `budget` algorithm's λ curve:

    λ = 0.2 + (20 - 0.2) · spent_fraction²

so a fresh budget changes nothing, the squeeze comes near the end, and an exhausted one picks
the cheapest candidate that fits. Requests that name a model are never steered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from routeyard.selection.base import CandidateView, Selection
from routeyard.selection.budget import BudgetState
from routeyard.selection.common import priced

if TYPE_CHECKING:
    from routeyard.signals import RequestContext

LAMBDA, LAMBDA_MAX = 0.2, 20.0  # the `budget` algorithm's defaults
CHOSEN_QUALITY, OTHER_QUALITY = 1.0, 0.5
EXPECTED_OUTPUT_TOKENS = 256
# Below this fraction spent, λ < CHOSEN_QUALITY - OTHER_QUALITY: no relative cost difference
# (at most 1) can outweigh the chosen candidate's lead, so steering cannot change the pick.
STEERS_FROM = ((CHOSEN_QUALITY - OTHER_QUALITY - LAMBDA) / (LAMBDA_MAX - LAMBDA)) ** 0.5


@dataclass(frozen=True, slots=True)
class SoftBudgetSteer:
    state: BudgetState  # the caller's most spent soft budget

    def adjust(self, selection: Selection, candidates: list[CandidateView], prompt_tokens: int,
               ctx: RequestContext | None) -> Selection:
        """The decision's selection, or a cheaper candidate when the budget says so."""
        weighed = priced(candidates, prompt_tokens, EXPECTED_OUTPUT_TOKENS, ctx)
        if weighed is None or len(weighed.pool) < 2:
            return selection
        pool, costs = weighed.pool, weighed.costs
        fraction = self.state.fraction
        if fraction >= 1.0:
            best = min(range(len(pool)), key=costs.__getitem__)
            why = "exhausted: the cheapest candidate"
        else:
            lam = LAMBDA + (LAMBDA_MAX - LAMBDA) * fraction ** 2
            dearest = max(costs) or 1.0
            scores = [(CHOSEN_QUALITY if c.name == selection.model else OTHER_QUALITY)
                      - lam * cost / dearest for c, cost in zip(pool, costs, strict=True)]
            best = max(range(len(pool)), key=scores.__getitem__)
            why = f"{fraction:.0%} spent, λ={lam:.3g}: a cheaper candidate"
        if pool[best].name == selection.model:
            return selection
        return Selection(pool[best].name, f"{selection.reason}; steered by the soft "
                                          f"{self.state.describe()} ({why})")
