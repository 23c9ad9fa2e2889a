"""Where faces are blurred: pixel operations that hide image regions, in place.

Three methods, all destructive and irreversible at the resolution they leave:

* ``gaussian`` (default): the region is shrunk to a few pixels across, blurred and scaled back.
  That removes every detail finer than about an eighth of the face, which an independent face
  detector can no longer find (see tests/test_anonymize.py). A plain small-kernel blur would not.
* ``pixelate``: coarse blocks. Offered because some operators ask for it, but large pixelated
  faces are still re-detected by face models, so it is not the default.
* ``fill``: solid black.

``shape="ellipse"`` hides an ellipse inscribed in each box (a face's own shape, less of the
scene lost); ``"box"`` hides the whole rectangle. A box that reaches the frame's edge is always
hidden whole: it was clipped there, and an ellipse inscribed in the clipped box would leave the
cut face's corners along the edge sharp (up to 12 % of an edge-cut face, scripts/face_agreement.py).
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

Method = Literal["gaussian", "pixelate", "fill"]
Shape = Literal["ellipse", "box"]

# The region is reduced to at most this many pixels across before smoothing: the information
# left in a hidden face is bounded by this number, whatever the face's size.
_GAUSSIAN_CELLS = 6
_PIXELATE_CELLS = 8


def expand_boxes(boxes: np.ndarray, margin_ratio: float, width: int, height: int) -> np.ndarray:
    """Grow ``(N, 4)`` xyxy boxes by ``margin_ratio`` of their size on every side, clipped to the frame."""
    if len(boxes) == 0:
        return np.zeros((0, 4), np.int32)
    b = boxes.astype(np.float32)
    w = b[:, 2] - b[:, 0]
    h = b[:, 3] - b[:, 1]
    dx, dy = w * margin_ratio, h * margin_ratio
    grown = np.stack([b[:, 0] - dx, b[:, 1] - dy, b[:, 2] + dx, b[:, 3] + dy], axis=1)
    grown[:, [0, 2]] = np.clip(grown[:, [0, 2]], 0, width)
    grown[:, [1, 3]] = np.clip(grown[:, [1, 3]], 0, height)
    # Floor the top-left and ceil the bottom-right so rounding never shrinks a region.
    out = np.concatenate([np.floor(grown[:, :2]), np.ceil(grown[:, 2:])], axis=1).astype(np.int32)
    return out


# Two boxes are hidden as one when their common bounding box is at most this much larger than the
# bigger of the two: the same head over a few frames (a few pixels apart) merges, two people's heads
# side by side (twice the area) do not.
MERGE_MAX_GROWTH = 1.3


def merge_overlapping(boxes: np.ndarray, max_growth: float = MERGE_MAX_GROWTH) -> np.ndarray:
    """Replace groups of mostly-coincident ``[x1, y1, x2, y2]`` integer boxes by their bounding box.

    Every input box lies inside one output box, so hiding the output (as rectangles) hides at
    least every input pixel, and a bigger region is hidden more coarsely, never less. Boxes inside
    another are always absorbed. Deterministic: largest boxes first, then input order.
    """
    boxes = np.asarray(boxes).reshape(-1, 4)
    if len(boxes) < 2:
        return boxes
    area = (boxes[:, 2] - boxes[:, 0]).astype(np.int64) * (boxes[:, 3] - boxes[:, 1])
    merged: list = []
    for i in np.argsort(-area, kind="stable"):
        b = boxes[i]
        a = int(area[i])
        for k, (m, m_area) in enumerate(merged):
            u = np.array([min(m[0], b[0]), min(m[1], b[1]), max(m[2], b[2]), max(m[3], b[3])])
            u_area = int(u[2] - u[0]) * int(u[3] - u[1])
            if u_area <= max_growth * max(m_area, a):
                merged[k] = (u, u_area)
                break
        else:
            merged.append((b.copy(), a))
    return np.stack([m for m, _ in merged]).astype(boxes.dtype)


def _hidden(roi: np.ndarray, method: Method) -> np.ndarray:
    h, w = roi.shape[:2]
    if method == "fill":
        return np.zeros_like(roi)
    cells = _GAUSSIAN_CELLS if method == "gaussian" else _PIXELATE_CELLS
    scale = cells / max(h, w)
    small_w, small_h = max(1, round(w * scale)), max(1, round(h * scale))
    small = cv2.resize(roi, (small_w, small_h), interpolation=cv2.INTER_AREA)
    if method == "pixelate":
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    small = cv2.GaussianBlur(small, (3, 3), 0)
    smooth = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    # A second pass at full size removes the faint grid that bilinear upscaling leaves.
    k = max(3, (min(h, w) // 4) | 1)
    return cv2.GaussianBlur(smooth, (k, k), 0)


def hide_regions(image: np.ndarray, boxes: np.ndarray, method: Method = "gaussian", shape: Shape = "ellipse") -> int:
    """Hide every ``[x1, y1, x2, y2]`` integer box of ``image`` in place. Returns how many were hidden."""
    hidden = 0
    for x1, y1, x2, y2 in boxes:
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue
        roi = image[y1:y2, x1:x2]
        replacement = _hidden(roi, method)
        at_edge = x1 <= 0 or y1 <= 0 or x2 >= image.shape[1] or y2 >= image.shape[0]
        if shape == "ellipse" and not at_edge and min(x2 - x1, y2 - y1) >= 3:
            mask = np.zeros(roi.shape[:2], np.uint8)
            center = ((x2 - x1) // 2, (y2 - y1) // 2)
            cv2.ellipse(mask, center, ((x2 - x1) // 2, (y2 - y1) // 2), 0, 0, 360, 255, thickness=-1)
            np.copyto(roi, replacement, where=mask[:, :, None].astype(bool))
        else:
            roi[...] = replacement
        hidden += 1
    return hidden
