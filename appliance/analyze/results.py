"""What the analysis stage hands on: per-frame results, anomaly events and per-window aggregates.

Only ``WindowSummary`` and ``AnomalyEvent`` are meant to leave the device (``appliance.report`` maps
them onto the published counts and anomalies messages, which embed the same value types from
``appliance.vocabulary``). ``FrameAnalysis`` also carries per-person anchors, boxes and track ids for
``appliance count --json`` and the preview; those stay in memory and must never be published.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from appliance.vocabulary import (
    AnomalyState,
    AnomalyType,
    CountStats,
    Heatmap,
    LineCounts,
    PrivacyApplied,
    Severity,
    ZoneStats,
)


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
    event_id: str = ""  # shared by a raise and its clear (random, carries nothing about people)

@dataclass(frozen=True)
class FrameAnalysis:
    index: int
    timestamp_s: float
    count: int  # people detected in the frame
    zone_counts: Dict[str, int]
    crossings: Dict[str, LineCounts]  # line name -> crossings new this frame
    events: List[AnomalyEvent]  # raised or cleared at this frame
    camera_ok: bool  # False while a tamper check fails (even before the flag's hold time has passed)
    # In memory only (count --json, preview). Never published.
    anchors: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 2), np.float32))
    boxes: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 4), np.float32))
    track_ids: List[Optional[int]] = field(repr=False, default_factory=list)  # per box; None: no confirmed track


@dataclass(frozen=True)
class WindowSummary:
    window_start: float
    window_end: float
    frames_analyzed: int
    frames_dropped: int
    total: Optional[CountStats]  # None when no frame was analyzed in the window
    zones: Dict[str, ZoneStats]
    lines: Dict[str, LineCounts]
    heatmap: Optional[Heatmap]
    camera_ok: bool  # False if the camera was lost, or a tamper check failed, at any time in the window
    privacy: PrivacyApplied
