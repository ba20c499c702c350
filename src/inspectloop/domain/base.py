"""The base of the validated domain objects."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class FrozenModel(BaseModel):
    """An immutable, validated value: unknown fields are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")
