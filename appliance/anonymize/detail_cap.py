"""The detail cap: the first step of anonymizing, before any detector or blur.

The frame is shrunk by the factor of the device's detail plan (``appliance.detail_level.DetailPlan``,
fixed at start from the ground plane) with area averaging, then enlarged back to the working size
by repeating pixels. The detail above the cap is gone for good at the first step; the second adds
none back (any enlargement is a function of the small frame alone) and keeps every later stage's
geometry as it was (zones, lines and the ground plane are fractions of the frame, but pixel
thresholds such as ``detection.min_box_height_px`` and ``lines.*.min_crossing_px``, the analyzer's
frame size and the preview are in working pixels, and none of them needs to know about the cap).

Pixels are repeated rather than interpolated because the person detector counts better on them: on
vtest.avi at a 62.5 px/m cap, count MAE 1.35 with nearest, 1.8 to 1.95 with lanczos, cubic or linear
(scripts/evaluate_detail_cap.py, docs/analytics.md).
"""

from __future__ import annotations

import cv2
import numpy as np

from appliance.detail_level import DetailPlan


def reduce_detail(image: np.ndarray, plan: DetailPlan) -> None:
    """Limit ``image`` (H, W, 3) to the plan's fraction of its resolution, in place."""
    if plan.factor >= 1.0:
        return
    h, w = image.shape[:2]
    small = cv2.resize(image, plan.reduced_size((w, h)), interpolation=cv2.INTER_AREA)
    image[...] = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
