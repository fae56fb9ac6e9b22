"""Helpers shared by the serving-time algorithms: which candidates to weigh, and option
parsing with errors that name the option."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from routeyard.pool.energy import expected_energy, relative
from routeyard.selection.base import CandidateView

if TYPE_CHECKING:
    from routeyard.signals.base import RequestContext

NONE_AVAILABLE = " (no candidate is available; the pool will fail over)"


def eligible(candidates: list[CandidateView], prompt_tokens: int
             ) -> tuple[list[CandidateView], str]:
    """The candidates that fit and are available; if none is available, all that fit (with a
    note for the reason). Never a candidate whose context window the prompt exceeds."""
    fitting = [c for c in candidates if c.fits(prompt_tokens)]
    available = [c for c in fitting if c.is_available()]
    if available:
        return available, ""
    return fitting, NONE_AVAILABLE if fitting else ""


def number(options: dict[str, Any], key: str, default: float, *, minimum: float = 0.0) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ValueError(f"algorithm_options.{key} must be a number >= {minimum:g}")
    return float(value)


def expected_output_tokens(default: int, ctx: RequestContext | None) -> int:
    """The configured expectation, capped by the request's own max_tokens if it sets one."""
    if ctx is None:
        return default
    for key in ("max_completion_tokens", "max_tokens"):
        cap = ctx.body.get(key)
        if isinstance(cap, int) and not isinstance(cap, bool) and cap >= 0:
            return min(default, cap)
    return default


def expected_cost(candidate: CandidateView, prompt_tokens: int, output_tokens: int) -> float:
    """Dollars for this request at the candidate's configured price (0 when it has none)."""
    pricing = getattr(getattr(candidate, "config", None), "pricing", None)
    return 0.0 if pricing is None else float(pricing.cost(prompt_tokens, output_tokens))


@dataclass(slots=True)
class Priced:
    """The candidates an algorithm weighs, with each one's expected cost for this request."""

    pool: list[CandidateView]
    costs: list[float]
    output_tokens: int
    note: str  # appended to the reason when no candidate is available


def priced(candidates: list[CandidateView], prompt_tokens: int, default_output: int,
           ctx: RequestContext | None) -> Priced | None:
    """`eligible` candidates and their expected costs; None when none fits the prompt."""
    pool, note = eligible(candidates, prompt_tokens)
    if not pool:
        return None
    output = expected_output_tokens(default_output, ctx)
    return Priced(pool, [expected_cost(c, prompt_tokens, output) for c in pool], output, note)


def energy_penalties(pool: list[CandidateView], prompt_tokens: int, output_tokens: int,
                     lam_energy: float) -> list[float] | None:
    """λ_energy · each candidate's expected joules over the most energy-hungry candidate's
    (unitless, like relative cost); None when λ_energy is 0, so energy costs nothing then."""
    if not lam_energy:
        return None
    joules = [expected_energy(c, prompt_tokens, output_tokens) for c in pool]
    return [lam_energy * share for share in relative(joules)]


def energy_note(penalties: list[float] | None, index: int) -> str:
    """The reason's energy term, when energy weighs."""
    return "" if penalties is None else f" - energy {penalties[index]:.2f}"
