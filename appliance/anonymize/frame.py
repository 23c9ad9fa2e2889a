"""The anonymized frame: the only image type the analysis stage will accept.

It can only be made by the anonymizer (the constructor demands a module-private token), so a
raw frame cannot reach analysis, preview or any writer by accident: the type system and a
runtime check both stand in the way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from appliance.models.detections import Detections

_ANONYMIZER_TOKEN = object()


@dataclass(frozen=True)
class AnonymizedFrame:
    index: int
    timestamp_s: float
    image: np.ndarray  # BGR uint8; every detected face and (by default) every person's head blurred
    people: Detections  # people found while anonymizing (boxes only, never pixels)
    faces_blurred: int
    heads_blurred: int
    _token: object = None

    def __post_init__(self) -> None:
        if self._token is not _ANONYMIZER_TOKEN:
            raise TypeError("AnonymizedFrame can only be created by appliance.anonymize.Anonymizer")
