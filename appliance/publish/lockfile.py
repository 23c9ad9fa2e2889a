"""An exclusive, advisory lock on a file, held for the life of the process that took it.

Two appliance processes on one outbox (the same device id started twice, or two configs pointing
at one file) would fight over the broker's client id and interleave each other's seqs. The outbox
takes this lock first; the second process is refused with :class:`AlreadyRunning` (exit code 3).
``flock`` locks go away with the process, so a ``kill -9`` or a power cut never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from appliance.errors import AlreadyRunning


class FileLock:
    """``flock(LOCK_EX | LOCK_NB)`` on ``path``; the holder's pid is written into it for the error."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self._fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(self._fd)
            os.close(self._fd)
            by = f" (pid {holder})" if holder else ""
            raise AlreadyRunning(f"{what} is in use by another appliance process{by}; refusing to start") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = -1


def _read_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
