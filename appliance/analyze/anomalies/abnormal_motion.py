"""``abnormal_motion``: people running, or a stampede.

Per frame the statistic is a quantile (``quantile``, default the 75th percentile) of confirmed
tracks' speeds in body heights per second, smoothed by a one-second median. Normalising by the
person's height makes a walker near the camera and one far away comparable. The flag raises when
the statistic exceeds both ``speed_ratio`` times the scene's learned baseline and the absolute floor
``min_speed_heights_per_s``. The baseline is the median statistic over ``baseline_s`` of frames that
were not themselves above the threshold (so an incident does not teach the detector that running is
normal); until ``warmup_s`` of it exists, ``default_baseline_heights_per_s`` stands in.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, List, Sequence, Tuple

import numpy as np

from appliance.analyze.anomalies.base import AnomalyDetector, FrameContext, HeldFlag
from appliance.analyze.results import AnomalyEvent
from appliance.config.schema import AbnormalMotionConfig, AnomaliesConfig, ZoneConfig

_SMOOTH_S = 1.0


class AbnormalMotion(AnomalyDetector):
    @classmethod
    def build(cls, zones: Sequence[ZoneConfig], cfg: AnomaliesConfig) -> List[AnomalyDetector]:
        return [cls(cfg.abnormal_motion)] if cfg.abnormal_motion.enabled else []

    def __init__(self, cfg: AbnormalMotionConfig) -> None:
        self.cfg = cfg
        self.flag = HeldFlag("abnormal_motion", None, cfg.hold_s, cfg.hold_s)
        self._recent: Deque[Tuple[float, float]] = deque()
        self._history: Deque[Tuple[float, float]] = deque()

    def baseline(self) -> float:
        if self._history and self._history[-1][0] - self._history[0][0] >= self.cfg.warmup_s:
            return float(np.median([s for _, s in self._history]))
        return self.cfg.default_baseline_heights_per_s

    def update(self, ctx: FrameContext) -> List[AnomalyEvent]:
        if not ctx.camera_ok:
            return []
        t = ctx.timestamp_s
        speeds = [m.speed_heights_per_s for m in ctx.tracks]
        if len(speeds) < self.cfg.min_tracks:
            self._recent.clear()
            stat = 0.0  # too few people to judge: nobody is stampeding
        else:
            self._recent.append((t, float(np.quantile(speeds, self.cfg.quantile))))
            while self._recent and self._recent[0][0] <= t - _SMOOTH_S:
                self._recent.popleft()
            stat = float(np.median([s for _, s in self._recent]))
        baseline = self.baseline()
        threshold = max(self.cfg.speed_ratio * baseline, self.cfg.min_speed_heights_per_s)
        if len(speeds) >= self.cfg.min_tracks and stat <= threshold:
            self._history.append((t, stat))
            while self._history and self._history[0][0] < t - self.cfg.baseline_s:
                self._history.popleft()
        above = stat > threshold
        below = stat < threshold * self.cfg.clear_hysteresis_ratio
        if self.flag.raised:
            reason = f"track speed {stat:.2f} heights/s fell below {threshold * self.cfg.clear_hysteresis_ratio:.2f}"
        else:
            reason = (
                f"p{self.cfg.quantile * 100:.0f} track speed {stat:.2f} heights/s above {threshold:.2f} "
                f"({self.cfg.speed_ratio:g}x scene baseline {baseline:.2f}, floor {self.cfg.min_speed_heights_per_s:g})"
            )
        event = self.flag.update(
            t, above=above, below=below, value=stat, threshold=threshold, baseline=baseline, reason=reason
        )
        return [event] if event else []
