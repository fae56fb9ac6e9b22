"""The sections of a decision that run several models or change how one is chosen:
exploration, shadow traffic, ensembles and step-level collaboration."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from routeyard.config.types import NonNegativeFloat, PositiveFloat, Strict


class ExplorationConfig(Strict):
    """Exploration with logged propensities (docs/learning.md): with probability `epsilon` a
    uniform draw over the servable candidates, or a softmax over the algorithm's scores at
    `temperature`. Exactly one of the two."""

    epsilon: Annotated[float, Field(gt=0, le=1)] | None = None
    temperature: PositiveFloat | None = None
    # What explored requests (those whose model differs from the algorithm's own choice)
    # may spend per UTC day, per replica; past it the decision stops exploring until midnight.
    max_daily_usd: NonNegativeFloat | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ExplorationConfig:
        if (self.epsilon is None) == (self.temperature is None):
            raise ValueError("give exactly one of epsilon or temperature")
        return self


class ShadowConfig(Strict):
    """Mirror a sample of a decision's requests to a candidate model after the client's
    answer is sent, and score the two answers (docs/learning.md)."""

    model: Annotated[str, Field(min_length=1)]
    sample: Annotated[float, Field(ge=0, le=1)] = 0.05
    max_daily_usd: NonNegativeFloat | None = None  # per UTC day, per replica
    # judge: a pool model compares the two answers pairwise; exact, numeric, choice: the two
    # answers are compared with a reference answer when the request carries one.
    scorer: Literal["judge", "exact", "numeric", "choice"] = "judge"
    judge: str | None = None  # the judge's model (required with scorer: judge)
    timeout_s: PositiveFloat = 60.0

    @model_validator(mode="after")
    def _judge_named(self) -> ShadowConfig:
        if self.scorer == "judge" and not self.judge:
            raise ValueError("scorer 'judge' needs a judge model")
        return self


class EnsembleConfig(Strict):
    """Several models answer one request and one answer is made of theirs (docs/ensembles.md).
    Members are named, or the top `top_k` candidates of the decision's algorithm."""

    members: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    top_k: Annotated[int, Field(ge=2, le=8)] | None = None
    aggregate: Literal["vote", "rank", "synthesise", "synthesize"] = "vote"
    # vote: how answers are compared (auto: a choice letter, else a number, else the text,
    # else embedding clusters of free text).
    normalise: Literal["auto", "choice", "number", "exact", "embedding"] = "auto"
    similarity: Annotated[float, Field(gt=0, le=1)] = 0.85  # embedding clusters (vote)
    judge: str | None = None  # rank and synthesise
    member_timeout_s: PositiveFloat = 60.0
    max_members: Annotated[int, Field(ge=2, le=8)] = 5

    @model_validator(mode="after")
    def _consistent(self) -> EnsembleConfig:
        if bool(self.members) == (self.top_k is not None):
            raise ValueError("give exactly one of members or top_k")
        if self.members and len(self.members) < 2:
            raise ValueError("an ensemble needs at least two members")
        if len(self.members) > self.max_members:
            raise ValueError(f"{len(self.members)} members is more than max_members "
                             f"({self.max_members})")
        if self.aggregate != "vote" and not self.judge:
            raise ValueError(f"aggregate '{self.aggregate}' needs a judge model")
        return self


class CollaborateConfig(Strict):
    """Step-level collaboration (docs/ensembles.md): the small model drafts each reasoning
    step; when its first token's entropy is above the threshold, the large model writes it."""

    small: Annotated[str, Field(min_length=1)]
    large: Annotated[str, Field(min_length=1)]
    entropy_threshold: NonNegativeFloat = 1.0  # nats, over the first token's top_logprobs
    step_marker: Annotated[str, Field(min_length=1)] = "\n\n"  # where a step ends
    top_logprobs: Annotated[int, Field(ge=1, le=20)] = 5
    max_steps: Annotated[int, Field(ge=1, le=256)] = 32
    max_step_tokens: Annotated[int, Field(ge=1)] = 512


def one_multi_model_handler(data: Any) -> Any:
    """A decision runs at most one of cascade, ensemble and collaborate."""
    if isinstance(data, dict):
        given = [k for k in ("cascade", "ensemble", "collaborate") if data.get(k) is not None]
        if len(given) > 1:
            raise PydanticCustomError("multi_model", "a decision runs at most one of cascade, "
                                      "ensemble and collaborate, not {given}",
                                      {"given": " and ".join(given)})
    return data
