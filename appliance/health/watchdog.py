"""The main loop's watchdog: systemd's (``WatchdogSec=``) when there is one, our own otherwise.

Liveness is proven only by the main loop calling :meth:`Watchdog.progress`; nothing else pings.
A side thread that pinged on a timer would keep a hung loop alive forever (and the MQTT thread
would keep the connection up, so the broker would never publish the last will).

* Under systemd with ``WatchdogSec=`` (``WATCHDOG_USEC`` set): ``progress()`` sends ``WATCHDOG=1``
  at most every half interval; when the loop hangs the pings stop and systemd kills and restarts
  the service.
* Otherwise (a container, another supervisor, a shell): a monitor thread checks when
  ``progress()`` was last called; after ``timeout_s`` without one it logs one line naming where
  the loop is stuck and ends the process with exit code 1 via ``os._exit`` (a hung thread cannot
  be unwound). The MQTT connection then drops without a DISCONNECT, so the broker publishes the
  device's last will (``offline``), and the supervisor restarts it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from types import FrameType
from typing import Callable, Mapping, Optional

from appliance.health.sd_notify import SystemdNotifier, watchdog_interval_s

log = logging.getLogger(__name__)

EXIT_HUNG = 1  # a runtime failure: the service manager restarts the appliance


def _exit_hung() -> None:
    logging.shutdown()  # flush the line above before the hard exit
    os._exit(EXIT_HUNG)


class Watchdog:
    def __init__(
        self,
        timeout_s: float,
        notifier: Optional[SystemdNotifier] = None,
        *,
        env: Optional[Mapping[str, str]] = None,
        on_hang: Callable[[], None] = _exit_hung,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``timeout_s``: the configured limit (``health.watchdog_timeout_s``); systemd's
        ``WatchdogSec=`` (``WATCHDOG_USEC``) takes precedence when it is set for this process."""
        env = os.environ if env is None else env
        self.notifier = notifier if notifier is not None else SystemdNotifier(env)
        systemd_s = watchdog_interval_s(env) if self.notifier.enabled else None
        self.systemd = systemd_s is not None
        self.timeout_s = systemd_s if systemd_s is not None else timeout_s
        # sd_watchdog_enabled(3) recommends pinging at half the interval.
        self._ping_every_s = self.timeout_s / 2
        self._clock = clock
        self._on_hang = on_hang
        self._lock = threading.Lock()
        self._last_progress = clock()
        self._last_ping: Optional[float] = None
        # No pings before READY=1: a ping arms systemd's watchdog, and until the first frame is
        # analysed (a TensorRT engine build can take minutes) systemd's TimeoutStartSec= applies.
        self._ready = False
        self._loop_thread = threading.get_ident()
        self._stop = threading.Event()
        self._monitor: Optional[threading.Thread] = None
        if not self.systemd:
            self._monitor = threading.Thread(target=self._watch, name="watchdog", daemon=True)
            self._monitor.start()
        log.info(
            "watchdog: %s, main loop must make progress every %.0f s",
            "systemd WatchdogSec" if self.systemd else "internal (no systemd watchdog)",
            self.timeout_s,
        )

    # ------------------------------------------------------------------ called by the main loop

    def ready(self, status: str = "analysing frames") -> None:
        """Models loaded and the first frame analysed (or the camera known to be away, and being
        retried): tell systemd the service is up."""
        with self._lock:
            self._ready = True
        self.notifier.notify("READY=1", f"STATUS={status}")
        self.progress()

    def status(self, text: str) -> None:
        """What ``systemctl status`` shows as the service's state."""
        self.notifier.notify(f"STATUS={text}")

    @property
    def is_ready(self) -> bool:
        return self._ready

    def progress(self) -> None:
        """The main loop completed an iteration. Call it from the loop itself, never from a timer."""
        now = self._clock()
        with self._lock:
            self._last_progress = now
            self._loop_thread = threading.get_ident()
            due = (
                self.systemd
                and self._ready
                and (self._last_ping is None or now - self._last_ping >= self._ping_every_s)
            )
            if due:
                self._last_ping = now
        if due:
            self.notifier.notify("WATCHDOG=1")

    def stopping(self) -> None:
        """A clean stop began: systemd stops expecting pings; the internal monitor stands down
        (shutdown is bounded by its own timeouts, and by ``TimeoutStopSec=`` under systemd)."""
        self._stop.set()
        self.notifier.notify("STOPPING=1", "STATUS=stopping")

    def close(self) -> None:
        self._stop.set()
        if self._monitor is not None and self._monitor is not threading.current_thread():
            self._monitor.join(timeout=5)
        self.notifier.close()

    # ------------------------------------------------------------------ internal monitor

    def seconds_since_progress(self) -> float:
        with self._lock:
            return self._clock() - self._last_progress

    def _watch(self) -> None:
        check_every_s = min(1.0, self.timeout_s / 4)
        while not self._stop.wait(check_every_s):
            idle_s = self.seconds_since_progress()
            if idle_s > self.timeout_s:
                log.critical(
                    "watchdog: main loop made no progress for %.0f s (limit %.0f s), stuck in %s; "
                    "exiting with code %d so the supervisor restarts the appliance",
                    idle_s,
                    self.timeout_s,
                    self._where_stuck(),
                    EXIT_HUNG,
                )
                self._on_hang()
                return

    def _where_stuck(self) -> str:
        """Where the main loop's thread is, e.g. ``threading.py:320 wait in fault_injection.py:51 run``:
        the innermost frame and, when that is outside the appliance, the innermost appliance frame."""
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return "an unknown place (the loop's thread is gone)"
        where = _describe(frame)
        package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        outer: Optional[FrameType] = frame
        while outer is not None and not os.path.abspath(outer.f_code.co_filename).startswith(package):
            outer = outer.f_back
        if outer is not None and outer is not frame:
            where += f" in {_describe(outer)}"
        return where


def _describe(frame: FrameType) -> str:
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno} {frame.f_code.co_name}"
