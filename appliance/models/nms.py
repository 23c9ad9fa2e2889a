"""Box helpers shared by the detectors and the model build script: IoU and greedy NMS in numpy.

Kept free of onnxruntime and OpenCV so that the build script's evaluation stage and the tests can
reuse exactly the post-processing the appliance runs.
"""

from __future__ import annotations

from typing import List, Set, Tuple

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``a`` (N, 4) and ``b`` (M, 4), both ``[x1, y1, x2, y2]``; returns (N, M).

    The one IoU of the project (detectors, NMS, tracker). Computed in float32 unless a caller
    passes float64 boxes (the tracker's Kalman boxes), which then keep their precision.
    """
    dtype = np.result_type(np.asarray(a).dtype, np.asarray(b).dtype, np.float32)
    if dtype != np.float64:
        dtype = np.dtype(np.float32)
    a = np.asarray(a, dtype).reshape(-1, 4)
    b = np.asarray(b, dtype).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    # An empty union only happens for two degenerate boxes; call that no overlap instead of NaN.
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(dtype)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_out: int = 0) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best score first.

    A box is dropped when its IoU with an already kept, higher-scoring box is above
    ``iou_threshold``. Ties in score keep the earlier box (stable sort) so results are reproducible.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if max_out and len(keep) >= max_out:
            break
        rest = order[1:]
        if not rest.size:
            break
        overlap = iou_matrix(boxes[i : i + 1], boxes[rest])[0]
        order = rest[overlap <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def match_pairs(
    reference: np.ndarray, candidate: np.ndarray, iou_threshold: float = 0.5
) -> List[Tuple[int, int, float]]:
    """Greedy one-to-one pairs ``(reference index, candidate index, IoU)`` at IoU >= ``iou_threshold``,
    best pairs first, so one poor early match cannot steal a candidate from a better one."""
    if len(reference) == 0 or len(candidate) == 0:
        return []
    ious = iou_matrix(reference, candidate)
    pairs: List[Tuple[int, int, float]] = []
    used_r: Set[int] = set()
    used_c: Set[int] = set()
    for flat in np.argsort(-ious, axis=None, kind="stable"):
        r, c = (int(v) for v in np.unravel_index(flat, ious.shape))
        if ious[r, c] < iou_threshold:
            break
        if r in used_r or c in used_c:
            continue
        used_r.add(r)
        used_c.add(c)
        pairs.append((r, c, float(ious[r, c])))
    return pairs


def match_detections(reference: np.ndarray, candidate: np.ndarray, iou_threshold: float = 0.5) -> np.ndarray:
    """The IoU of each matched pair of :func:`match_pairs` (length = matched reference boxes). Used
    to measure how many fp32 detections an int8 model keeps."""
    return np.asarray([iou for _, _, iou in match_pairs(reference, candidate, iou_threshold)], np.float32)
