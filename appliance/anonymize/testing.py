"""A supported way to make an ``AnonymizedFrame`` from an image and people known in advance.

Tests of analysis (and replays of labelled frames) need frames with given person boxes. They get
them through the real ``Anonymizer``, driven by a detector that returns the known boxes, so the
token rule of ``AnonymizedFrame`` stays absolute: no code path outside the anonymizer makes one.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from appliance.anonymize.anonymizer import Anonymizer
from appliance.anonymize.frame import AnonymizedFrame
from appliance.capture.frame import RawFrame
from appliance.config.schema import AnonymizeConfig
from appliance.models.detections import Detections

# Analysis tests want their scene untouched: no head blur, nothing remembered between frames.
SCENE_UNTOUCHED = AnonymizeConfig(head_blur=False, persist_frames=0)


class KnownDetections:
    """A detector that finds exactly the detections it was given."""

    def __init__(self, detections: Optional[Detections] = None) -> None:
        self.detections = detections if detections is not None else Detections.empty()

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        return self.detections


def anonymized(
    image: np.ndarray,
    people: Detections,
    *,
    index: int = 0,
    timestamp_s: float = 0.0,
    faces: Optional[Detections] = None,
    cfg: AnonymizeConfig = SCENE_UNTOUCHED,
) -> AnonymizedFrame:
    """What the real anonymizer makes of a copy of ``image`` when its detectors find ``faces``
    (none by default) and ``people``."""
    # Known detections take no time: no worker thread to run them side by side.
    anonymizer = Anonymizer(KnownDetections(faces), KnownDetections(people), cfg, concurrent=False)
    return anonymizer.process(RawFrame(index, timestamp_s, image.copy()))
