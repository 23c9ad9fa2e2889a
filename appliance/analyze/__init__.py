"""Analyze stage: counts, zones, lines, dwell, density, heatmap and anomaly flags.

Takes ``AnonymizedFrame`` only (the people in it were found while anonymizing). Produces per-frame
``FrameAnalysis`` (in memory) and per-window ``WindowSummary`` and ``AnomalyEvent`` (published),
built from the shared value types of ``appliance.vocabulary``. See docs/analytics.md.
"""

from appliance.analyze.analyzer import Analyzer
from appliance.analyze.results import AnomalyEvent, FrameAnalysis, WindowSummary

__all__ = ["Analyzer", "AnomalyEvent", "FrameAnalysis", "WindowSummary"]
