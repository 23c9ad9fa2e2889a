"""A counting line: tracks whose bottom-centre anchor crosses it, by direction.

Direction: walking from the left-hand side of ``start -> end`` (as seen on screen) to its right-hand
side counts as **in**; the other way is **out**. Swap start and end to swap them.

Jitter never counts twice. A track's side only changes once its anchor is at least
``min_crossing_px`` past the line (a band either side of the line in which nothing changes), so a
person standing on the line, or a box wobbling across it, counts at most once per real crossing.

Lines near the frame edge still count:
* a track's side is remembered from its very first detection, while it is still tentative; a
  crossing made before the track was confirmed is counted when it is confirmed, so a person who
  enters the frame right at a line is not lost while the tracker warms up;
* the band is narrowed on a side where the frame leaves less room than ``min_crossing_px`` (an
  anchor can never get further past a line than the frame edge).

The crossing point must fall on the segment (with a small tolerance), so walking around the end
of a short line does not count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from appliance.analyze.tracker import Track
from appliance.config.schema import LineConfig
from appliance.geometry import Size, to_pixels
from appliance.vocabulary import LineCounts

# How far beyond either end of the segment (as a fraction of its length) a crossing still counts:
# boxes are a little noisy, and a person brushing the end of a line has still crossed it.
_END_TOLERANCE = 0.05


@dataclass
class _TrackSide:
    side: int  # +1 right-hand ("in" side), -1 left-hand, 0 not yet decided (first seen inside the band)
    last_anchor: np.ndarray
    last_zero_t: Optional[float] = None  # position along the line where the anchor last crossed it
    pending: List[int] = field(default_factory=list)  # +1/-1 crossings made while still tentative


class LineCounter:
    def __init__(self, cfg: LineConfig, frame_size: Size) -> None:
        self.cfg = cfg
        self.name = cfg.name
        a, b = to_pixels([cfg.start, cfg.end], frame_size)
        self.start = a
        d = b - a
        self.length = float(np.hypot(*d))
        if self.length == 0:
            raise ValueError(f"line {cfg.name}: start and end are the same point")
        self.direction = d / self.length
        # Right-hand normal on screen (y points down): rotate the direction by +90 degrees.
        self.normal = np.array([-self.direction[1], self.direction[0]])
        w, h = frame_size
        corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64)
        reach = (corners - a) @ self.normal
        # Half the room the frame leaves on each side, capped at the configured distance.
        self.band_in = min(cfg.min_crossing_px, max(float(reach.max()), 0.0) / 2)
        self.band_out = min(cfg.min_crossing_px, max(float(-reach.min()), 0.0) / 2)
        self._tracks: Dict[int, _TrackSide] = {}

    def signed_distance(self, p: np.ndarray) -> float:
        return float((p - self.start) @ self.normal)

    def _side(self, dist: float) -> int:
        if dist >= self.band_in and dist > 0:
            return 1
        if dist <= -self.band_out and dist < 0:
            return -1
        return 0

    def update(self, tracks: Sequence[Track], ended: Iterable[int] = ()) -> LineCounts:
        """Feed this frame's tracks (tentative ones too). Returns the crossings new this frame."""
        n_in = n_out = 0
        for tid in ended:
            self._tracks.pop(tid, None)
        for tr in tracks:
            if tr.detection_index is None:
                continue  # coasting on a prediction: only real observations move the state
            p = tr.anchor
            dist = self.signed_distance(p)
            state = self._tracks.get(tr.id)
            if state is None:
                self._tracks[tr.id] = _TrackSide(self._side(dist), p)
                continue
            prev_dist = self.signed_distance(state.last_anchor)
            if (prev_dist > 0) != (dist > 0) and prev_dist != dist:
                # Remember where along the line the anchor crossed it (linear interpolation).
                k = prev_dist / (prev_dist - dist)
                crossing = state.last_anchor + k * (p - state.last_anchor)
                state.last_zero_t = float((crossing - self.start) @ self.direction) / self.length
            state.last_anchor = p
            side = self._side(dist)
            if side == 0 or side == state.side:
                continue
            if state.side != 0 and self._on_segment(state.last_zero_t):
                state.pending.append(side)
            state.side = side
        # Count crossings of confirmed tracks; those made while tentative wait for confirmation.
        for tr in tracks:
            state = self._tracks.get(tr.id)
            if tr.confirmed and state is not None and state.pending:
                for s in state.pending:
                    n_in, n_out = (n_in + 1, n_out) if s > 0 else (n_in, n_out + 1)
                state.pending.clear()
        return LineCounts(in_=n_in, out=n_out)

    @staticmethod
    def _on_segment(t: Optional[float]) -> bool:
        return t is not None and -_END_TOLERANCE <= t <= 1 + _END_TOLERANCE
