"""The building blocks every config section is made of."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]


class Strict(BaseModel):
    # Unknown keys are errors: a typo such as `fallbak:` must not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)
