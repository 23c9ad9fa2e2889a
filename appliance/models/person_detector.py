"""SSDLite-MobileNetV2 person detector: BGR frame in, person boxes in frame pixels out.

The ONNX graph ends at the raw box encodings and logits (before TensorFlow's NMS); box decoding,
sigmoid scores and NMS happen here in numpy, so the whole post-processing is in one place.

Small people are the weak spot (40-90 px tall in a 768x576 frame look 15-35 px tall at 300x300),
so two levers are offered: a larger square input (the graph takes any size; the SSD anchors are
regenerated for its feature-map grid), and overlapping tiles run in addition to the full frame.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from appliance.models.detections import Detections
from appliance.models.manifest import ModelEntry
from appliance.models.nms import nms

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

# Tiles overlap by this fraction of the frame side, more than a tall person in a typical view, so
# anyone cut by one tile's edge is whole in the neighbouring tile or in the full frame.
TILE_OVERLAP = 0.2
# A tile detection this close (pixels, frame scale) to an inner tile edge is probably a cut-off
# person and is dropped; the neighbouring tile or the full-frame pass has the whole one.
EDGE_MARGIN_PX = 4.0


# The ONNX graph keeps the explicit paddings tf2onnx computed for TF's SAME padding at 300x300
# (total padding of each stride-2 3x3 conv), so at other sizes the feature maps follow these, not
# TF's SAME rule: e.g. 416 gives grids 26, 13, 6, 3, 2, 1 (TF SAME would give 7 after 13).
_BACKBONE_PADS = (1, 1, 2, 1)  # 300 -> 150 -> 75 -> 38 -> 19: the first (finest) SSD grid
_EXTRA_PADS = (2, 1, 2, 2, 1)  # 19 -> 10 -> 5 -> 3 -> 2 -> 1


def ssd_feature_grids(input_size: int) -> List[int]:
    """Sides of the six SSD feature maps the converted graph produces for a square input."""
    n = input_size
    for pad in _BACKBONE_PADS:
        n = (n + pad - 3) // 2 + 1
    grids = [n]
    for pad in _EXTRA_PADS:
        grids.append((grids[-1] + pad - 3) // 2 + 1)
    return grids


def ssd_anchors(
    input_size: int,
    min_scale: float = 0.2,
    max_scale: float = 0.95,
    aspect_ratios: Sequence[float] = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0),
) -> np.ndarray:
    """TF Object Detection API ``MultipleGridAnchorGenerator`` anchors, ``(A, 4)`` normalized
    ``[ymin, xmin, ymax, xmax]``, in the graph's output order (row, column, anchor).

    Reproduces the anchors frozen in the 300x300 graph (``Concatenate/concat:0``) to 1e-4, which
    the tests check, and extends them to other input sizes.
    """
    grids = ssd_feature_grids(input_size)
    n = len(grids)
    scales = [min_scale + (max_scale - min_scale) * i / (n - 1) for i in range(n)] + [1.0]
    out = []
    for i, g in enumerate(grids):
        if i == 0:  # reduce_boxes_in_lowest_layer: three small anchors on the finest grid
            specs = [(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]
        else:
            specs = [(scales[i], a) for a in aspect_ratios] + [(math.sqrt(scales[i] * scales[i + 1]), 1.0)]
        h = np.asarray([s / math.sqrt(a) for s, a in specs])
        w = np.asarray([s * math.sqrt(a) for s, a in specs])
        c = (np.arange(g) + 0.5) / g
        cy, cx = np.meshgrid(c, c, indexing="ij")
        cy = np.broadcast_to(cy[:, :, None], (g, g, len(specs)))
        cx = np.broadcast_to(cx[:, :, None], (g, g, len(specs)))
        hh = np.broadcast_to(h, cy.shape)
        ww = np.broadcast_to(w, cx.shape)
        out.append(np.stack([cy - hh / 2, cx - ww / 2, cy + hh / 2, cx + ww / 2], -1).reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)


# A band of perspective tiles: (top, bottom) as fractions of the frame height, and how many columns.
Band = Tuple[float, float, int]

# Perspective tiles for a camera looking down at a walkway (the usual mount): people near the top
# of the frame are far away and small, so the top band is cut into three tiles (each seen at 3x
# the full-frame scale) and the middle band into two; near the bottom people are big enough for the
# full frame. (top, bottom) as fractions of the frame height, and columns per band. On vtest.avi's
# 20 labelled frames at score 0.4: count MAE 0.50 against 0.85 for 2x1, same line counts, about 2x
# the detector time; the shipped CPU profiles' default. Other band layouts and bands derived from
# people's heights were no better per millisecond there (docs/analytics.md).
PERSPECTIVE_BANDS: Tuple[Band, ...] = ((0.0, 0.5, 3), (0.3, 0.85, 2))
TILINGS = ("off", "2x1", "2x2", "perspective")


def _spans(side: int, n: int) -> List[Tuple[int, int]]:
    """``n`` overlapping spans covering ``0..side``, each ``TILE_OVERLAP`` of the side longer than
    an even split."""
    if n == 1:
        return [(0, side)]
    length = round(side * (1 + TILE_OVERLAP * (n - 1)) / n)
    step = (side - length) / (n - 1)
    return [(round(k * step), round(k * step) + length) for k in range(n)]


Window = Tuple[int, int, int, int]  # x1, y1, x2, y2 in frame pixels
# One window's boxes (frame pixels, [x1, y1, x2, y2]) and scores, before the frame's NMS.
WindowDetections = Tuple[np.ndarray, np.ndarray]


def band_windows(width: int, height: int, bands: Sequence[Band]) -> List[Window]:
    """The full frame, then each band ``(top, bottom, columns)`` (fractions of the height) cut
    into that many overlapping tiles across the whole width."""
    windows = [(0, 0, width, height)]
    for top, bottom, cols in bands:
        y1, y2 = round(top * height), round(bottom * height)
        windows.extend((x1, y1, x2, y2) for x1, x2 in _spans(width, cols))
    return windows


def tile_windows(width: int, height: int, tiling: str, bands: Optional[Sequence[Band]] = None) -> List[Window]:
    """``(x1, y1, x2, y2)`` crops for the tiling mode; the full frame always comes first.
    ``bands`` replaces ``PERSPECTIVE_BANDS`` for the perspective mode (a site's own layout)."""
    if tiling == "perspective":
        return band_windows(width, height, bands or PERSPECTIVE_BANDS)
    windows = [(0, 0, width, height)]
    cols, rows = {"off": (1, 1), "2x1": (2, 1), "2x2": (2, 2)}[tiling]
    if cols * rows == 1:
        return windows
    for y1, y2 in _spans(height, rows):
        for x1, x2 in _spans(width, cols):
            windows.append((x1, y1, x2, y2))
    return windows


class PersonDetector:
    """Runs one onnxruntime session of a ``task: person`` manifest entry."""

    def __init__(
        self,
        session: InferenceSession,
        entry: ModelEntry,
        anchors_300: Optional[np.ndarray] = None,
        input_size: int = 300,
        tiling: str = "off",
        perspective_bands: Optional[Sequence[Band]] = None,
        score_threshold: Optional[float] = None,
        nms_iou: Optional[float] = None,
        min_box_height_px: float = 0.0,
    ) -> None:
        pp = entry.postprocess
        if entry.task != "person" or pp.kind != "ssd":
            raise ValueError(f"{entry.name} is not an SSD person model")
        if tiling not in TILINGS:
            raise ValueError(f"unknown tiling {tiling!r}")
        self.session = session
        self.entry = entry
        self.input_size = int(input_size)
        self.tiling = tiling
        self.perspective_bands = tuple(perspective_bands) if perspective_bands else None
        self.score_threshold = float(score_threshold or pp.score_threshold)
        self.nms_iou = float(nms_iou or pp.nms_iou)
        self.min_box_height_px = float(min_box_height_px)
        if anchors_300 is not None and self.input_size == 300:
            # The exact anchors exported from the TF graph, where they exist.
            self.anchors = np.asarray(anchors_300, np.float32)
        else:
            self.anchors = ssd_anchors(self.input_size)
        self._variances = np.asarray(pp.box_scale_factors or (10.0, 10.0, 5.0, 5.0), np.float32)
        self._class = int(pp.class_index if pp.class_index is not None else 1)
        self._mean = np.asarray(entry.input.mean, np.float32)
        self._scale = np.asarray(entry.input.scale, np.float32)
        self._input_name = entry.input.name
        self._outputs = list(pp.outputs)
        self._swap_rb = entry.input.color == "RGB"
        # Reused for every window of every frame, one set per thread: the anonymizer runs the
        # windows of one frame on two threads at once (onnxruntime sessions allow concurrent runs).
        self._buffers = threading.local()
        byte_values = np.arange(256, dtype=np.float32)[:, None]
        lut = np.broadcast_to((byte_values - self._mean) * self._scale, (256, 3))
        self._lut = np.ascontiguousarray(lut, np.float32).reshape(1, 256, 3)

    @property
    def name(self) -> str:
        return self.entry.name

    def preprocess(self, image_bgr: np.ndarray) -> np.ndarray:
        """Square resize, RGB, NHWC float32 ``(x - mean) * scale``, into a reused buffer.

        The colour swap happens on uint8 with OpenCV before the float conversion: a reversed numpy
        view converted to float took 14 ms per call instead of 0.4. The arithmetic is
        the same as ``(rgb.astype(float32) - mean) * scale``, which the tests check. The returned
        array is overwritten by the next call.
        """
        s = self.input_size
        buf = self._thread_buffers()
        cv2.resize(image_bgr, (s, s), dst=buf.resized, interpolation=cv2.INTER_LINEAR)
        img = buf.resized
        if self._swap_rb:
            cv2.cvtColor(buf.resized, cv2.COLOR_BGR2RGB, dst=buf.rgb)
            img = buf.rgb
        # (x - mean) * scale for each of the 256 byte values per channel, looked up: 0.3 ms a
        # window instead of 1.4 for numpy's mixed uint8/float32 arithmetic, the same numbers.
        cv2.LUT(img, self._lut, dst=buf.blob[0])
        return buf.blob

    def _thread_buffers(self) -> Any:
        buf = self._buffers
        if not hasattr(buf, "blob"):
            s = self.input_size
            buf.resized = np.empty((s, s, 3), np.uint8)
            buf.rgb = np.empty((s, s, 3), np.uint8)
            buf.blob = np.empty((1, s, s, 3), np.float32)
        return buf

    def _detect_window(self, image_bgr: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Boxes normalized to the given image (0..1, ``[x1, y1, x2, y2]``) and scores, before NMS."""
        enc, logits = self.session.run(self._outputs, {self._input_name: self.preprocess(image_bgr)})
        enc = enc.reshape(-1, 4)
        if enc.shape[0] != self.anchors.shape[0]:
            raise RuntimeError(f"{self.name}: graph gave {enc.shape[0]} boxes for {self.anchors.shape[0]} anchors")
        scores = 1.0 / (1.0 + np.exp(-logits.reshape(enc.shape[0], -1)[:, self._class]))
        keep = scores > self.score_threshold
        if not keep.any():
            return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
        a = self.anchors[keep]
        ty, tx, th, tw = (enc[keep] / self._variances).T
        ha, wa = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
        yc, xc = ty * ha + (a[:, 0] + a[:, 2]) / 2, tx * wa + (a[:, 1] + a[:, 3]) / 2
        h, w = np.exp(th) * ha, np.exp(tw) * wa
        boxes = np.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], axis=1)
        return np.clip(boxes, 0.0, 1.0).astype(np.float32), scores[keep].astype(np.float32)

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 BGR frame, got shape {frame_bgr.shape}")
        fh, fw = frame_bgr.shape[:2]
        return self.detect_in_windows(frame_bgr, self.windows(fw, fh))

    def windows(self, width: int, height: int) -> List[Window]:
        """The crops ``detect`` runs on a frame of this size."""
        return tile_windows(width, height, self.tiling, self.perspective_bands)

    def detect_in_windows(self, frame_bgr: np.ndarray, windows: Sequence[Window]) -> Detections:
        """Run every window (the full frame first, then tiles) and merge them by NMS; tile
        detections cut by an inner tile edge are dropped first. ``detect`` uses the tiling mode's
        windows; scripts/evaluate_tile_layouts.py compares other layouts through this."""
        fh, fw = frame_bgr.shape[:2]
        if not windows or tuple(windows[0]) != (0, 0, fw, fh):
            raise ValueError("the first window must be the full frame")
        return self.merge([self.detect_window(frame_bgr, w) for w in windows])

    def detect_window(self, frame_bgr: np.ndarray, window: Window) -> WindowDetections:
        """One window's boxes in frame pixels, before NMS; a tile's detections cut by an edge inside
        the frame are dropped (the full frame has no such edge). Safe to call from several threads."""
        fh, fw = frame_bgr.shape[:2]
        x1, y1, x2, y2 = window
        boxes, scores = self._detect_window(frame_bgr[y1:y2, x1:x2])
        boxes = boxes * np.asarray([x2 - x1, y2 - y1, x2 - x1, y2 - y1], np.float32)
        boxes += np.asarray([x1, y1, x1, y1], np.float32)
        if len(boxes):
            boxes, scores = _drop_cut_at_inner_edges(boxes, scores, (x1, y1, x2, y2), fw, fh)
        return boxes, scores

    def merge(self, parts: Sequence[WindowDetections]) -> Detections:
        """The windows' detections of one frame as one set: too-short boxes dropped, then NMS."""
        boxes = np.concatenate([b for b, _ in parts])
        scores = np.concatenate([s for _, s in parts])
        tall = (boxes[:, 3] - boxes[:, 1]) >= self.min_box_height_px
        boxes, scores = boxes[tall], scores[tall]
        keep = nms(boxes, scores, self.nms_iou)
        return Detections(boxes[keep], scores[keep])


def _drop_cut_at_inner_edges(
    boxes: np.ndarray, scores: np.ndarray, window: Tuple[int, int, int, int], fw: int, fh: int
) -> Tuple[np.ndarray, np.ndarray]:
    x1, y1, x2, y2 = window
    m = EDGE_MARGIN_PX
    cut = np.zeros(len(boxes), bool)
    # Only edges inside the frame cut people; a tile edge on the frame border is a real border.
    if x1 > 0:
        cut |= boxes[:, 0] <= x1 + m
    if x2 < fw:
        cut |= boxes[:, 2] >= x2 - m
    if y1 > 0:
        cut |= boxes[:, 1] <= y1 + m
    if y2 < fh:
        cut |= boxes[:, 3] >= y2 - m
    return boxes[~cut], scores[~cut]
