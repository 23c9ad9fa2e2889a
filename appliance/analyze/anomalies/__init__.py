"""Anomaly detectors: one module and one ``AnomalyDetector`` subclass per anomaly type.

A new anomaly type is one new module plus its entry in ``DETECTOR_TYPES`` (and its name in
``appliance.vocabulary.AnomalyType``, which the published schema lists). Detectors run in this
order on every analysed frame; ``camera_tamper`` comes first because the others pause on its verdict.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple, Type

from appliance.analyze.anomalies.abnormal_motion import AbnormalMotion
from appliance.analyze.anomalies.base import AnomalyDetector, FrameContext, HeldFlag, TrackMotion
from appliance.analyze.anomalies.camera_tamper import CameraTamper
from appliance.analyze.anomalies.counterflow import Counterflow
from appliance.analyze.anomalies.overcrowding import Overcrowding
from appliance.analyze.anomalies.rapid_change import RapidChange
from appliance.config.schema import AnomaliesConfig, ZoneConfig

DETECTOR_TYPES: Tuple[Type[AnomalyDetector], ...] = (
    CameraTamper,
    Overcrowding,
    RapidChange,
    AbnormalMotion,
    Counterflow,
)

__all__ = [
    "DETECTOR_TYPES",
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


def build_detectors(zones: Sequence[ZoneConfig], cfg: AnomaliesConfig) -> List[AnomalyDetector]:
    return [detector for kind in DETECTOR_TYPES for detector in kind.build(zones, cfg)]
