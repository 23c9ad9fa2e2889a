#!/usr/bin/env python3
"""Anomaly clips derived from real footage (vtest.avi), for scripts/evaluate.py or to watch:

    python scripts/make_anomaly_clips.py --out /tmp/anomaly_clips     # writes one .mp4 per clip

Every clip is a list of (source frame, transform) pairs played at 10 fps:

* ``running_*``: a 10 s stretch taking every 3rd frame, so everyone moves 3x faster (abnormal_motion);
* ``counterflow_*``: the clip played forward, then a 20 s stretch played backwards, so everyone
  walks the other way (counterflow against the zone's direction);
* ``tamper_{black,blur,shift}_*``: 10 s of frames blacked out, Gaussian-blurred, or shifted by
  (48, 36) px as if the camera had been knocked (camera_tamper);
* ``gathering_*`` / ``dispersal_*``: 30 s of a quiet (or busy) stretch played back and forth, spliced
  onto a busy (or quiet) one, so the count jumps (rapid_change);
* ``normal`` and ``normal_mirrored``: the clip as it is, and mirrored left-right: the footage on
  which false alarms are counted.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.models.detections import Detections

FPS = 10.0
SHIFT_PX = (48, 36)
BLUR_SIGMA = 8.0
N_FRAMES = 795
QUIET = (400, 490)  # 3-4 people (labelled)
BUSY = (680, 794)  # 7-9 people (labelled)

Step = Tuple[int, Optional[str]]  # (source frame, transform: None, black, blur, shift, mirror)


@dataclass
class ClipSpec:
    name: str
    steps: List[Step]
    expected: Optional[str]  # anomaly type, None for normal footage
    anomaly_s: Tuple[float, float] = (0.0, 0.0)
    grace_s: float = 5.0


@dataclass
class Clip:
    name: str
    images: List[np.ndarray]  # small copies, for the camera checks
    people: List[Detections]
    expected: Optional[str]
    anomaly_s: Tuple[float, float]
    grace_s: float
    steps: List[Step] = field(default_factory=list)

    @property
    def mirrored(self) -> bool:
        return any(t == "mirror" for _, t in self.steps)


def forward(a: int, b: int, t: Optional[str] = None) -> List[Step]:
    return [(i, t) for i in range(a, b)]


def ping_pong(a: int, b: int, n: int) -> List[Step]:
    seq = list(range(a, b)) + list(range(b - 1, a, -1))
    return [(seq[k % len(seq)], None) for k in range(n)]


def specs() -> List[ClipSpec]:
    out = [
        ClipSpec("normal", forward(0, N_FRAMES), None),
        ClipSpec("normal_mirrored", forward(0, N_FRAMES, "mirror"), None),
    ]
    for s in (200, 300, 400):
        fast = [(i, None) for i in range(s, min(s + 300, N_FRAMES), 3)]
        out.append(ClipSpec(f"running_{s}", forward(0, s) + fast + forward(s + 300, N_FRAMES), "abnormal_motion",
                            (s / FPS, (s + len(fast)) / FPS)))
    for s in (400, 600, 794):
        back = [(i, None) for i in range(s, s - 200, -1)]
        out.append(ClipSpec(f"counterflow_{s}", forward(0, s) + back + forward(s - 200, s - 100), "counterflow",
                            (s / FPS, (s + 200) / FPS)))
    for kind in ("black", "blur", "shift"):
        for s in (250, 450, 650):
            steps = forward(0, s) + forward(s, s + 100, kind) + forward(s + 100, N_FRAMES)
            out.append(ClipSpec(f"tamper_{kind}_{s}", steps, "camera_tamper", (s / FPS, (s + 100) / FPS)))
    for name, first, second in (("gathering", QUIET, BUSY), ("dispersal", BUSY, QUIET)):
        for lead_s in (30, 45):
            n = int(lead_s * FPS)
            steps = ping_pong(*first, n) + forward(*second)
            out.append(ClipSpec(f"{name}_{lead_s}", steps, "rapid_change", (lead_s, lead_s + 5)))
    return out


def transform_image(img: np.ndarray, t: Optional[str]) -> np.ndarray:
    """Apply a transform at any resolution (shift and blur scale with the image width)."""
    if t is None:
        return img
    scale = img.shape[1] / 768
    if t == "black":
        return np.zeros_like(img)
    if t == "blur":
        return cv2.GaussianBlur(img, (0, 0), BLUR_SIGMA * scale)
    if t == "shift":
        m = np.float32([[1, 0, SHIFT_PX[0] * scale], [0, 1, SHIFT_PX[1] * scale]])
        return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REFLECT)
    if t == "mirror":
        return np.ascontiguousarray(img[:, ::-1])
    raise ValueError(t)


def transform_people(d: Detections, t: Optional[str], frame_size: Tuple[int, int]) -> Detections:
    """The detector's output on a transformed frame, where it follows from geometry."""
    w, h = frame_size
    if t is None:
        return d
    if t == "black":
        return Detections.empty()
    b = d.boxes.copy()
    if t == "mirror":
        b[:, [0, 2]] = w - d.boxes[:, [2, 0]]
    elif t == "shift":
        dx, dy = SHIFT_PX[0] * w / 768, SHIFT_PX[1] * w / 768  # as transform_image scales it
        b += np.float32([dx, dy, dx, dy])
        b = np.clip(b, 0, [w, h, w, h]).astype(np.float32)
        keep = (b[:, 3] - b[:, 1] > 8) & (b[:, 2] - b[:, 0] > 4)
        return Detections(b[keep], d.scores[keep])
    return Detections(b, d.scores)


def make_clips(
    run: Any,
    threshold: float,
    frames: Iterable[np.ndarray],
    small: Sequence[np.ndarray],
    detector: Any,
    frame_size: Tuple[int, int],
) -> List[Clip]:
    """Build every clip in memory from cached detections (``run.at(i, threshold)``) and small frames.
    Blurred frames are the one case geometry cannot predict: the detector runs on them for real
    (``frames``: the video's frames in order, at the size the detections were made at)."""
    all_specs = specs()
    need_blur = sorted({i for s in all_specs for i, t in s.steps if t == "blur"})
    blurred: dict = {}
    if need_blur:
        wanted = set(need_blur)
        for i, img in enumerate(frames):
            if i in wanted:
                d = detector.detect(transform_image(img, "blur"))
                keep = d.scores >= threshold
                blurred[i] = Detections(d.boxes[keep], d.scores[keep])
    clips = []
    for s in all_specs:
        images = [transform_image(small[i], t) for i, t in s.steps]
        people = [
            blurred[i] if t == "blur" else transform_people(run.at(i, threshold), t, frame_size) for i, t in s.steps
        ]
        clips.append(Clip(s.name, images, people, s.expected, s.anomaly_s, s.grace_s, s.steps))
    return clips


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "vtest.avi"))
    p.add_argument("--out", default="/tmp/anomaly_clips")
    args = p.parse_args()
    cap = cv2.VideoCapture(args.video)
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for s in specs():
        h, w = frames[0].shape[:2]
        writer = cv2.VideoWriter(str(out / f"{s.name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (w, h))
        for i, t in s.steps:
            writer.write(transform_image(frames[i], t))
        writer.release()
        print(f"{s.name}: {len(s.steps) / FPS:.1f}s, anomaly {s.expected or '-'} at {s.anomaly_s}")


if __name__ == "__main__":
    main()
