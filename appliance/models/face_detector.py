"""CenterFace face detector: BGR frame in, face boxes + 5 landmarks in frame pixels out.

All of CenterFace's pre- and post-processing lives here (the constants come from the manifest).
The decoder is a vectorized version of deface 1.5.0's ``CenterFace.decode``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence, Tuple

import cv2
import numpy as np

from appliance.models.detections import Detections
from appliance.models.manifest import ModelEntry
from appliance.models.nms import nms

# Every frame is framed by a mirrored border of this fraction of its longer side before detection:
# a face cut by the frame edge then reads as a whole face (its mirror image completes it) and is
# found; without it CenterFace missed a real half face at a portrait's edge entirely.
# Measured on portrait crops cut through the face: best score 0.84-0.90 with this border against
# 0-0.89 with a constant one and none found at all without any; all 16 Megamind faces still found.
EDGE_PAD_RATIO = 0.05

if TYPE_CHECKING:
    from onnxruntime import InferenceSession


class FaceDetector:
    """Runs one onnxruntime session of a ``task: face`` manifest entry."""

    def __init__(
        self,
        session: InferenceSession,
        entry: ModelEntry,
        input_size: Tuple[int, int] = (640, 480),
        score_threshold: Optional[float] = None,
        edge_pad_ratio: float = EDGE_PAD_RATIO,
    ) -> None:
        if entry.task != "face" or entry.postprocess.kind != "centerface":
            raise ValueError(f"{entry.name} is not a CenterFace face model")
        multiple = entry.input.size_multiple
        width, height = input_size
        if width % multiple or height % multiple:
            raise ValueError(f"face input size {width}x{height} must be a multiple of {multiple}")
        self.session = session
        self.entry = entry
        self.input_size = (int(width), int(height))
        self.score_threshold = float(score_threshold or entry.postprocess.score_threshold)
        self._mean = np.asarray(entry.input.mean, np.float32).reshape(1, 3, 1, 1)
        self._scale = np.asarray(entry.input.scale, np.float32).reshape(1, 3, 1, 1)
        self._normalize = bool(np.any(self._mean != 0) or np.any(self._scale != 1))
        # Plane order of the blob: channel c of the graph input comes from BGR channel _planes[c].
        self._planes: Sequence[int] = (2, 1, 0) if entry.input.color == "RGB" else (0, 1, 2)
        # Reused every frame (one detector serves one thread at a time): no per-frame allocation.
        self._resized = np.empty((self.input_size[1], self.input_size[0], 3), np.uint8)
        self._blob = np.empty((1, 3, self.input_size[1], self.input_size[0]), np.float32)
        self._input_name = entry.input.name
        self._outputs = list(entry.postprocess.outputs)
        self._stride = int(entry.postprocess.stride or 4)
        self.edge_pad_ratio = float(edge_pad_ratio)
        self._padded = np.empty((0, 0, 3), np.uint8)

    @property
    def name(self) -> str:
        return self.entry.name

    def preprocess(self, frame_bgr: np.ndarray) -> np.ndarray:
        """Resize to the detector size (aspect not kept, undone in post), RGB, NCHW float32.

        The same numbers as ``(rgb.transpose(2, 0, 1).astype(float32) - mean) * scale``, written
        plane by plane into a reused buffer: the colour swap is the choice of source plane, not a
        reversed view that would push numpy onto its slow strided path (tests check both agree).
        The returned array is overwritten by the next call.
        """
        cv2.resize(frame_bgr, self.input_size, dst=self._resized, interpolation=cv2.INTER_LINEAR)
        for c, src in enumerate(self._planes):
            np.copyto(self._blob[0, c], self._resized[:, :, src], casting="unsafe")
        if self._normalize:  # CenterFace's own constants (mean 0, scale 1) skip this
            np.subtract(self._blob, self._mean, out=self._blob)
            np.multiply(self._blob, self._scale, out=self._blob)
        return self._blob

    def padding(self, width: int, height: int) -> Tuple[int, int, int, int]:
        """(left, top, right, bottom) border for a frame: the mirrored edge border, then enough more
        on two sides to give the detector input's aspect ratio, so the resize never squashes a
        face (a portrait photo squeezed into 640x480 hid faces from the model too)."""
        edge = round(self.edge_pad_ratio * max(width, height))
        w, h = width + 2 * edge, height + 2 * edge
        in_w, in_h = self.input_size
        extra_x = max(0, round(h * in_w / in_h) - w)
        extra_y = max(0, round(w * in_h / in_w) - h)
        return edge + extra_x // 2, edge + extra_y // 2, edge + extra_x - extra_x // 2, edge + extra_y - extra_y // 2

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 BGR frame, got shape {frame_bgr.shape}")
        fh, fw = frame_bgr.shape[:2]
        left, top, right, bottom = self.padding(fw, fh)
        shape = (fh + top + bottom, fw + left + right, 3)
        if self._padded.shape != shape:  # once per frame size, not per frame
            self._padded = np.empty(shape, np.uint8)
        cv2.copyMakeBorder(frame_bgr, top, bottom, left, right, cv2.BORDER_REFLECT_101, dst=self._padded)
        ph, pw = shape[:2]
        heat, scale, offset, lms = self.session.run(
            self._outputs, {self._input_name: self.preprocess(self._padded)}
        )
        dets = self.decode(heat, scale, offset, lms)
        w, h = self.input_size
        sx, sy = pw / w, ph / h
        boxes = dets.boxes * np.asarray([sx, sy, sx, sy], np.float32) - np.asarray([left, top, left, top], np.float32)
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, fw)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, fh)
        landmarks = None
        if dets.landmarks is not None:
            landmarks = dets.landmarks * np.asarray([sx, sy], np.float32) - np.asarray([left, top], np.float32)
        # A face wholly inside the mirrored border is a reflection of one in the frame: drop it.
        inside = ((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)
        return Detections(
            boxes[inside].astype(np.float32),
            dets.scores[inside],
            None if landmarks is None else landmarks[inside].astype(np.float32),
        )

    def decode(
        self, heat: np.ndarray, scale: np.ndarray, offset: np.ndarray, lms: np.ndarray
    ) -> Detections:
        """Heatmap peaks above the threshold -> boxes and landmarks in detector-input pixels."""
        s = self._stride
        w, h = self.input_size
        heat = heat[0, 0]
        rows, cols = np.nonzero(heat > self.score_threshold)
        if rows.size == 0:
            return Detections(landmarks=np.zeros((0, 5, 2), np.float32))
        scores = heat[rows, cols].astype(np.float32)
        bh = np.exp(scale[0, 0, rows, cols]) * s
        bw = np.exp(scale[0, 1, rows, cols]) * s
        cy = (rows + offset[0, 0, rows, cols] + 0.5) * s
        cx = (cols + offset[0, 1, rows, cols] + 0.5) * s
        x1 = np.clip(cx - bw / 2, 0, w)
        y1 = np.clip(cy - bh / 2, 0, h)
        x2 = np.minimum(x1 + bw, w)
        y2 = np.minimum(y1 + bh, h)
        boxes = np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)
        # Landmark channels are (y0, x0, y1, x1, ...) relative to the box's top-left, in box units.
        lm = lms[0][:, rows, cols].T.reshape(-1, 5, 2)
        landmarks = np.stack([lm[:, :, 1] * bw[:, None] + x1[:, None], lm[:, :, 0] * bh[:, None] + y1[:, None]], 2)
        keep = nms(boxes, scores, self.entry.postprocess.nms_iou)
        return Detections(boxes[keep], scores[keep], landmarks[keep].astype(np.float32))
