"""What every section of the schema is built from: StrictModel and the number types.

Unknown keys are errors everywhere (``extra="forbid"``): a typo must never fall back to a
default silently.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


def _not_a_boolean(value: Any) -> Any:
    # YAML reads true, yes and on as booleans, and pydantic would take them as 1: a slip
    # that must never become a stiffness or a pose coordinate on a real arm.
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
    return value


# The schema's numbers: every float and int field is one of these, so a boolean is refused
# wherever a number is expected. Floats are also finite (StrictModel's allow_inf_nan=False):
# NaN passes every `<` and `>` bound check, and inf in a safety box is no box.
Float = Annotated[float, BeforeValidator(_not_a_boolean)]
Int = Annotated[int, BeforeValidator(_not_a_boolean)]

Vec3 = tuple[Float, Float, Float]
Vec2 = tuple[Float, Float]
Vec6 = tuple[Float, Float, Float, Float, Float, Float]
Vec7 = tuple[Float, Float, Float, Float, Float, Float, Float]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)
