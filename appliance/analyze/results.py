"""What the analysis stage hands on: per-frame results, anomaly events and per-window aggregates.

Only ``WindowSummary`` and ``AnomalyEvent`` are meant to leave the device (mapped by the pipeline onto
the published counts and anomalies messages, with the same field names). ``FrameAnalysis`` also
carries per-person anchors, boxes and track ids for ``appliance count --json`` and the debug preview;
those stay in memory and must never be published.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Literal, Optional, Tuple

import numpy as np

AnomalyType = Literal["overcrowding", "rapid_change", "abnormal_motion", "counterflow", "camera_tamper"]
AnomalyState = Literal["raised", "cleared"]
Severity = Literal["info", "warning", "critical"]


@dataclass(frozen=True)
class AnomalyEvent:
    """One raise or clear of a flag. Explainable on its own: ``reason`` says what crossed which
    threshold since when; ``value`` and ``threshold`` (or ``baseline``) are the numbers behind it."""

    type: AnomalyType
    zone: Optional[str]  # None: the whole frame
    state: AnomalyState
    value: float
    threshold: Optional[float]
    since: float  # timestamp_s when the condition behind this state change began
    severity: Severity
    reason: str
    baseline: Optional[float] = None  # the learned/rolling reference, for flags judged against one

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FrameAnalysis:
    index: int
    timestamp_s: float
    count: int  # people detected in the frame
    zone_counts: Dict[str, int]
    crossings: Dict[str, Tuple[int, int]]  # line name -> (in, out) new this frame
    events: List[AnomalyEvent]  # raised or cleared at this frame
    camera_ok: bool  # False while a tamper check fails (even before the flag's hold time has passed)
    # In memory only (count --json, debug preview). Never published.
    anchors: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 2), np.float32))
    boxes: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 4), np.float32))
    track_ids: List[Optional[int]] = field(repr=False, default_factory=list)  # per box; None: no confirmed track


@dataclass(frozen=True)
class CountStats:
    min: int
    mean: float
    max: int
    last: int

    @classmethod
    def of(cls, values: List[int]) -> Optional[CountStats]:
        if not values:
            return None
        return cls(min=min(values), mean=round(float(np.mean(values)), 3), max=max(values), last=values[-1])


@dataclass(frozen=True)
class ZoneStats:
    min: int
    mean: float
    max: int
    last: int
    density_per_m2: Optional[float]  # mean over the window; None without area_m2 or a ground plane
    dwell_mean_s: Optional[float]  # None: nobody's visit ended or was in progress in the window
    dwell_p90_s: Optional[float]


@dataclass(frozen=True)
class Heatmap:
    rows: int
    cols: int
    cells: List[int]  # row-major, person anchors summed over the window's analyzed frames


@dataclass(frozen=True)
class WindowSummary:
    window_start: float
    window_end: float
    frames_analyzed: int
    frames_dropped: int
    total: Optional[CountStats]  # None when no frame was analyzed in the window
    zones: Dict[str, ZoneStats]
    lines: Dict[str, Dict[str, int]]  # line name -> {"in": n, "out": n}
    heatmap: Optional[Heatmap]
    camera_ok: bool  # False if the camera was lost, or a tamper check failed, at any time in the window

    def as_dict(self) -> dict:
        """The published counts message's fields (the pipeline adds sequence number and device)."""
        return asdict(self)
