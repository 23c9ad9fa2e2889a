"""What a capture source yields: one raw (not yet anonymized) frame.

A ``RawFrame`` may contain faces. The only consumer allowed to take one is the anonymizer
(``appliance.anonymize.Anonymizer``); every later stage accepts ``AnonymizedFrame`` only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RawFrame:
    index: int  # 0-based position in the source (frames the source itself skipped are not counted)
    # Seconds since the epoch: wall clock (time.time()) when a live frame was captured; for files,
    # the media clock (start of the run + position / fps), so windows are spans of video.
    timestamp_s: float
    image: np.ndarray  # BGR uint8 (H, W, 3), already resized to the working resolution
