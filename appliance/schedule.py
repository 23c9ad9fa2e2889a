"""When a counts window closes and a health message is due: one small object, one clock rule.

The clock is the source's: each frame's own timestamp (the media clock for files, so a clip
analysed faster than real time still gives ``interval_s`` windows of video; the monotonic clock for
live sources, also when one delivers nothing). Neither runs back, so a wall clock that steps
never stretches, shortens or stops a window: wall time only labels them (``appliance.report``).
Windows are ``[start, end)``: the frame that reaches a boundary opens the next window. The final
window ends after its last frame (``finish``), so every frame lies in exactly one window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Union


@dataclass(frozen=True)
class WindowDue:
    start_s: float
    end_s: float


@dataclass(frozen=True)
class HealthDue:
    at_s: float


Due = Union[WindowDue, HealthDue]


class Schedule:
    def __init__(self, interval_s: float, health_interval_s: float) -> None:
        self.interval_s = interval_s
        self.health_interval_s = health_interval_s
        self.window_start: Optional[float] = None
        self._next_health: Optional[float] = None
        self._end: Optional[float] = None  # where the last event observed ends

    def advance(self, now_s: float, duration_s: float = 0.0) -> List[Due]:
        """An event at ``now_s`` lasting ``duration_s`` (a frame's period; 0 for a lost source)
        is about to be processed: what falls due before it."""
        due: List[Due] = []
        if self.window_start is None or self._next_health is None:
            self.window_start = now_s
            self._next_health = now_s + self.health_interval_s
        if now_s - self.window_start >= self.interval_s:
            due.append(WindowDue(self.window_start, now_s))
            self.window_start = now_s
        if now_s >= self._next_health:
            due.append(HealthDue(now_s))
            self._next_health = now_s + self.health_interval_s
        self._end = now_s + duration_s
        return due

    def finish(self) -> Optional[WindowDue]:
        """The last, partial window (None if nothing was ever observed)."""
        if self.window_start is None or self._end is None:
            return None
        return WindowDue(self.window_start, self._end)
