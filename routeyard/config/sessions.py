"""Sessions and feedback: agent sessions' state and budgets, and implicit feedback."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from routeyard.config.types import NonNegativeInt, PositiveFloat, Strict


class ImplicitFeedbackConfig(Strict):
    """Negative feedback inferred from behaviour (docs/learning.md); each kind off by default.
    Implicit feedback is marked as such in the log, so estimators can include or exclude it."""

    # The same caller sends a near-identical prompt within the window: the earlier answer
    # gets `reward`.
    regeneration: bool = False
    regeneration_window_s: PositiveFloat = 300.0
    # 0.9 is too low for the bundled static embedding: "the capital of France?" and "... of
    # Germany?" score 0.908 (docs/learning.md).
    regeneration_similarity: Annotated[float, Field(gt=0, le=1)] = 0.95
    # The client leaves a stream before `abandoned_max_tokens` tokens of the answer.
    abandoned_streams: bool = False
    abandoned_max_tokens: Annotated[int, Field(ge=1)] = 20
    reward: Annotated[float, Field(ge=0, le=1)] = 0.0


class FeedbackConfig(Strict):
    implicit: ImplicitFeedbackConfig = ImplicitFeedbackConfig()


# Spent fraction → pressure toward cheaper candidates and lower effort (docs/sessions.md).
DEFAULT_BUDGET_CURVE: tuple[tuple[float, float], ...] = ((0.5, 0.0), (0.8, 0.5), (1.0, 1.0))


class SessionBudgetConfig(Strict):
    """A budget per session, per task (a session's `x-task-id` / `metadata.task_id`) or per
    key, in dollars, tokens or steps (requests), that degrades routing as it drains and
    refuses (429 `budget_exceeded`) only once it is spent."""

    scope: Literal["session", "task", "key"] = "session"
    kind: Literal["usd", "tokens", "steps"] = "usd"
    limit: PositiveFloat
    # Points (spent fraction, pressure), both in [0, 1], fractions increasing; linear between
    # them, 0 before the first, the last's pressure after it.
    curve: list[tuple[float, float]] = Field(
        default_factory=lambda: list(DEFAULT_BUDGET_CURVE))

    @model_validator(mode="after")
    def _curve_in_range(self) -> SessionBudgetConfig:
        if not self.curve:
            raise ValueError("curve needs at least one [spent_fraction, pressure] point")
        previous = -1.0
        for fraction, pressure in self.curve:
            if not (0.0 <= fraction <= 1.0 and 0.0 <= pressure <= 1.0):
                raise ValueError("curve points are [spent_fraction, pressure], each in [0, 1]")
            if fraction <= previous:
                raise ValueError("curve fractions must increase")
            previous = fraction
        return self


class SessionsConfig(Strict):
    """Agent sessions (docs/sessions.md): what a session's state keeps lives in the store under
    `session:<id>:<part>`, and expires after `idle_ttl_s` without a request."""

    idle_ttl_s: PositiveFloat = 3600.0
    # Keep a session on the endpoint that served it last (its prefix cache stays warm), while
    # that endpoint is available and has at most `affinity_max_extra_in_flight` more weighted
    # requests in flight than the least-loaded one of its model.
    endpoint_affinity: bool = False
    affinity_max_extra_in_flight: NonNegativeInt = 8
    budgets: list[SessionBudgetConfig] = Field(default_factory=list)
    # Keep each session's state (and log its id) even without budgets; budgets imply it.
    track: bool = False
