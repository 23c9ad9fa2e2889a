"""Analyze stage: counts, zones, lines, dwell, density, heatmap and anomaly flags.

Takes ``AnonymizedFrame`` only (the people in it were found while anonymizing). Produces per-frame
``FrameAnalysis`` (in memory) and per-window ``WindowSummary`` and ``AnomalyEvent`` (published).
See docs/analytics.md.
"""

from appliance.analyze.analyzer import Analyzer
from appliance.analyze.results import (
    AnomalyEvent,
    CountStats,
    FrameAnalysis,
    Heatmap,
    WindowSummary,
    ZoneStats,
)

__all__ = ["Analyzer", "AnomalyEvent", "CountStats", "FrameAnalysis", "Heatmap", "WindowSummary", "ZoneStats"]
