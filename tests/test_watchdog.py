"""The watchdog: systemd's notify protocol on a real socket, and the internal watchdog's exit.

Only the main loop proves liveness. Under systemd (``NOTIFY_SOCKET`` + ``WATCHDOG_USEC``) the
appliance says ``READY=1`` after its first analysed frame and ``WATCHDOG=1`` while the loop runs;
when a detector hangs (``APPLIANCE_FAULT_HANG_MODEL``) the pings stop. Without systemd the
process exits with code 1 and the broker publishes its last will.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

from appliance.errors import InputError
from appliance.health.fault_injection import hang_model_spec
from appliance.health.sd_notify import SystemdNotifier, notify_address, watchdog_interval_s
from appliance.health.watchdog import Watchdog

ROOT = Path(__file__).resolve().parent.parent
HUNG_MODEL = "centerface-int8"  # the face model of the default (x86-generic) profile: one call per frame


class NotifyListener:
    """The systemd side of sd_notify: a Unix datagram socket the test binds."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)

    def receive(self, timeout_s: float) -> Optional[str]:
        self.sock.settimeout(timeout_s)
        try:
            return self.sock.recv(4096).decode()
        except socket.timeout:
            return None

    def wait_for(self, wanted: str, timeout_s: float, seen: List[str]) -> None:
        """Collect datagrams into ``seen`` until one holds the line ``wanted``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = self.receive(max(0.01, deadline - time.monotonic()))
            if msg is not None:
                seen.append(msg)
                if wanted in msg.splitlines():
                    return
        raise AssertionError(f"no {wanted} within {timeout_s} s; received {seen}")

    def drain(self) -> List[str]:
        out = []
        while (msg := self.receive(0.001)) is not None:
            out.append(msg)
        return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    sock = NotifyListener(str(tmp_path / "notify.sock"))
    yield sock
    sock.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def clean_env(**extra: str) -> Dict[str, str]:
    """The environment without any systemd variables of the shell running the tests."""
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    env.update(extra)
    return env


# --------------------------------------------------------------------------- protocol


def test_notify_socket_may_be_a_path_or_an_abstract_name(listener: NotifyListener) -> None:
    assert notify_address({"NOTIFY_SOCKET": "@crowd/notify"}) == "\0crowd/notify"
    assert notify_address({}) is None
    abstract_name = f"crowd-appliance-test-{os.getpid()}"
    abstract = NotifyListener("\0" + abstract_name)
    try:
        for address, sock in ((listener.sock.getsockname(), listener), ("@" + abstract_name, abstract)):
            notifier = SystemdNotifier({"NOTIFY_SOCKET": address})
            assert notifier.notify("READY=1", "STATUS=up")
            assert sock.receive(10) == "READY=1\nSTATUS=up"
            notifier.close()
    finally:
        abstract.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled and notifier.notify("READY=1") is False


def test_watchdog_usec_applies_only_to_the_process_it_names() -> None:
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval_s({}) is None


def test_a_malformed_fault_injection_is_a_bad_input() -> None:
    assert hang_model_spec({"APPLIANCE_FAULT_HANG_MODEL": "centerface-int8@20"}) == ("centerface-int8", 20)
    assert hang_model_spec({}) is None
    with pytest.raises(InputError, match="APPLIANCE_FAULT_HANG_MODEL"):
        hang_model_spec({"APPLIANCE_FAULT_HANG_MODEL": "centerface-int8@soon"})


# --------------------------------------------------------------------------- Watchdog object


def test_systemd_watchdog_sec_takes_precedence_and_pings_after_ready_at_most_every_half_interval(
    listener: NotifyListener,
) -> None:
    clock = FakeClock()
    env = {"NOTIFY_SOCKET": listener.sock.getsockname(), "WATCHDOG_USEC": "10000000"}
    wd = Watchdog(60.0, env=env, clock=clock, on_hang=lambda: pytest.fail("systemd does the killing"))
    try:
        assert wd.systemd and wd.timeout_s == 10.0
        wd.progress()
        assert listener.drain() == [], "no ping before READY=1 (systemd's start timeout applies until then)"
        wd.ready()
        assert listener.drain() == ["READY=1\nSTATUS=analysing frames", "WATCHDOG=1"]
        clock.now = 4.9
        wd.progress()
        assert listener.drain() == []  # rate-limited
        clock.now = 5.0
        wd.progress()
        assert listener.drain() == ["WATCHDOG=1"]
        wd.stopping()
        assert "STOPPING=1" in listener.drain()[-1].splitlines()
    finally:
        wd.close()


def test_internal_watchdog_fires_only_when_progress_stops_for_the_timeout() -> None:
    clock = FakeClock()
    hung = threading.Event()
    wd = Watchdog(0.4, env={}, clock=clock, on_hang=hung.set)
    try:
        assert not wd.systemd
        clock.now = 0.39
        wd.progress()  # at 0.39: the next deadline is 0.79
        clock.now = 0.7
        assert not hung.wait(0.5), "fired although progress was made within the timeout"
        clock.now = 0.8
        assert hung.wait(10), "did not fire after the timeout without progress"
    finally:
        wd.close()


# --------------------------------------------------------------------------- a real `appliance run`


class StderrLines:
    """Reads a process's stderr in a thread so the test can wait for a line."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: List[str] = []
        self._cond = threading.Condition()
        assert proc.stderr is not None
        self._stream = proc.stderr
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._stream:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self.lines.append("")  # EOF marker
            self._cond.notify_all()

    def wait_for(self, needle: str, timeout_s: float) -> str:
        with self._cond:
            found = self._cond.wait_for(lambda: any(needle in line for line in self.lines), timeout_s)
            assert found, f"no line with {needle!r} within {timeout_s} s:\n{''.join(self.lines)[-3000:]}"
            return next(line for line in self.lines if needle in line)

    def text(self) -> str:
        with self._cond:
            return "".join(self.lines)


def start_appliance(tmp_path: Path, env: Dict[str, str], *args: str, site: str = "") -> subprocess.Popen:
    config = tmp_path / "site.yaml"
    # loop: the clip never ends, so only the watchdog or the test stops the appliance.
    config.write_text("capture: {loop: true}\n" + site)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "appliance",
            "run",
            "--config",
            str(config),
            "--outbox",
            str(tmp_path / "o.sqlite3"),
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(30)


@pytest.mark.slow
def test_appliance_run_notifies_ready_then_pings_from_the_frame_loop(tmp_path: Path, listener: NotifyListener) -> None:
    env = clean_env(NOTIFY_SOCKET=listener.sock.getsockname(), WATCHDOG_USEC="2000000")
    proc = start_appliance(tmp_path, env)
    seen: List[str] = []
    try:
        listener.wait_for("READY=1", 180, seen)
        assert not any("WATCHDOG=1" in m for m in seen), "pinged before READY=1"
        for _ in range(3):  # the loop keeps running: pings keep coming (every 1 s)
            listener.wait_for("WATCHDOG=1", 60, seen)
        proc.terminate()
        listener.wait_for("STOPPING=1", 60, seen)
        assert proc.wait(60) == 0
    finally:
        stop(proc)


@pytest.mark.slow
def test_pings_stop_when_a_detector_hangs(tmp_path: Path, listener: NotifyListener) -> None:
    env = clean_env(
        NOTIFY_SOCKET=listener.sock.getsockname(),
        WATCHDOG_USEC="2000000",
        APPLIANCE_FAULT_HANG_MODEL=f"{HUNG_MODEL}@15",
    )
    proc = start_appliance(tmp_path, env)
    stderr = StderrLines(proc)
    seen: List[str] = []
    try:
        listener.wait_for("READY=1", 180, seen)
        stderr.wait_for("inference hangs now", 180)
        # Pings sent before the hang are already queued (sendto is synchronous): take them out.
        listener.drain()
        # Three watchdog intervals of silence: systemd would have killed the service twice over.
        assert listener.receive(6.0) is None, "a ping arrived although the frame loop is hung"
        assert proc.poll() is None, "under systemd the appliance leaves the killing to systemd"
    finally:
        stop(proc)


@pytest.mark.slow
def test_without_systemd_a_hung_detector_ends_the_process_and_the_last_will_fires(
    tmp_path: Path, mosquitto, subscribe
) -> None:
    device = "watchdog-test"
    sub = subscribe(mosquitto, f"crowdmon/{device}/status")
    env = clean_env(APPLIANCE_FAULT_HANG_MODEL=f"{HUNG_MODEL}@15")
    proc = start_appliance(
        tmp_path, env, "--broker", mosquitto.url, "--device-id", device, site="health: {watchdog_timeout_s: 5}\n"
    )
    stderr = StderrLines(proc)
    try:
        sub.wait_for(lambda ms: any(m.payload["state"] == "online" for m in ms), 180)
        assert proc.wait(180) == 1
    finally:
        stop(proc)
    line = stderr.wait_for("watchdog: main loop made no progress", 10)
    # The line says where the loop is stuck: in the hung model, or waiting for it (the face model runs
    # on the anonymizer's worker thread, side by side with the person model).
    assert "fault_injection.py" in line or "anonymizer.py" in line, line
    assert "Traceback" not in stderr.text()
    # The main thread never got out of the hung model, so this 'offline' is the broker's last will.
    sub.wait_for(lambda ms: ms[-1].payload["state"] == "offline", 60)
    late = subscribe(mosquitto, f"crowdmon/{device}/status")
    (status,) = late.wait_for(lambda ms: len(ms) == 1, 30)
    assert status.retain and status.payload["state"] == "offline"
