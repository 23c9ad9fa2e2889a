"""Turns what analysis and health produce into the typed messages the publish stage accepts.

The one place where in-memory results become wire messages. The value types are shared
(``appliance.vocabulary``), so this only adds what the wire needs: UTC datetimes instead of
seconds, and the narrow message classes that the egress policy accepts.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional, Sequence

from appliance.analyze import AnomalyEvent, WindowSummary
from appliance.audit import PublishedHead
from appliance.health import HealthSnapshot
from appliance.publish import (
    AnomalyMessage,
    AuditHead,
    CameraHealth,
    CountsMessage,
    FrameCounters,
    HealthMessage,
    LatencyStats,
    LostChain,
)
from appliance.vocabulary import ModelInfo


def utc(timestamp_s: float) -> datetime:
    return datetime.fromtimestamp(timestamp_s, tz=timezone.utc)


def counts_message(summary: WindowSummary) -> CountsMessage:
    return CountsMessage(
        window_start=utc(summary.window_start),
        window_end=utc(summary.window_end),
        frames_analyzed=summary.frames_analyzed,
        frames_dropped=summary.frames_dropped,
        total=summary.total,
        zones=summary.zones,
        lines=summary.lines,
        heatmap=summary.heatmap,
        camera_ok=summary.camera_ok,
        privacy=summary.privacy,
    )


def anomaly_message(event: AnomalyEvent) -> AnomalyMessage:
    return AnomalyMessage(
        type=event.type,
        event_id=event.event_id,
        zone=event.zone,
        state=event.state,
        value=float(event.value),
        threshold=None if event.threshold is None else float(event.threshold),
        baseline=None if event.baseline is None else float(event.baseline),
        since=utc(event.since),
        severity=event.severity,
        reason=event.reason[:160],
    )


def audit_head(head: PublishedHead) -> AuditHead:
    lost = None if head.reset_from is None else LostChain(length=head.reset_from[0], sha256=head.reset_from[1])
    return AuditHead(
        length=head.length,
        sha256=head.sha256,
        sig=head.sig,
        problem=head.problem,
        unacknowledged=head.unacknowledged,
        reset=lost,
    )


def health_message(
    snap: HealthSnapshot, models: Sequence[ModelInfo], audit: Optional[AuditHead] = None
) -> HealthMessage:
    # Evidence that cannot be written, or a log repaired or lost and not yet acknowledged, is a
    # degraded device: counting goes on, the control room sees it.
    audit_trouble = audit is not None and (audit.problem is not None or audit.unacknowledged > 0)
    return HealthMessage(
        state="degraded" if audit_trouble and snap.state == "ok" else snap.state,
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
    )
