"""What every anomaly detector shares: the plug-in interface, the frame context it reads, and a
hold/hysteresis flag.

A detector is one module with one ``AnomalyDetector`` subclass: ``build`` makes its instances from
the config, ``update(ctx)`` returns the events of one frame. It computes its own value each frame
and feeds a ``HeldFlag`` that decides when to raise and clear, so every flag raises only after its
condition has held for ``hold_s`` and clears only below a lower level (hysteresis) held for
``clear_hold_s``: the two things that keep a flag from crying wolf.

A detector that judges the camera itself (``camera_tamper``) also says so through ``camera_ok``;
the analyzer runs detectors in registry order and hands later ones a context whose ``camera_ok``
includes that verdict, so detectors of scene behaviour pause while the camera is suspect.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from appliance.analyze.results import AnomalyEvent
from appliance.config.schema import AnomaliesConfig, ZoneConfig
from appliance.vocabulary import AnomalyType, Severity


@dataclass(frozen=True)
class TrackMotion:
    """A confirmed track as the motion detectors see it (no identity beyond the in-memory id)."""

    track_id: int
    anchor: np.ndarray  # (2,) bottom-centre, pixels
    velocity: np.ndarray  # (2,) pixels per second, image coordinates (y down)
    height_px: float

    @property
    def speed_heights_per_s(self) -> float:
        # Normalising by the person's own height makes speeds comparable near and far from the camera.
        return float(np.hypot(*self.velocity) / max(self.height_px, 1.0))


@dataclass(frozen=True)
class FrameContext:
    timestamp_s: float
    count: int
    zone_counts: Dict[str, int]
    zone_densities: Dict[str, Optional[float]]
    tracks: List[TrackMotion] = field(default_factory=list)
    zone_tracks: Dict[str, List[TrackMotion]] = field(default_factory=dict)
    image: Optional[np.ndarray] = None  # the anonymized BGR frame, for checks of the camera itself; never kept
    camera_ok: bool = True  # detectors of scene behaviour pause while the camera itself is suspect


class AnomalyDetector(ABC):
    """One anomaly type. A new type is one new module with a subclass, listed in ``DETECTOR_TYPES``."""

    @classmethod
    @abstractmethod
    def build(cls, zones: Sequence[ZoneConfig], cfg: AnomaliesConfig) -> List[AnomalyDetector]:
        """The instances this config asks for (none when the type is disabled)."""

    @abstractmethod
    def update(self, ctx: FrameContext) -> List[AnomalyEvent]:
        """Feed one analysed frame; returns the flags raised or cleared at it."""

    def signal_lost(self, t: float) -> List[AnomalyEvent]:
        """The capture source stopped delivering frames at ``t`` (most detectors just wait)."""
        return []

    @property
    def camera_ok(self) -> bool:
        """False while this detector judges the camera itself untrustworthy."""
        return True


class HeldFlag:
    """Raise after ``above`` held ``hold_s``; clear after ``below`` held ``clear_hold_s``.

    ``above`` and ``below`` are separate conditions (the caller applies its hysteresis level), and a
    value between the two keeps the current state. ``since`` on a raise is when the exceedance
    began; on a clear, when the value fell below the clear level. A raise and its clear share one
    ``event_id``, so a consumer can pair them.
    """

    def __init__(self, type_: AnomalyType, zone: Optional[str], hold_s: float, clear_hold_s: float) -> None:
        self.type = type_
        self.zone = zone
        self.hold_s = hold_s
        self.clear_hold_s = clear_hold_s
        self.raised = False
        self._pending_since: Optional[float] = None
        self._event_id = ""

    def _flip(
        self,
        since: float,
        value: float,
        threshold: Optional[float],
        reason: str,
        severity: Severity,
        baseline: Optional[float] = None,
    ) -> AnomalyEvent:
        self._pending_since = None
        self.raised = not self.raised
        if self.raised:
            self._event_id = uuid.uuid4().hex
        return AnomalyEvent(
            type=self.type,
            zone=self.zone,
            state="raised" if self.raised else "cleared",
            value=round(float(value), 3),
            threshold=None if threshold is None else round(float(threshold), 3),
            baseline=None if baseline is None else round(float(baseline), 3),
            since=since,
            severity=severity if self.raised else "info",
            reason=reason,
            event_id=self._event_id,
        )

    def update(
        self,
        t: float,
        *,
        above: bool,
        below: bool,
        value: float,
        threshold: Optional[float],
        reason: str,
        severity: Severity = "warning",
        baseline: Optional[float] = None,
    ) -> Optional[AnomalyEvent]:
        """Feed one frame. ``reason`` describes the condition; the held time is appended to it."""
        condition = below if self.raised else above
        if not condition:
            self._pending_since = None
            return None
        if self._pending_since is None:
            self._pending_since = t
        needed = self.clear_hold_s if self.raised else self.hold_s
        if t - self._pending_since < needed:
            return None
        since = self._pending_since
        return self._flip(since, value, threshold, f"{reason} for {t - since:.1f}s", severity, baseline)

    def force_raise(
        self, t: float, value: float, threshold: Optional[float], reason: str, severity: Severity = "critical"
    ) -> Optional[AnomalyEvent]:
        """Raise at once, skipping the hold (for facts rather than measurements, e.g. signal lost)."""
        if self.raised:
            self._pending_since = None
            return None
        return self._flip(t, value, threshold, reason, severity)

    def force_clear(self, t: float, value: float, threshold: Optional[float], reason: str) -> Optional[AnomalyEvent]:
        """Clear at once (the detector was paused or lost its input); no event when not raised."""
        if not self.raised:
            self._pending_since = None
            return None
        return self._flip(t, value, threshold, reason, "info")
