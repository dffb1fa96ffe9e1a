"""The strict base of every contract model: a mistyped key fails loudly."""

from pydantic import BaseModel, ConfigDict

__all__ = ["StrictModel"]


class StrictModel(BaseModel):
    """Base for config and wire messages: unknown keys are refused, values are validated."""

    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True)
