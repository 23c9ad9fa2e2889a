"""``rapid_change``: sudden gathering or dispersal of the whole scene.

The current level (median count over ``short_s``) is compared with a rolling baseline (median and
MAD of the count over the ``baseline_s`` before it). The robust z-score
``(level - median) / max(1.4826 * MAD, min_scale)`` must pass ``z_threshold`` *and* the level
must differ by at least ``min_change`` people, for ``hold_s``. Medians make one missed or doubled
detection irrelevant; the people floor keeps a near-constant baseline (MAD = 0) from turning a
change of one person into an alarm. A median cannot be set by a streak shorter than half its
window, so the level's window (4 s by default) outlasts the detector's miss streaks (up to about
2 s on real footage): a few people missed for a moment never set it. The baseline keeps rolling,
so a lasting new level becomes normal after about half of ``baseline_s`` and the flag clears: this
flag is about *sudden* change.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, List, Sequence, Tuple

import numpy as np

from appliance.analyze.anomalies.base import AnomalyDetector, FrameContext, HeldFlag
from appliance.analyze.results import AnomalyEvent
from appliance.config.schema import AnomaliesConfig, RapidChangeConfig, ZoneConfig


class RapidChange(AnomalyDetector):
    @classmethod
    def build(cls, zones: Sequence[ZoneConfig], cfg: AnomaliesConfig) -> List[AnomalyDetector]:
        return [cls(cfg.rapid_change)] if cfg.rapid_change.enabled else []

    def __init__(self, cfg: RapidChangeConfig) -> None:
        self.cfg = cfg
        self.flag = HeldFlag("rapid_change", None, cfg.hold_s, cfg.hold_s)
        self._samples: Deque[Tuple[float, int]] = deque()
        self._first_t: float = float("nan")

    def update(self, ctx: FrameContext) -> List[AnomalyEvent]:
        if not ctx.camera_ok:
            return []  # a covered camera reads as "nobody": that is camera_tamper's business
        t = ctx.timestamp_s
        if not self._samples:
            self._first_t = t
        self._samples.append((t, ctx.count))
        horizon = t - self.cfg.short_s - self.cfg.baseline_s
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()
        if t - self._first_t < self.cfg.short_s + self.cfg.warmup_s:
            return []
        split = t - self.cfg.short_s
        recent = [c for ts, c in self._samples if ts > split]
        base = np.array([c for ts, c in self._samples if ts <= split], np.float64)
        if not recent or len(base) == 0:
            return []
        level = float(np.median(recent))
        median = float(np.median(base))
        scale = max(1.4826 * float(np.median(np.abs(base - median))), self.cfg.min_scale)
        change = level - median
        z = change / scale
        above = abs(z) >= self.cfg.z_threshold and abs(change) >= self.cfg.min_change
        below = abs(z) < self.cfg.z_threshold * self.cfg.clear_hysteresis_ratio
        kind = "gathering" if change > 0 else "dispersal"
        if self.flag.raised:
            z_clear = self.cfg.z_threshold * self.cfg.clear_hysteresis_ratio
            reason = f"count {level:g} back within robust z {z_clear:g} of rolling baseline {median:g}"
        else:
            reason = (
                f"{kind}: count {level:g} vs rolling baseline {median:g} "
                f"(z={z:+.1f}, limit ±{self.cfg.z_threshold:g}, change ≥ {self.cfg.min_change:g})"
            )
        event = self.flag.update(
            t, above=above, below=below, value=level, threshold=self.cfg.z_threshold, baseline=median, reason=reason
        )
        return [event] if event else []
