"""The values that cross stage seams: one definition each, used by analyze, health and publish alike.

Analysis builds these; the published messages embed the very same classes. A new count field is
added here once, and the counts message, its JSON Schema and ``appliance count`` all follow. They
are deliberately narrow (numbers, short names, a few enums): nothing here can hold bytes, an image
or a list of boxes, so nothing built from them can carry a face off the device.
"""

from __future__ import annotations

from typing import List, Literal, Optional, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import Annotated

from appliance.names import Label

# Names of zones, lines, models and drop reasons on the wire: short identifiers, never free text.
Name = Label
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Count = Annotated[int, Field(ge=0)]
NonNegative = Annotated[float, Field(ge=0)]

AnomalyType = Literal["overcrowding", "rapid_change", "abnormal_motion", "counterflow", "camera_tamper"]
AnomalyState = Literal["raised", "cleared"]
Severity = Literal["info", "warning", "critical"]
# The camera as the control room sees it. A capture source also knows "ended" (a file ran out),
# which says nothing bad about the camera: see ``camera_state``.
CameraState = Literal["ok", "lost", "reconnecting"]
SourceState = Literal["ok", "lost", "reconnecting", "ended"]
HealthState = Literal["ok", "degraded", "failed"]
# The stages whose latency health reports, in the order a frame passes them.
Stage = Literal["capture", "anonymize", "analyze", "publish"]

MAX_HEATMAP_SIDE = 16


def camera_state(source_state: SourceState) -> CameraState:
    """The published camera state of a capture source's state."""
    return "ok" if source_state == "ended" else source_state


class Value(BaseModel):
    """Base of every value that may leave the device: immutable, closed, finite."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        # NaN and infinities are not JSON: a NaN mean is refused when built, not published.
        allow_inf_nan=False,
        # The exported schema describes what is on the wire, where every field is present.
        json_schema_serialization_defaults_required=True,
    )


class ModelInfo(Value):
    """A model the device runs, identified by content so the control room can audit versions."""

    name: Name = Field(description="model name in the manifest")
    sha256: Sha256 = Field(description="sha256 of the model file, checked before it is loaded")


class CountStats(Value):
    """People counted per analysed frame over one window."""

    min: Count = Field(description="fewest people in one analysed frame of the window")
    mean: NonNegative = Field(description="mean people per analysed frame")
    max: Count = Field(description="most people in one analysed frame")
    last: Count = Field(description="people in the window's last analysed frame")

    @model_validator(mode="after")
    def _ordered(self) -> CountStats:
        if not (self.min <= self.mean <= self.max and self.min <= self.last <= self.max):
            raise ValueError("need min <= mean <= max and min <= last <= max")
        return self

    @classmethod
    def of(cls, values: Sequence[int]) -> Optional[CountStats]:
        """Statistics of per-frame counts; None for no frames (never a misleading zero)."""
        if not values:
            return None
        mean = round(sum(values) / len(values), 3)
        return cls(min=min(values), mean=mean, max=max(values), last=values[-1])


class ZoneStats(Value):
    """One zone over one window. With small-count protection, a zone that held fewer than
    ``min_count`` people is published as ``suppressed`` with its figures null (never a silent zero)."""

    min: Optional[Count] = Field(description="fewest people in the zone in one frame; null: suppressed")
    mean: Optional[NonNegative] = Field(description="mean people in the zone per frame; null: suppressed")
    max: Optional[Count] = Field(description="most people in the zone in one frame; null: suppressed")
    last: Optional[Count] = Field(description="people in the zone in the last frame; null: suppressed")
    density_per_m2: Optional[NonNegative] = Field(
        None, description="mean people per square metre; null when the zone has no area_m2"
    )
    dwell_mean_s: Optional[NonNegative] = Field(
        None, description="null when no visit ended or was in progress, or fewer than privacy.min_count visits"
    )
    dwell_p90_s: Optional[NonNegative] = Field(
        None, description="90th percentile of time spent in the zone (s); null like dwell_mean_s"
    )
    suppressed: bool = Field(False, description="true: fewer than privacy.min_count people; counts are null")

    @model_validator(mode="after")
    def _consistent(self) -> ZoneStats:
        counts = (self.min, self.mean, self.max, self.last)
        if self.suppressed:
            if any(v is not None for v in (*counts, self.density_per_m2)):
                raise ValueError("a suppressed zone carries no counts")
        elif any(v is None for v in counts):
            raise ValueError("min, mean, max and last are null only when suppressed")
        else:
            CountStats(min=self.min, mean=self.mean, max=self.max, last=self.last)  # the same ordering rule
        return self


class LineCounts(Value):
    """Crossings of one counting line (per frame in memory, per window on the wire). With small-count
    protection a line crossed by fewer than ``min_count`` people in a direction is ``suppressed``."""

    in_: Optional[Count] = Field(alias="in", description="crossings in the line's positive direction")
    out: Optional[Count] = Field(description="crossings in the opposite direction")
    suppressed: bool = Field(False, description="true: a direction had fewer than privacy.min_count crossings")

    @model_validator(mode="after")
    def _consistent(self) -> LineCounts:
        if self.suppressed != (self.in_ is None or self.out is None) or (self.in_ is None) != (self.out is None):
            raise ValueError("in and out are null exactly when suppressed")
        return self

    def __add__(self, other: LineCounts) -> LineCounts:
        return LineCounts(in_=(self.in_ or 0) + (other.in_ or 0), out=(self.out or 0) + (other.out or 0))


class PrivacyApplied(Value):
    """How the window's figures were protected, declared in every counts message."""

    min_count: Count = Field(description="zone, line and dwell figures below this were suppressed (0: off)")
    total_suppressed: bool = Field(
        False, description="true: the window's total was below min_count and privacy.protect_total is on; total is null"
    )
    noise_epsilon: Optional[float] = Field(
        None, gt=0, description="Laplace noise of scale 1/epsilon was added to each zone and line count; null: none"
    )


class Heatmap(Value):
    """A coarse occupancy grid (people-frames per cell). At most 16x16: far too coarse to be an image."""

    rows: int = Field(ge=1, le=MAX_HEATMAP_SIDE, description="grid rows (top to bottom of the frame)")
    cols: int = Field(ge=1, le=MAX_HEATMAP_SIDE, description="grid columns (left to right)")
    cells: List[List[Count]] = Field(max_length=MAX_HEATMAP_SIDE, description="rows x cols, row-major")

    @model_validator(mode="after")
    def _shape(self) -> Heatmap:
        if len(self.cells) != self.rows or any(len(r) != self.cols for r in self.cells):
            raise ValueError(f"cells must be {self.rows} rows of {self.cols}")
        return self
