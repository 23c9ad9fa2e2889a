"""Is the system clock synchronised, and has it stepped? Counts windows are timestamped, so a
device whose clock is off reports them at the wrong time.

The kernel knows: an NTP client that disciplines the clock (systemd-timesyncd, chrony, ntpd)
clears ``STA_UNSYNC`` in the kernel's clock status, which anyone may read with ``adjtimex(2)``
(``timedatectl``'s "System clock synchronized" is the same bit). Where that call is not
available, ``timedatectl`` is asked; otherwise the answer is unknown.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Callable, Optional

log = logging.getLogger(__name__)

STA_UNSYNC = 0x0040
TIME_ERROR = 5


class _Timex(ctypes.Structure):
    # The leading fields of struct timex (linux/timex.h); the rest is room the kernel writes into.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("_rest", ctypes.c_byte * 256),
    ]


@dataclass
class ClockState:
    synced: Optional[bool]  # None: cannot tell
    detail: str


def judge_kernel_clock(state: int, status: int, maxerror_us: int) -> ClockState:
    if state == TIME_ERROR or status & STA_UNSYNC:
        return ClockState(False, f"kernel clock not synchronised (adjtimex status 0x{status:x})")
    return ClockState(True, f"kernel clock synchronised by NTP (max error {maxerror_us / 1000:.0f} ms)")


def kernel_clock() -> Optional[ClockState]:
    """From adjtimex(2) in read-only mode; None where libc has no adjtimex (not Linux)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        adjtimex = libc.adjtimex
    except (OSError, AttributeError):
        return None
    tx = _Timex()
    tx.modes = 0  # read only
    state = adjtimex(ctypes.byref(tx))
    if state < 0:
        return None
    return judge_kernel_clock(state, tx.status, tx.maxerror)


def timedatectl_clock() -> Optional[ClockState]:
    exe = shutil.which("timedatectl")
    if exe is None:
        return None
    try:
        proc = subprocess.run(
            [exe, "show", "--property=NTPSynchronized", "--value"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = proc.stdout.strip()
    if proc.returncode != 0 or value not in ("yes", "no"):
        return None
    return ClockState(value == "yes", f"timedatectl: NTPSynchronized={value}")


def clock_state() -> ClockState:
    return kernel_clock() or timedatectl_clock() or ClockState(None, "cannot tell (no adjtimex, no timedatectl)")


# NTP slews the wall clock by at most 500 ppm; a larger change of wall minus monotonic between two
# readings is a step. Never less than this many seconds, so scheduling jitter is never one.
STEP_MIN_S = 1.0
SLEW_MAX = 0.0005


class WallClock:
    """Wall time for labels, and the steps it takes.

    Windows, ages, durations and timeouts run on the monotonic clock, which never jumps; wall time
    only labels them. A monotonic instant ``t`` is labelled ``t + offset_s()``: wall minus monotonic
    as read now, so labels follow the wall clock after a step while every duration stays right.
    A change of that offset beyond what NTP slewing can do is a step (NTP's first sync, an
    RTC-less board that booted in 1970, ``date -s``, a resume from suspend): logged once, and
    handed to the next health message by :meth:`take_step_s`. One thread (the run's) reads it.
    """

    def __init__(
        self,
        wall: Optional[Callable[[], float]] = None,
        monotonic: Optional[Callable[[], float]] = None,
    ) -> None:
        # Looked up at each call, not bound now: whoever replaces time.time (a test) is seen.
        self._wall = wall or (lambda: time.time())
        self._monotonic = monotonic or (lambda: time.monotonic())
        self._offset: Optional[float] = None
        self._read_at: Optional[float] = None
        self._step: Optional[float] = None

    def offset_s(self) -> float:
        """Seconds to add to a monotonic instant to label it with wall time."""
        mono = self._monotonic()
        offset = self._wall() - mono
        if self._offset is not None and self._read_at is not None:
            change = offset - self._offset
            if abs(change) > max(STEP_MIN_S, SLEW_MAX * (mono - self._read_at)):
                self._step = change
                log.warning(
                    "wall clock stepped %+.1f s; windows, durations and timeouts are unaffected (monotonic clock), "
                    "labels follow the new time",
                    change,
                )
        self._offset, self._read_at = offset, mono
        return offset

    def take_step_s(self) -> Optional[float]:
        """The last step detected since the previous call (seconds, negative: back), or None."""
        self.offset_s()
        step, self._step = self._step, None
        return step
