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
    timestamp_s: float  # wall clock (time.time()) when the frame was captured
    image: np.ndarray  # BGR uint8 (H, W, 3), already resized to the working resolution
