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
    # Seconds on the source's clock, which never runs back. Live: the monotonic clock
    # (time.monotonic()) when the frame was captured, so a wall clock step cannot stretch or stop a
    # window; the run labels it with wall time when it publishes. Files: the media clock (wall time
    # at the start of the run + position / fps), so windows are spans of video.
    timestamp_s: float
    image: np.ndarray  # BGR uint8 (H, W, 3), already resized to the working resolution
