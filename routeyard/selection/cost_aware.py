"""Cost-aware selection: `cheapest`, and `quality_cost` (quality priors minus λ·cost, minus
λ_energy·energy when `lambda_energy` is set: docs/routing.md, "Energy").

The expected cost of a request on a model is its price per million tokens times the prompt
tokens plus the expected output tokens (`expected_output_tokens`, default 256, capped by the
request's max_tokens).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from routeyard.selection.base import (
    AlgorithmBuild,
    CandidateView,
    Selection,
    SelectionAlgorithm,
    register,
)
from routeyard.selection.common import energy_note, energy_penalties, number, priced

if TYPE_CHECKING:
    from routeyard.signals.base import RequestContext


class _CostAware(SelectionAlgorithm):
    def __init__(self, options: dict[str, Any] | None = None, build: AlgorithmBuild | None = None):
        super().__init__(options, build)
        self.output_tokens = int(number(self.options, "expected_output_tokens", 256))


@register
class CheapestSelection(_CostAware):
    """The fitting, available candidate with the lowest expected cost (ties: first listed)."""

    name = "cheapest"

    def select(self, candidates: list[CandidateView], prompt_tokens: int,
               ctx: RequestContext | None = None) -> Selection | None:
        weighed = priced(candidates, prompt_tokens, self.output_tokens, ctx)
        if weighed is None:
            return None
        pool, costs, output, note = (weighed.pool, weighed.costs, weighed.output_tokens,
                                     weighed.note)
        best = min(range(len(pool)), key=costs.__getitem__)
        return Selection(pool[best].name,
                         f"cheapest: expected ${costs[best]:.6f} for {prompt_tokens} prompt + "
                         f"{output} output tokens{note}")


@register
class QualityCostSelection(_CostAware):
    """argmax of prior quality - λ·(expected cost / the dearest candidate's expected cost)
    - λ_energy·(expected joules / the most energy-hungry candidate's expected joules)."""

    name = "quality_cost"
    gives_scores = True

    def __init__(self, options: dict[str, Any] | None = None, build: AlgorithmBuild | None = None):
        super().__init__(options, build)
        priors = self.options.get("priors") or {}
        if not isinstance(priors, dict) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in priors.values()):
            raise ValueError("algorithm_options.priors must map model names to numbers")
        self.priors = {str(k): float(v) for k, v in priors.items()}
        self.default_prior = number(self.options, "default_prior", 0.5)
        self.lam = number(self.options, "lambda", 1.0)
        self.lam_energy = number(self.options, "lambda_energy", 0.0)

    def select(self, candidates: list[CandidateView], prompt_tokens: int,
               ctx: RequestContext | None = None) -> Selection | None:
        weighed = priced(candidates, prompt_tokens, self.output_tokens, ctx)
        if weighed is None:
            return None
        pool, costs, note = weighed.pool, weighed.costs, weighed.note
        dearest = max(costs)
        qualities = [self.priors.get(c.name, self.default_prior) for c in pool]
        values = [q - self.lam * (cost / dearest if dearest > 0 else 0.0)
                  for q, cost in zip(qualities, costs, strict=True)]
        energy = energy_penalties(pool, prompt_tokens, weighed.output_tokens, self.lam_energy)
        if energy is not None:
            values = [v - e for v, e in zip(values, energy, strict=True)]
        best = max(range(len(pool)), key=values.__getitem__)  # ties: the first listed
        relative = costs[best] / dearest if dearest > 0 else 0.0
        return Selection(pool[best].name,
                         f"quality_cost: quality {qualities[best]:.2f} - λ={self.lam:g} * "
                         f"relative cost {relative:.2f}{energy_note(energy, best)} = "
                         f"{values[best]:.2f}, the highest{note}",
                         scores={c.name: v for c, v in zip(pool, values, strict=True)})
