"""Anomaly detectors, one module each, built from the config.

A new anomaly type is one new module with a class that has ``update(ctx: FrameContext) -> list of
AnomalyEvent`` (see ``base.py``), plus one line in ``build_detectors``. ``camera_tamper`` is wired by
the analyzer itself because every other detector depends on its verdict.
"""

from __future__ import annotations

from typing import List

from appliance.analyze.anomalies.abnormal_motion import AbnormalMotion
from appliance.analyze.anomalies.base import AnomalyDetector, FrameContext, HeldFlag, TrackMotion
from appliance.analyze.anomalies.camera_tamper import CameraTamper
from appliance.analyze.anomalies.counterflow import Counterflow
from appliance.analyze.anomalies.overcrowding import Overcrowding
from appliance.analyze.anomalies.rapid_change import RapidChange
from appliance.config.schema import ApplianceConfig

__all__ = [
    "AbnormalMotion",
    "AnomalyDetector",
    "CameraTamper",
    "Counterflow",
    "FrameContext",
    "HeldFlag",
    "Overcrowding",
    "RapidChange",
    "TrackMotion",
    "build_detectors",
]


def build_detectors(cfg: ApplianceConfig) -> List[AnomalyDetector]:
    a = cfg.anomalies
    detectors: List[AnomalyDetector] = [Overcrowding(z) for z in cfg.zones if Overcrowding.applies_to(z)]
    if a.rapid_change.enabled:
        detectors.append(RapidChange(a.rapid_change))
    if a.abnormal_motion.enabled:
        detectors.append(AbnormalMotion(a.abnormal_motion))
    if a.counterflow.enabled:
        detectors.extend(Counterflow(a.counterflow, z) for z in cfg.zones if z.flow_direction_deg is not None)
    return detectors
