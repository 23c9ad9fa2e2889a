"""Dwell time per zone: how long tracked people stay, reported only as window statistics.

A visit starts when a confirmed track's anchor is first seen inside the zone and ends when it has
been outside for ``exit_grace_s`` (so a box wobbling on the border is one visit, not many) or the
track ends. A window reports the visits that ended in it plus those still in progress at its end
(with their duration so far), so a long stay shows up while it is happening. Per-person durations
never leave this object: only the mean and 90th percentile do.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np


class DwellTimer:
    def __init__(self, exit_grace_s: float) -> None:
        self.exit_grace_s = exit_grace_s
        self._visits: Dict[int, Tuple[float, float]] = {}  # track id -> (entered, last seen inside)
        self._finished: List[float] = []

    def update(self, t: float, inside_ids: Iterable[int], ended: Iterable[int]) -> None:
        """``inside_ids``: confirmed tracks observed inside the zone now; ``ended``: tracks deleted now."""
        inside = set(inside_ids)
        for tid in inside:
            entered, _ = self._visits.get(tid, (t, t))
            self._visits[tid] = (entered, t)
        gone = set(ended)
        for tid, (entered, last_in) in list(self._visits.items()):
            if tid in gone or (tid not in inside and t - last_in >= self.exit_grace_s):
                # The source clock never runs back; max() keeps a bug upstream from ever
                # publishing a negative duration (which the payload schema refuses).
                self._finished.append(max(0.0, last_in - entered))
                del self._visits[tid]

    def visits(self) -> int:
        """Visits the next ``close_window`` reports on (ended in the window, or still in progress)."""
        return len(self._finished) + len(self._visits)

    def close_window(self, t_end: float) -> Tuple[Optional[float], Optional[float]]:
        """(mean, p90) in seconds over visits ended in the window and those still in progress."""
        dwells = self._finished + [max(0.0, last_in - entered) for entered, last_in in self._visits.values()]
        self._finished = []
        if not dwells:
            return None, None
        arr = np.asarray(dwells, np.float64)
        return round(float(arr.mean()), 2), round(float(np.percentile(arr, 90)), 2)
