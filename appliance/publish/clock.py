"""Time for the publish stage: wall time labels messages, ages come from a clock that does not jump.

A board without a real-time clock boots in 1970 and NTP steps its clock forward decades once the
network is up. Ages measured on the wall clock would then make a minutes-old backlog look
decades old (and drop it as past ``outbox.max_age_s``). So each stored row carries a
:class:`Stamp`: the wall time (a label), the kernel's boot id and the time since boot
(``CLOCK_BOOTTIME``: steady, counts suspend), and whether the wall clock looked set. An age is
measured on the time since boot when the row was stored during this boot, on the wall clock only
when both ends were set, and is unknown otherwise (such a row is never aged out; the byte cap
still bounds the outbox).

"Set" is judged by the wall clock being later than :data:`SYNCED_AFTER`, a date before this
software existed: an unset clock on a board without RTC starts in 1970. A clock that is merely
wrong (a stale fake-hwclock) cannot be told apart from a correct one here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

# 2024-01-01T00:00:00Z. Any wall clock before this has not been set since boot.
SYNCED_AFTER = 1_704_067_200.0

_BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class Stamp:
    """When a row was stored, in terms that survive a wall-clock step."""

    wall: float  # unix time: a label, trusted for ages only when ``synced``
    boot: str  # the kernel's boot id ("" when unknown: ages then fall back on the wall clock)
    since_boot_s: float  # CLOCK_BOOTTIME at storing
    synced: bool  # the wall clock was set when the row was stored


def _since_boot() -> float:
    clock = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)
    return time.clock_gettime(clock)


def kernel_boot_id() -> str:
    try:
        return _BOOT_ID_FILE.read_text(encoding="ascii").strip()
    except OSError:
        return ""


class Clock:
    """Wall time, time since boot and the boot id; injectable so tests can step the wall clock."""

    def __init__(
        self,
        *,
        wall: Callable[[], float] = time.time,
        since_boot: Callable[[], float] = _since_boot,
        boot_id: Optional[str] = None,
    ) -> None:
        self._wall = wall
        self._since_boot = since_boot
        self.boot_id = kernel_boot_id() if boot_id is None else boot_id

    def wall(self) -> float:
        return self._wall()

    def synced(self) -> bool:
        return self._wall() >= SYNCED_AFTER

    def now(self) -> Stamp:
        wall = self._wall()
        return Stamp(wall, self.boot_id, self._since_boot(), wall >= SYNCED_AFTER)

    def age_s(self, stamp: Stamp) -> Optional[float]:
        """Seconds since ``stamp``, or None when no clock can vouch for it."""
        if stamp.boot and stamp.boot == self.boot_id:
            return max(0.0, self._since_boot() - stamp.since_boot_s)
        if stamp.synced and self.synced():
            return max(0.0, self._wall() - stamp.wall)
        return None
