"""Turns what analysis produces into the typed messages the publish stage accepts.

The one place where analysis results become wire messages (the health monitor builds its own,
``appliance.health.monitor``). The value types are shared
(``appliance.vocabulary``), so this only adds what the wire needs: UTC datetimes instead of
seconds, and the narrow message classes that the egress policy accepts.

Times in results are on the source's clock; ``offset_s`` turns them into wall time (0 for a
file's media clock, wall minus monotonic for a live source's), read once per message so both ends
of a window get the same label offset and the window keeps its length.
"""

from __future__ import annotations

from datetime import datetime, timezone

from appliance.analyze import AnomalyEvent, WindowSummary
from appliance.audit import PublishedHead
from appliance.publish import AnomalyMessage, AuditHead, CountsMessage, LostChain


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
