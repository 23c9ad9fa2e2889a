"""Health beside the pipeline: frame counters, per-stage latency, drop reasons and an overall state.

The pipeline reports what happens; ``snapshot()`` turns it into the numbers the health topic
publishes. State rules (documented in docs/control-room.md):

* ``failed``: the last ``face_stage_max_consecutive_failures`` frames were all dropped by the
  fail-closed anonymizer (a broken model), or the camera has been lost for the whole period;
* ``degraded``: the camera is lost or reconnecting, or some frames were dropped this period;
* ``ok``: otherwise.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Deque, Dict, Optional

import numpy as np

from appliance.vocabulary import CameraState, HealthState

STAGES = ("capture", "anonymize", "analyze", "publish")


@dataclass
class StageLatency:
    p50_ms: float
    p95_ms: float


@dataclass
class HealthSnapshot:
    state: HealthState
    fps: float
    stage_latency_ms: Dict[str, StageLatency]
    frames_captured: int
    frames_analyzed: int
    frames_dropped: Dict[str, int]
    camera_state: CameraState
    camera_reconnects: int
    uptime_s: float
    camera_decode_errors: int = 0
    period_dropped: Dict[str, int] = field(default_factory=dict)


class HealthMonitor:
    def __init__(self, max_consecutive_failures: int = 25, latency_window: int = 300) -> None:
        self._started = time.monotonic()
        self._max_failures = max_consecutive_failures
        self._latency: Dict[str, Deque[float]] = {s: deque(maxlen=latency_window) for s in STAGES}
        self.frames_captured = 0
        self.frames_analyzed = 0
        self.dropped: Counter[str] = Counter()
        self._period_dropped: Counter[str] = Counter()
        self._consecutive_drops = 0
        self._period_start = time.monotonic()
        self._period_analyzed = 0
        self._period_camera_ok = False
        self._decode_errors_seen = 0

    def record_latency(self, stage: str, ms: float) -> None:
        self._latency[stage].append(ms)

    def frame_captured(self) -> None:
        self.frames_captured += 1
        self._period_camera_ok = True

    def frame_analyzed(self) -> None:
        self.frames_analyzed += 1
        self._period_analyzed += 1
        self._consecutive_drops = 0

    def frame_dropped(self, reason: str) -> None:
        self.dropped[reason] += 1
        self._period_dropped[reason] += 1
        self._consecutive_drops += 1

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    @property
    def failing(self) -> bool:
        """True while the anonymizer has failed closed on every recent frame."""
        return self._consecutive_drops >= self._max_failures

    def _state(self, camera_state: CameraState, decode_errors: int) -> HealthState:
        if self.failing or (camera_state != "ok" and not self._period_camera_ok):
            return "failed"
        if camera_state != "ok" or self._period_dropped or decode_errors > self._decode_errors_seen:
            return "degraded"
        return "ok"

    def snapshot(
        self, camera_state: CameraState, camera_reconnects: int, now: Optional[float] = None, decode_errors: int = 0
    ) -> HealthSnapshot:
        """Numbers for one health message; starts a new reporting period."""
        now = time.monotonic() if now is None else now
        period = max(now - self._period_start, 1e-6)
        latency = {
            stage: StageLatency(
                round(float(np.percentile(values, 50)), 2) if values else 0.0,
                round(float(np.percentile(values, 95)), 2) if values else 0.0,
            )
            for stage, values in self._latency.items()
        }
        snap = HealthSnapshot(
            state=self._state(camera_state, decode_errors),
            fps=round(self._period_analyzed / period, 2),
            stage_latency_ms=latency,
            frames_captured=self.frames_captured,
            frames_analyzed=self.frames_analyzed,
            frames_dropped=dict(self.dropped),
            camera_state=camera_state,
            camera_reconnects=camera_reconnects,
            camera_decode_errors=decode_errors,
            uptime_s=round(now - self._started, 1),
            period_dropped=dict(self._period_dropped),
        )
        self._period_start = now
        self._period_analyzed = 0
        self._period_dropped.clear()
        self._period_camera_ok = camera_state == "ok"
        self._decode_errors_seen = decode_errors
        return snap
