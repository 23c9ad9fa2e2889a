"""systemd's notification protocol (sd_notify(3)): one datagram per message to ``$NOTIFY_SOCKET``.

The protocol is small enough to speak directly (no C library, works on every board): the
socket is a Unix datagram socket named by ``NOTIFY_SOCKET``, a path or, when it starts with
``@``, a name in Linux's abstract namespace. Each datagram holds newline-separated
``KEY=VALUE`` assignments such as ``READY=1`` or ``WATCHDOG=1``.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Mapping, Optional

log = logging.getLogger(__name__)


def notify_address(env: Mapping[str, str]) -> Optional[str]:
    """The socket address from ``NOTIFY_SOCKET``, abstract names with a leading NUL; None when unset."""
    name = env.get("NOTIFY_SOCKET", "")
    if not name:
        return None
    if name.startswith("@"):
        return "\0" + name[1:]
    if name.startswith("/"):
        return name
    # vsock addresses (vsock:CID:PORT) are for VMs talking to their host; not a device's case.
    log.warning("NOTIFY_SOCKET=%s is not a Unix socket path; systemd notifications disabled", name)
    return None


def watchdog_interval_s(env: Mapping[str, str], pid: Optional[int] = None) -> Optional[float]:
    """systemd's ``WatchdogSec=`` as passed in ``WATCHDOG_USEC``, or None when it is not for us.

    ``WATCHDOG_PID``, when set, names the process the watchdog is meant for (sd_watchdog_enabled(3)).
    """
    usec = env.get("WATCHDOG_USEC", "")
    if not usec:
        return None
    expected_pid = env.get("WATCHDOG_PID", "")
    if expected_pid and expected_pid != str(os.getpid() if pid is None else pid):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not an integer; ignored", usec)
        return None
    return value / 1e6 if value > 0 else None


class SystemdNotifier:
    """Sends notifications to systemd, or does nothing when not started by systemd (no socket)."""

    def __init__(self, env: Optional[Mapping[str, str]] = None) -> None:
        env = os.environ if env is None else env
        self.address = notify_address(env)
        self._sock: Optional[socket.socket] = None
        if self.address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram; False (logged once per failure) when it could not."""
        if self._sock is None or self.address is None:
            return False
        try:
            self._sock.sendto("\n".join(assignments).encode(), self.address)
        except OSError as exc:
            # systemd gone (e.g. during shutdown): the next message may succeed; never crash the loop.
            log.warning("sd_notify %s to %s failed: %s", assignments[0], self.address.lstrip("\0"), exc)
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
