"""``overcrowding``: a zone's occupancy (or density) above its configured limit for ``hold_s``."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from appliance.analyze.anomalies.base import AnomalyDetector, FrameContext, HeldFlag
from appliance.analyze.results import AnomalyEvent
from appliance.config.schema import AnomaliesConfig, ZoneConfig
from appliance.vocabulary import Severity

# At or beyond this multiple of the limit the event is critical rather than a warning.
CRITICAL_RATIO = 1.5


class Overcrowding(AnomalyDetector):
    """One per zone that has ``max_people`` and/or ``max_density_per_m2``; either limit can trip it."""

    def __init__(self, zone: ZoneConfig) -> None:
        self.zone = zone
        self.flag = HeldFlag("overcrowding", zone.name, zone.hold_s, zone.hold_s)

    @classmethod
    def build(cls, zones: Sequence[ZoneConfig], cfg: AnomaliesConfig) -> List[AnomalyDetector]:
        return [cls(z) for z in zones if z.max_people is not None or z.max_density_per_m2 is not None]

    def _worst(self, count: int, density: Optional[float]) -> Tuple[float, float, Optional[float], str]:
        """(ratio to limit, value, limit, unit) of whichever configured limit is closest to breaking."""
        options: List[Tuple[float, float, Optional[float], str]] = []
        if self.zone.max_people is not None:
            # A limit of 0 means "nobody allowed": any person is over it.
            limit = float(self.zone.max_people)
            options.append((count / limit if limit else (float("inf") if count else 0.0), count, limit, "people"))
        if self.zone.max_density_per_m2 is not None and density is not None:
            limit = self.zone.max_density_per_m2
            options.append((density / limit, density, limit, "people/m²"))
        return max(options, key=lambda o: o[0]) if options else (0.0, count, None, "people")

    def update(self, ctx: FrameContext) -> List[AnomalyEvent]:
        count = ctx.zone_counts.get(self.zone.name, 0)
        ratio, value, limit, unit = self._worst(count, ctx.zone_densities.get(self.zone.name))
        if limit is None:
            return []
        # "Above the limit": occupancy strictly greater than max_people (max_people itself is allowed).
        above = ratio > 1.0
        below = ratio < self.zone.clear_hysteresis_ratio
        severity: Severity = "critical" if ratio >= CRITICAL_RATIO else "warning"
        if self.flag.raised:
            reason = f"{unit} in zone {self.zone.name} fell below {limit * self.zone.clear_hysteresis_ratio:g}"
        else:
            reason = f"{unit} in zone {self.zone.name} above the limit {limit:g}"
        event = self.flag.update(
            ctx.timestamp_s, above=above, below=below, value=value, threshold=limit, reason=reason, severity=severity
        )
        return [event] if event else []
