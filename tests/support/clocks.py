"""Clocks a test sets by hand."""

from __future__ import annotations

from appliance.publish.clock import Clock


class SteppedClock(Clock):
    """The device's clocks set by hand: time since boot only advances, the wall clock may step."""

    def __init__(self, wall_s: float = 1_700_000_000.0, boot_id: str = "boot-a") -> None:
        self.wall_s = wall_s
        self.since_boot_s = 100.0
        super().__init__(wall=lambda: self.wall_s, since_boot=lambda: self.since_boot_s, boot_id=boot_id)

    def advance(self, seconds: float) -> None:
        self.wall_s += seconds
        self.since_boot_s += seconds
