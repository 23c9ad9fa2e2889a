"""Builders for the analysis tests: configs, boxes and anonymized frames."""

from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence, Tuple

import numpy as np

from appliance.analyze import Analyzer
from appliance.anonymize.frame import AnonymizedFrame
from appliance.anonymize.testing import anonymized
from appliance.app import build_analyzer
from appliance.config.loader import load_config
from appliance.config.schema import ApplianceConfig
from appliance.models.detections import Detections

W, H = 800, 600
FPS = 10.0


def config(**site: Any) -> ApplianceConfig:
    """The default config with site keys overridden. Anomaly detectors other than the ones a test
    names are switched off so each test speaks about one behaviour."""
    site.setdefault("anomalies", {})
    for name in ("rapid_change", "abnormal_motion", "counterflow", "camera_tamper"):
        site["anomalies"].setdefault(name, {"enabled": False})
    return load_config(overrides=site)


def person_at(x: float, y_feet: float, height: float = 100.0) -> Tuple[float, float, float, float]:
    """A person box whose bottom-centre (feet) is at (x, y_feet) pixels."""
    w = height * 0.4
    return (x - w / 2, y_feet - height, x + w / 2, y_feet)


def detections(boxes: Iterable[Sequence[float]], score: float = 0.9) -> Detections:
    arr = np.asarray(list(boxes), np.float32).reshape(-1, 4)
    return Detections(arr, np.full(len(arr), score, np.float32))


def textured_image(seed: int = 0) -> np.ndarray:
    """A scene with plenty of fixed edges, so the camera checks have something to compare."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 220, size=(H // 20, W // 20, 3), dtype=np.uint8)
    return np.kron(small, np.ones((20, 20, 1), np.uint8))


_SCENE = textured_image()


def frame(
    index: int,
    boxes: Iterable[Sequence[float]] = (),
    *,
    image: Optional[np.ndarray] = None,
    t: Optional[float] = None,
    score: float = 0.9,
) -> AnonymizedFrame:
    return anonymized(
        _SCENE if image is None else image,
        detections(boxes, score),
        index=index,
        timestamp_s=index / FPS if t is None else t,
    )


def analyzer(cfg: ApplianceConfig) -> Analyzer:
    """The analyzer ``appliance run`` builds for this config, on the tests' frame size."""
    return build_analyzer(cfg, (W, H))
