"""Turns what analysis and health produce into the typed messages the publish stage accepts.

The one place where in-memory results become wire messages. The value types are shared
(``appliance.vocabulary``), so this only adds what the wire needs: UTC datetimes instead of
seconds, and the narrow message classes that the egress policy accepts.

Times in results are on the source's clock; ``offset_s`` turns them into wall time (0 for a
file's media clock, wall minus monotonic for a live source's), read once per message so both ends
of a window get the same label offset and the window keeps its length.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional, Sequence

from appliance.analyze import AnomalyEvent, WindowSummary
from appliance.health import HealthSnapshot
from appliance.publish import (
    AnomalyMessage,
    AuditHead,
    CameraHealth,
    CountsMessage,
    FrameCounters,
    HealthMessage,
    LatencyStats,
)
from appliance.vocabulary import ModelInfo


def utc(timestamp_s: float) -> datetime:
    return datetime.fromtimestamp(timestamp_s, tz=timezone.utc)


def counts_message(summary: WindowSummary, offset_s: float = 0.0) -> CountsMessage:
    return CountsMessage(
        window_start=utc(summary.window_start + offset_s),
        window_end=utc(summary.window_end + offset_s),
        frames_analyzed=summary.frames_analyzed,
        frames_dropped=summary.frames_dropped,
        total=summary.total,
        zones=summary.zones,
        lines=summary.lines,
        heatmap=summary.heatmap,
        camera_ok=summary.camera_ok,
        privacy=summary.privacy,
    )


def anomaly_message(event: AnomalyEvent, offset_s: float = 0.0) -> AnomalyMessage:
    return AnomalyMessage(
        type=event.type,
        event_id=event.event_id,
        zone=event.zone,
        state=event.state,
        value=float(event.value),
        threshold=None if event.threshold is None else float(event.threshold),
        baseline=None if event.baseline is None else float(event.baseline),
        since=utc(event.since + offset_s),
        severity=event.severity,
        reason=event.reason[:160],
    )


def health_message(
    snap: HealthSnapshot,
    models: Sequence[ModelInfo],
    audit: Optional[AuditHead] = None,
    clock_step_s: Optional[float] = None,
) -> HealthMessage:
    return HealthMessage(
        state=snap.state,
        fps=snap.fps,
        latency_ms={s: LatencyStats(p50=v.p50_ms, p95=v.p95_ms) for s, v in snap.stage_latency_ms.items()},
        frames=FrameCounters(
            captured=snap.frames_captured, analyzed=snap.frames_analyzed, dropped=dict(snap.frames_dropped)
        ),
        camera=CameraHealth(
            state=snap.camera_state, reconnects=snap.camera_reconnects, decode_errors=snap.camera_decode_errors
        ),
        models=list(models),
        uptime_s=snap.uptime_s,
        audit=audit,
        clock_step_s=None if clock_step_s is None else round(clock_step_s, 3),
    )
