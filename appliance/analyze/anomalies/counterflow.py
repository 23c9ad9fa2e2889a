"""``counterflow``: a share of a zone's moving tracks going against the zone's configured direction.

Only zones with ``flow_direction_deg`` are checked (0 = right, 90 = down, image coordinates). A
track moves against the flow when its direction is more than ``against_angle_deg`` away from it;
tracks slower than ``min_speed_heights_per_s`` (standing, box jitter) are left out of both counts.
Raised when at least ``min_tracks`` tracks and at least ``min_share`` of the moving ones go against.
Both are counted over the last second (distinct tracks), because a single frame's handful of tracks,
some just born with no velocity yet, would make the share flicker and the hold restart.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Deque, List, Sequence, Set, Tuple

import numpy as np

from appliance.analyze.anomalies.base import AnomalyDetector, FrameContext, HeldFlag
from appliance.analyze.results import AnomalyEvent
from appliance.config.schema import AnomaliesConfig, CounterflowConfig, ZoneConfig

_SMOOTH_S = 1.0


class Counterflow(AnomalyDetector):
    @classmethod
    def build(cls, zones: Sequence[ZoneConfig], cfg: AnomaliesConfig) -> List[AnomalyDetector]:
        if not cfg.counterflow.enabled:
            return []
        return [cls(cfg.counterflow, z) for z in zones if z.flow_direction_deg is not None]

    def __init__(self, cfg: CounterflowConfig, zone: ZoneConfig) -> None:
        if zone.flow_direction_deg is None:
            raise ValueError(f"zone {zone.name} has no flow_direction_deg")
        self.cfg = cfg
        self.zone = zone.name
        rad = math.radians(zone.flow_direction_deg)
        self.flow = np.array([math.cos(rad), math.sin(rad)])
        self._cos_against = math.cos(math.radians(cfg.against_angle_deg))
        self.flag = HeldFlag("counterflow", zone.name, cfg.hold_s, cfg.hold_s)
        self._recent: Deque[Tuple[float, Set[int], Set[int]]] = deque()  # (t, moving ids, against ids)

    def update(self, ctx: FrameContext) -> List[AnomalyEvent]:
        if not ctx.camera_ok:
            return []
        t = ctx.timestamp_s
        moving_now = {
            m.track_id: m
            for m in ctx.zone_tracks.get(self.zone, [])
            if m.speed_heights_per_s >= self.cfg.min_speed_heights_per_s
        }
        against_now = {
            tid
            for tid, m in moving_now.items()
            if float(m.velocity @ self.flow) / max(float(np.hypot(*m.velocity)), 1e-9) < self._cos_against
        }
        self._recent.append((t, set(moving_now), against_now))
        while self._recent and self._recent[0][0] <= t - _SMOOTH_S:
            self._recent.popleft()
        moving_ids: Set[int] = set().union(*(r[1] for r in self._recent))
        against_ids: Set[int] = set().union(*(r[2] for r in self._recent))
        moving, against = len(moving_ids), len(against_ids)
        share = against / moving if moving else 0.0
        above = against >= self.cfg.min_tracks and share >= self.cfg.min_share
        below = against < self.cfg.min_tracks or share < self.cfg.min_share * self.cfg.clear_hysteresis_ratio
        reason = (
            f"{against} of {moving} moving tracks in zone {self.zone} against its direction "
            f"(share {share:.2f}, limit {self.cfg.min_share:g} and ≥ {self.cfg.min_tracks} tracks)"
        )
        event = self.flag.update(
            t, above=above, below=below, value=share, threshold=self.cfg.min_share, reason=reason
        )
        return [event] if event else []
