#!/usr/bin/env python3
"""Peak memory (RSS) of the appliance against two hostile inputs, this checkout beside a baseline:

* ``monitor``: ``appliance monitor --json`` on a loopback Mosquitto receives one device's birth, a
  counts message with seq 3, then a forged counts message with seq 10^12;
* ``blur``: ``appliance blur`` on a 20000x20000 PNG (a few hundred KB; written here row by row, so
  making it needs no gigabytes).

Each command runs under an address-space limit (``--limit-mb``, default 4096), so a baseline that
grows without bound fails at the limit instead of swapping the host: its figure then reads
``>= limit``. Usage::

    .venv/bin/python scripts/bench_hostile_inputs.py [--baseline /path/to/other/checkout] [--size N] [--max-pixels N]
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent


def write_big_png(path: Path, width: int, height: int) -> None:
    """An 8-bit RGB PNG of grey rows, compressed as it is written."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + b"\x80" * (3 * width)
    comp = zlib.compressobj(9)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        for start in range(0, height, 100):
            data = comp.compress(row * min(100, height - start))
            if data:
                f.write(chunk(b"IDAT", data))
        f.write(chunk(b"IDAT", comp.flush()) + chunk(b"IEND", b""))


# A fresh parent per measured command: RUSAGE_CHILDREN then holds that command's peak alone.
_WRAPPER = """
import resource, subprocess, sys
limit = int(sys.argv[2]) << 20
def pre():
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
proc = subprocess.run(sys.argv[3:], preexec_fn=pre)
open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(proc.returncode)
"""


def run_measured(cmd: List[str], cwd: Path, limit_mb: int, env: dict, timeout_s: float) -> Tuple[int, int, str]:
    """(exit code, peak RSS in MiB, last stderr line) of one command."""
    with tempfile.NamedTemporaryFile("r", suffix=".maxrss") as rss:
        proc = subprocess.run(
            [sys.executable, "-c", _WRAPPER, rss.name, str(limit_mb), *cmd],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s,
        )  # fmt: skip
        peak = int(Path(rss.name).read_text() or 0) // 1024
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    return proc.returncode, peak, last[:160]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def monitor_peak(checkout: Path, limit_mb: int, work: Path) -> str:
    """Peak RSS of the monitor process after the forged seq, from /proc (VmHWM)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = work / "mosquitto.conf"
    user = f"user {getpass.getuser()}\n" if os.geteuid() == 0 else ""
    conf.write_text(f"{user}listener {port} 127.0.0.1\nallow_anonymous true\n")
    broker = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    limit = limit_mb << 20
    env = {**os.environ, "PYTHONPATH": str(checkout), "PYTHONUNBUFFERED": "1"}
    monitor: Optional[subprocess.Popen] = None
    try:
        time.sleep(0.5)
        monitor = subprocess.Popen(
            [sys.executable, "-m", "appliance", "monitor", "--broker", f"mqtt://127.0.0.1:{port}", "--json"],
            cwd=checkout, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
        )  # fmt: skip
        time.sleep(3.0)  # subscribed
        client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        client.connect("127.0.0.1", port)
        client.loop_start()
        t = "2026-01-01T00:00:00.000Z"
        envelope = {"v": 1, "device_id": "cam-f", "boot_id": 1, "sent_at": t}
        birth = {**envelope, "seq": 1, "state": "online", "software_version": "0", "models": [],
                 "config_hash": "0" * 16, "board": "x", "started_at": t}  # fmt: skip
        counts = {**envelope, "window_start": t, "window_end": t, "frames_analyzed": 1}
        for topic, payload in (
            ("crowdmon/cam-f/status", birth),
            ("crowdmon/cam-f/counts", {**counts, "seq": 3}),
            ("crowdmon/cam-f/counts", {**counts, "seq": 10**12}),  # forged
        ):
            client.publish(topic, json.dumps(payload), qos=1).wait_for_publish(10)
        client.loop_stop()
        client.disconnect()
        status = Path(f"/proc/{monitor.pid}/status")
        deadline = time.monotonic() + 20
        peak_kb, alive = 0, True
        while time.monotonic() < deadline:
            if monitor.poll() is not None:
                alive = False
                break
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
            time.sleep(0.2)
        if not alive:
            rc = monitor.returncode
            return f"exited {rc} (address-space limit {limit_mb} MiB reached) at >= {peak_kb // 1024} MiB"
        monitor.send_signal(15)
        t0 = time.monotonic()
        try:
            rc = monitor.wait(timeout=30)
            took = f"SIGTERM -> exit {rc} in {time.monotonic() - t0:.2f} s"
        except subprocess.TimeoutExpired:
            took = "SIGTERM ignored for 30 s"
        return f"peak RSS {peak_kb // 1024} MiB over 20 s after the forged seq; {took}"
    finally:
        if monitor is not None and monitor.poll() is None:
            monitor.kill()
            monitor.wait()
        broker.terminate()
        broker.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, help="another checkout of the appliance to measure beside this one")
    parser.add_argument("--limit-mb", type=int, default=4096, help="address-space limit per command (MiB)")
    parser.add_argument("--size", type=int, default=20000, help="width and height of the PNG (default 20000)")
    parser.add_argument("--max-pixels", type=int, help="passed to blur (default: the config's capture.max_pixels)")
    args = parser.parse_args()
    sides = [("this", REPO)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        png = work / f"big{args.size}.png"
        write_big_png(png, args.size, args.size)
        print(f"{png.name}: {args.size}x{args.size}, {png.stat().st_size / 1024:.0f} KB")
        for name, checkout in sides:
            env = {**os.environ, "PYTHONPATH": str(checkout)}
            out = work / f"out-{name}.png"
            blur = [sys.executable, "-m", "appliance", "blur", str(png), "-o", str(out)]
            if args.max_pixels:
                blur += ["--max-pixels", str(args.max_pixels)]
            rc, peak, last = run_measured(blur, checkout, args.limit_mb, env, 1800)
            print(f"[{name}] blur: exit {rc}, peak RSS {peak} MiB: {last}")
            print(f"[{name}] monitor, forged seq 10^12: {monitor_peak(checkout, args.limit_mb, work)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
