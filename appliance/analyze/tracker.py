"""Multi-object tracker over person boxes: SORT with ByteTrack's second pass, no appearance features.

* Each track is a constant-velocity Kalman filter on the box (centre, width, height) stepped by the
  real time between frames, so dropped frames and a low frame rate do not break motion estimates.
* Association is one exact minimum-cost assignment (``appliance.analyze.assignment``, the same
  pairs as ``scipy.optimize.linear_sum_assignment`` without importing SciPy) on a cost that
  combines IoU with the centre distance in box heights. The distance term keeps fast movers and
  small, far-away people (whose boxes barely overlap frame to frame) on the same track.
* ByteTrack's idea: detections below ``high_score`` never start a track, but may continue a
  confirmed one, so a partly hidden person keeps their track instead of spawning a new one.
* Birth and death by hit/miss: tentative until ``min_hits`` matches in a row (an unmatched tentative
  track is dropped at once), deleted after ``max_age_s`` unseen.

Tracks exist only in this process's memory, hold boxes and velocities, and are never published.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from appliance.analyze.assignment import linear_sum_assignment
from appliance.config.schema import TrackerConfig
from appliance.models.detections import Detections
from appliance.models.nms import iou_matrix

_INVALID = 1e6

# Noise levels relative to the box height (DeepSORT's scheme), so one set of numbers suits people
# near and far from the camera. Units are per second where a rate is involved.
_STD_MEASUREMENT = 0.05  # detector jitter: about 5% of the height
_STD_POSITION_PROCESS = 0.05  # per sqrt(second)
_STD_VELOCITY_PROCESS = 1.0  # heights/s per sqrt(second): people may start, stop or turn quickly
_STD_VELOCITY_INITIAL = 1.0  # heights/s: a new track's velocity is unknown


class _KalmanBox:
    """State [cx, cy, w, h, vx, vy, vw, vh] in pixels and pixels per second."""

    def __init__(self, box: np.ndarray) -> None:
        cx, cy, w, h = _to_cxcywh(box)
        self.x = np.array([cx, cy, w, h, 0, 0, 0, 0], np.float64)
        s = max(h, 1.0)
        self.P = np.diag(np.square([0.1 * s] * 4 + [_STD_VELOCITY_INITIAL * s] * 4))

    def predict(self, dt: float) -> None:
        dt = max(dt, 1e-3)
        F = np.eye(8)
        F[:4, 4:] = np.eye(4) * dt
        s = max(self.x[3], 1.0)
        q = np.square([_STD_POSITION_PROCESS * s] * 4 + [_STD_VELOCITY_PROCESS * s] * 4) * dt
        self.x = F @ self.x
        self.P = F @ self.P @ F.T + np.diag(q)
        self.x[2:4] = np.maximum(self.x[2:4], 1.0)  # a box never shrinks to nothing while coasting

    def update(self, box: np.ndarray) -> None:
        z = np.array(_to_cxcywh(box), np.float64)
        r = np.square(_STD_MEASUREMENT * max(z[3], 1.0))
        S = self.P[:4, :4] + np.eye(4) * r
        K = self.P[:, :4] @ np.linalg.inv(S)
        self.x = self.x + K @ (z - self.x[:4])
        self.P = self.P - K @ self.P[:4, :]  # (I - K H) P with H = [I 0]

    @property
    def box(self) -> np.ndarray:
        cx, cy, w, h = self.x[:4]
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float64)


def _to_cxcywh(box: np.ndarray) -> Tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, 1.0), max(y2 - y1, 1.0)


@dataclass(frozen=True)
class Track:
    """A snapshot of one track after a frame's update (what lines, zones and detectors read)."""

    id: int
    box: np.ndarray  # filtered [x1, y1, x2, y2], pixels
    velocity: np.ndarray  # of the bottom-centre anchor, pixels per second
    confirmed: bool
    detection_index: Optional[int]  # index into this frame's detections; None while coasting

    @property
    def anchor(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2, self.box[3]])

    @property
    def height_px(self) -> float:
        return float(self.box[3] - self.box[1])


class _TrackState:
    def __init__(self, track_id: int, box: np.ndarray, t: float) -> None:
        self.id = track_id
        self.kf = _KalmanBox(box)
        self.hits = 1
        self.confirmed = False
        self.last_seen = t


class Tracker:
    def __init__(self, cfg: TrackerConfig) -> None:
        self.cfg = cfg
        self._tracks: List[_TrackState] = []
        self._next_id = 1
        self._last_t: Optional[float] = None

    def reset(self) -> List[int]:
        """Forget every track (e.g. after the camera was lost). Returns the ids that ended."""
        ended = [t.id for t in self._tracks]
        self._tracks = []
        self._last_t = None
        return ended

    def update(self, detections: Detections, t: float) -> Tuple[List[Track], List[int]]:
        """Advance to time ``t`` with this frame's detections.

        Returns (live tracks after the update, ids of tracks deleted at this frame).
        """
        dt = 0.1 if self._last_t is None else t - self._last_t
        self._last_t = t
        for tr in self._tracks:
            tr.kf.predict(dt)

        boxes = detections.boxes.astype(np.float64)
        high = np.flatnonzero(detections.scores >= self.cfg.high_score)
        low = np.flatnonzero(detections.scores < self.cfg.high_score)
        matched: dict = {}  # track list index -> detection index

        # Pass 1: every track against the confident detections.
        pairs = self._associate(list(range(len(self._tracks))), high, boxes)
        matched.update(pairs)
        # Pass 2 (ByteTrack): confirmed tracks still unmatched against the weak detections.
        rest = [i for i, tr in enumerate(self._tracks) if i not in matched and tr.confirmed]
        matched.update(self._associate(rest, low, boxes))

        ended: List[int] = []
        survivors: List[_TrackState] = []
        det_of: dict = {}
        for i, tr in enumerate(self._tracks):
            if i in matched:
                tr.kf.update(boxes[matched[i]])
                tr.hits += 1
                tr.last_seen = t
                tr.confirmed = tr.confirmed or tr.hits >= self.cfg.min_hits
                det_of[tr.id] = matched[i]
                survivors.append(tr)
            elif tr.confirmed and t - tr.last_seen <= self.cfg.max_age_s:
                survivors.append(tr)  # coasting on its prediction
            else:
                ended.append(tr.id)
        used = set(matched.values())
        for d in high:
            if int(d) not in used:
                tr = _TrackState(self._next_id, boxes[d], t)
                tr.confirmed = self.cfg.min_hits <= 1
                self._next_id += 1
                det_of[tr.id] = int(d)
                survivors.append(tr)
        self._tracks = survivors
        return [self._snapshot(tr, det_of.get(tr.id)) for tr in survivors], ended

    def _associate(self, track_idx: List[int], det_idx: np.ndarray, boxes: np.ndarray) -> dict:
        if not track_idx or len(det_idx) == 0:
            return {}
        pred = np.stack([self._tracks[i].kf.box for i in track_idx])
        dets = boxes[det_idx]
        iou = iou_matrix(pred, dets)
        pred_c = (pred[:, :2] + pred[:, 2:]) / 2
        det_c = (dets[:, :2] + dets[:, 2:]) / 2
        heights = np.maximum(pred[:, 3] - pred[:, 1], 1.0)[:, None]
        dist = np.linalg.norm(pred_c[:, None, :] - det_c[None, :, :], axis=2) / heights
        # Heights must roughly agree too, or a far person could steal a near one's track.
        h_det = np.maximum(dets[:, 3] - dets[:, 1], 1.0)[None, :]
        h_ratio = np.maximum(heights / h_det, h_det / heights)
        valid = ((iou >= self.cfg.min_iou) | (dist <= self.cfg.max_distance_ratio)) & (h_ratio < 2.0)
        cost = (1.0 - iou) + dist / self.cfg.max_distance_ratio
        cost = np.where(valid, cost, _INVALID)
        rows, cols = linear_sum_assignment(cost)
        return {track_idx[r]: int(det_idx[c]) for r, c in zip(rows, cols) if cost[r, c] < _INVALID}

    @staticmethod
    def _snapshot(tr: _TrackState, det: Optional[int]) -> Track:
        vx, vy, _vw, vh = tr.kf.x[4:]
        # The anchor is the bottom edge: it moves with the centre plus half the height's growth.
        return Track(
            id=tr.id,
            box=tr.kf.box,
            velocity=np.array([vx, vy + vh / 2]),
            confirmed=tr.confirmed,
            detection_index=det,
        )
