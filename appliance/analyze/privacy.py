"""Small-count protection of a window's aggregates, applied before anything is published.

* **Suppression** (``min_count`` = k): a zone that held between 1 and k-1 people at most, a line
  direction crossed by 1 to k-1 people, and dwell statistics of fewer than k visits are published
  as ``suppressed`` with null figures, never as a silent zero. Zero is published: it says nobody
  was there, which singles nobody out. The frame total stays exact unless ``protect_total``.
* **Noise** (``noise_epsilon`` = ε): Laplace noise of scale 1/ε (the sensitivity of a count to one
  person is 1) is added to every released zone count and line count, then rounded and made
  consistent (min <= mean <= max, nothing negative), which is post-processing and keeps the
  guarantee. Each released value spends ε; the counts message declares both settings.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from appliance.config.schema import PrivacyConfig
from appliance.vocabulary import CountStats, LineCounts, PrivacyApplied, ZoneStats


class WindowPrivacy:
    def __init__(self, cfg: PrivacyConfig, rng: Optional[np.random.Generator] = None) -> None:
        self.cfg = cfg
        self.rng = rng or np.random.default_rng()
        self.applied = PrivacyApplied(min_count=cfg.min_count, noise_epsilon=cfg.noise_epsilon)

    def _small(self, n: float) -> bool:
        return 0 < n < self.cfg.min_count

    def _noisy(self, value: float) -> float:
        if self.cfg.noise_epsilon is None:
            return value
        return max(0.0, value + float(self.rng.laplace(0.0, 1.0 / self.cfg.noise_epsilon)))

    def zone(self, stats: ZoneStats, visits: int, area_m2: Optional[float]) -> ZoneStats:
        assert stats.min is not None and stats.mean is not None and stats.max is not None and stats.last is not None
        if self._small(stats.max):
            return ZoneStats(min=None, mean=None, max=None, last=None, suppressed=True)
        dwell: Dict[str, Optional[float]] = {"dwell_mean_s": stats.dwell_mean_s, "dwell_p90_s": stats.dwell_p90_s}
        if self.cfg.min_count and visits < self.cfg.min_count:
            dwell = {"dwell_mean_s": None, "dwell_p90_s": None}
        if self.cfg.noise_epsilon is None:
            return stats.model_copy(update=dwell)
        lo, hi = sorted((round(self._noisy(stats.min)), round(self._noisy(stats.max))))
        mean = min(max(round(self._noisy(stats.mean), 3), lo), hi)
        last = min(max(round(self._noisy(stats.last)), lo), hi)
        density = round(mean / area_m2, 4) if area_m2 else None  # the area is public, the mean is noisy
        return ZoneStats(min=lo, mean=mean, max=hi, last=last, density_per_m2=density, **dwell)

    def total(self, stats: Optional[CountStats]) -> Tuple[Optional[CountStats], PrivacyApplied]:
        """The window's total and the declaration: exact unless ``protect_total`` and few people."""
        if stats is not None and self.cfg.protect_total and self._small(stats.max):
            return None, self.applied.model_copy(update={"total_suppressed": True})
        return stats, self.applied

    def line(self, counts: LineCounts) -> LineCounts:
        n_in, n_out = counts.in_ or 0, counts.out or 0
        if self._small(n_in) or self._small(n_out):
            return LineCounts(in_=None, out=None, suppressed=True)
        return LineCounts(in_=round(self._noisy(n_in)), out=round(self._noisy(n_out)))
