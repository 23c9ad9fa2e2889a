"""Is the system clock synchronised? Counts windows are timestamped, so a device whose clock is
off reports them at the wrong time.

The kernel knows: an NTP client that disciplines the clock (systemd-timesyncd, chrony, ntpd)
clears ``STA_UNSYNC`` in the kernel's clock status, which anyone may read with ``adjtimex(2)``
(``timedatectl``'s "System clock synchronized" is the same bit). Where that call is not
available, ``timedatectl`` is asked; otherwise the answer is unknown.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import subprocess
from dataclasses import dataclass
from typing import Optional

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
