"""Turns what analysis and health produce into the typed messages the publish stage accepts.

The one place where in-memory results become wire messages: only aggregates are copied across.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import List

from appliance.analyze import AnomalyEvent, WindowSummary
from appliance.health import HealthSnapshot
from appliance.publish import (
    AnomalyMessage,
    CameraHealth,
    CountsMessage,
    CountStats,
    FrameCounters,
    HealthMessage,
    Heatmap,
    LatencyStats,
    LineCounts,
    ModelInfo,
    ZoneStats,
)


def utc(timestamp_s: float) -> datetime:
    return datetime.fromtimestamp(timestamp_s, tz=timezone.utc)


def counts_message(summary: WindowSummary) -> CountsMessage:
    total = summary.total
    heatmap = None
    if summary.heatmap is not None:
        h = summary.heatmap
        heatmap = Heatmap(
            rows=h.rows, cols=h.cols, cells=[list(h.cells[r * h.cols : (r + 1) * h.cols]) for r in range(h.rows)]
        )
    return CountsMessage(
        window_start=utc(summary.window_start),
        window_end=utc(summary.window_end),
        frames_analyzed=summary.frames_analyzed,
        frames_dropped=summary.frames_dropped,
        total=None if total is None else CountStats(min=total.min, mean=total.mean, max=total.max, last=total.last),
        zones={
            name: ZoneStats(
                min=z.min,
                mean=z.mean,
                max=z.max,
                last=z.last,
                density_per_m2=z.density_per_m2,
                dwell_mean_s=z.dwell_mean_s,
                dwell_p90_s=z.dwell_p90_s,
            )
            for name, z in summary.zones.items()
        },
        lines={name: LineCounts(**{"in": c["in"], "out": c["out"]}) for name, c in summary.lines.items()},
        heatmap=heatmap,
        camera_ok=summary.camera_ok,
    )


def anomaly_message(event: AnomalyEvent) -> AnomalyMessage:
    return AnomalyMessage(
        type=event.type,
        zone=event.zone,
        state=event.state,
        value=float(event.value),
        threshold=None if event.threshold is None else float(event.threshold),
        baseline=None if event.baseline is None else float(event.baseline),
        since=utc(event.since),
        severity=event.severity,
        reason=event.reason[:160],
    )


def health_message(snap: HealthSnapshot, models: List[ModelInfo]) -> HealthMessage:
    camera_state = snap.camera_state if snap.camera_state in ("ok", "lost", "reconnecting") else "ok"
    return HealthMessage(
        state=snap.state,
        fps=snap.fps,
        latency_ms={s: LatencyStats(p50=v.p50_ms, p95=v.p95_ms) for s, v in snap.stage_latency_ms.items()},
        frames=FrameCounters(
            captured=snap.frames_captured, analyzed=snap.frames_analyzed, dropped=dict(snap.frames_dropped)
        ),
        camera=CameraHealth(state=camera_state, reconnects=snap.camera_reconnects),
        models=list(models),
        uptime_s=snap.uptime_s,
    )
