"""Health beside the pipeline, and the one place that decides the device's overall state.

The pipeline reports what happens (frames, drops, per-stage latency); ``message()`` combines it
with the capture source's and the publisher's stats into the health topic's message. State rules
(documented in docs/control-room.md):

* ``failed``: the last ``face_stage_max_consecutive_failures`` frames were all dropped by the
  fail-closed anonymizer (a broken model), or the camera has been lost for the whole period;
* ``degraded``: the camera is lost or reconnecting, frames were dropped or could not be decoded
  this period, or delivery is stuck (see :func:`delivery_stuck`), so that a control room reading
  the backlog after an outage sees the outage in the health history instead of a row of ``ok``;
* ``ok``: otherwise.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Deque, Dict, Optional, Sequence, Tuple, get_args

import numpy as np

from appliance.capture.sources import CaptureStats
from appliance.publish.messages import (
    AuditHead,
    CameraHealth,
    FrameCounters,
    HealthMessage,
    LatencyStats,
    LinkHealth,
    OutboxHealth,
)
from appliance.publish.stats import PublisherStats
from appliance.vocabulary import HealthState, ModelInfo, Stage

STAGES: Tuple[Stage, ...] = get_args(Stage)
MAX_ERROR_CHARS = 200  # the health message's limit on ``link.last_error``


def delivery_stuck(stats: PublisherStats, stuck_after_s: float) -> bool:
    """Messages are not getting out: no link, the broker refuses them, the disk refuses them, or
    there is a backlog and no PUBACK for ``stuck_after_s``."""
    if not stats.connected or stats.refusing or stats.held_in_memory:
        return True
    waiting = stats.pending > 0 and (stats.oldest_age_s or 0.0) > stuck_after_s
    silent = stats.seconds_since_puback is None or stats.seconds_since_puback > stuck_after_s
    return waiting and silent


def outbox_health(stats: PublisherStats) -> OutboxHealth:
    return OutboxHealth(
        pending=stats.pending,
        dropped=dict(stats.dropped),
        rejected=stats.rejected,
        egress_refused=stats.egress_refused,
        oldest_age_s=stats.oldest_age_s,
        write_errors=stats.write_errors,
        lost=stats.lost,
        quarantined=stats.quarantined,
        files_set_aside=stats.files_set_aside,
    )


def link_health(stats: PublisherStats) -> LinkHealth:
    error = stats.last_error
    if error is not None and len(error) > MAX_ERROR_CHARS:
        error = error[: MAX_ERROR_CHARS - 3] + "..."
    return LinkHealth(
        connected=stats.connected,
        last_error=error,
        seconds_since_puback=stats.seconds_since_puback,
        broker=stats.broker,
    )


class HealthMonitor:
    def __init__(
        self, max_consecutive_failures: int = 25, *, stuck_after_s: float = 30.0, latency_window: int = 300
    ) -> None:
        """``stuck_after_s``: a backlog with no PUBACK for this long counts as stuck delivery (the
        appliance passes its health interval: one health message saw nothing get out)."""
        self._started = time.monotonic()
        self._max_failures = max_consecutive_failures
        self._stuck_after_s = stuck_after_s
        self._latency: Dict[Stage, Deque[float]] = {s: deque(maxlen=latency_window) for s in STAGES}
        self.frames_captured = 0
        self.frames_analyzed = 0
        self.dropped: Dict[str, int] = {}
        self._consecutive_drops = 0
        self._period_start = time.monotonic()
        self._period_analyzed = 0
        self._period_drops = 0
        self._period_camera_ok = False
        self._decode_errors_seen = 0
        self._outbox_damage_seen = 0

    def record_latency(self, stage: Stage, ms: float) -> None:
        self._latency[stage].append(ms)

    def frame_captured(self) -> None:
        self.frames_captured += 1
        self._period_camera_ok = True

    def frame_analyzed(self) -> None:
        self.frames_analyzed += 1
        self._period_analyzed += 1
        self._consecutive_drops = 0

    def frame_dropped(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        self._period_drops += 1
        self._consecutive_drops += 1

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    @property
    def failing(self) -> bool:
        """True while the anonymizer has failed closed on every recent frame."""
        return self._consecutive_drops >= self._max_failures

    def latency(self) -> Dict[Stage, LatencyStats]:
        """Median and 95th percentile of each stage's recent latencies, in ms (0 before any)."""

        def percentile(values: Deque[float], q: int) -> float:
            return round(float(np.percentile(values, q)), 2) if values else 0.0

        return {s: LatencyStats(p50=percentile(v, 50), p95=percentile(v, 95)) for s, v in self._latency.items()}

    def _state(self, camera: CaptureStats, publisher: PublisherStats, audit: Optional[AuditHead]) -> HealthState:
        camera_ok = camera.camera_state == "ok"
        if self.failing or (not camera_ok and not self._period_camera_ok):
            return "failed"
        new_decode_errors = camera.decode_errors > self._decode_errors_seen
        if not camera_ok or self._period_drops or new_decode_errors:
            return "degraded"
        # Evidence that cannot be written, or a log repaired or lost and not yet acknowledged, is a
        # degraded device: counting goes on, the control room sees it.
        if audit is not None and (audit.problem is not None or audit.unacknowledged > 0):
            return "degraded"
        # A stored message lost to a damaged row or file is a gap the control room should look at:
        # degraded for the period it happened in, delivery goes on.
        if publisher.quarantined + publisher.files_set_aside > self._outbox_damage_seen:
            return "degraded"
        return "degraded" if delivery_stuck(publisher, self._stuck_after_s) else "ok"

    def message(
        self,
        camera: CaptureStats,
        publisher: PublisherStats,
        *,
        models: Sequence[ModelInfo] = (),
        audit: Optional[AuditHead] = None,
        clock_step_s: Optional[float] = None,
        now: Optional[float] = None,
    ) -> HealthMessage:
        """The health message as of now; starts a new reporting period. ``clock_step_s``: a wall-clock
        step seen since the last message (reported once)."""
        now = time.monotonic() if now is None else now
        period = max(now - self._period_start, 1e-6)
        msg = HealthMessage(
            state=self._state(camera, publisher, audit),
            fps=round(self._period_analyzed / period, 2),
            latency_ms=self.latency(),
            frames=FrameCounters(
                captured=self.frames_captured, analyzed=self.frames_analyzed, dropped=dict(self.dropped)
            ),
            camera=CameraHealth(
                state=camera.camera_state, reconnects=camera.reconnects, decode_errors=camera.decode_errors
            ),
            models=list(models),
            outbox=outbox_health(publisher),
            audit=audit,
            link=link_health(publisher),
            cert_days_left=publisher.cert_days_left,
            clock_step_s=None if clock_step_s is None else round(clock_step_s, 3),
            uptime_s=round(now - self._started, 1),
        )
        self._period_start = now
        self._period_analyzed = 0
        self._period_drops = 0
        self._period_camera_ok = camera.camera_state == "ok"
        self._decode_errors_seen = camera.decode_errors
        self._outbox_damage_seen = publisher.quarantined + publisher.files_set_aside
        return msg
