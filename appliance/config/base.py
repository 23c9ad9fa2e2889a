"""What every config section shares: strict validation (no coercion, no NaN) and frame coordinates."""

from __future__ import annotations

from typing import Any, List, Tuple

from pydantic import BaseModel, BeforeValidator, ConfigDict
from typing_extensions import Annotated


def _list_as_tuple(value: Any) -> Any:
    # YAML has no tuples; strict validation would refuse a list where a pair belongs.
    return tuple(value) if isinstance(value, list) else value


Point = Annotated[Tuple[float, float], BeforeValidator(_list_as_tuple)]


class Strict(BaseModel):
    # strict: no bool -> number, str -> number or float -> int coercion; no NaN or infinity.
    model_config = ConfigDict(extra="forbid", validate_default=True, strict=True, allow_inf_nan=False)


def check_in_frame(points: List[Point], what: str) -> None:
    for x, y in points:
        if not (0 <= x <= 1 and 0 <= y <= 1):
            raise ValueError(f"{what} ({x}, {y}) is outside 0..1 (coordinates are fractions of the frame)")
