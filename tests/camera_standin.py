"""Stand-in for a board's camera program: ``rpicam-vid`` (Raspberry Pi) or ``gst-launch-1.0`` with
``nvarguscamerasrc`` (Jetson), writing the byte stream the real one writes to stdout: one JPEG
image after another (rpicam-vid ``--codec mjpeg -o -``; ``jpegenc ! fdsink fd=1``), here the JPEG
frames ffmpeg made from the sample clip, paced at the frame rate asked for.

Installed by the tests as ``rpicam-vid`` / ``gst-launch-1.0`` on PATH (a wrapper that runs
``python3 camera_standin.py NAME ARGS...``). Standard library only. Controlled by files in
``$STANDIN_DIR``:

* ``frames/*.jpg``: the frames, sent in name order, in a loop;
* ``behaviour``: one line per run of the program (the last line repeats): ``play``,
  ``die-after N`` (exit 1 after N frames), ``hang-after N`` (stop writing after N frames, keep stdout
  open, never exit by itself), ``burst-then-hang N`` (N frames at once, then hang);
* ``runs.log`` (written): one JSON line per run, ``{"pid": ..., "argv": [...]}``.

A command line the real program would not take in this form exits 2 with a message on stderr.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import List, Optional


def option(argv: List[str], name: str) -> Optional[str]:
    return argv[argv.index(name) + 1] if name in argv[:-1] else None


def frame_rate(name: str, argv: List[str]) -> float:
    """The frame rate the command asks for; exits 2 when the command is not what the source must run."""
    if name in ("rpicam-vid", "libcamera-vid"):
        wanted = {"--codec": "mjpeg", "--output": "-", "--timeout": "0"}
        for flag, value in wanted.items():
            if option(argv, flag) != value:
                sys.exit(f"{name}: expected {flag} {value} in {argv}")
        for flag in ("--camera", "--width", "--height", "--framerate"):
            if option(argv, flag) is None:
                sys.exit(f"{name}: expected {flag} in {argv}")
        return float(option(argv, "--framerate") or 0)
    if name == "gst-launch-1.0":
        if argv[:2] != ["-q", "nvarguscamerasrc"] or not argv[2].startswith("sensor-id="):
            sys.exit(f"{name}: expected -q nvarguscamerasrc sensor-id=N first in {argv}")
        if argv[-5:] != ["jpegenc", "!", "fdsink", "fd=1", "sync=false"]:
            sys.exit(f"{name}: expected the pipeline to end in jpegenc ! fdsink fd=1 in {argv}")
        caps = [a for a in argv if a.startswith("video/x-raw,framerate=")]
        if not caps:
            sys.exit(f"{name}: expected a framerate after videorate in {argv}")
        num, den = caps[0].split("=")[1].split("/")
        return int(num) / int(den)
    sys.exit(f"camera_standin: unknown program {name}")


def main() -> None:
    name, argv = sys.argv[1], sys.argv[2:]
    fps = frame_rate(name, argv)
    folder = Path(os.environ["STANDIN_DIR"])
    with open(folder / "runs.log", "a", encoding="utf-8") as log:
        log.write(json.dumps({"pid": os.getpid(), "argv": [name, *argv]}) + "\n")
    runs = (folder / "runs.log").read_text(encoding="utf-8").count("\n")
    lines = (folder / "behaviour").read_text(encoding="utf-8").split("\n") if (folder / "behaviour").exists() else []
    lines = [line for line in lines if line.strip()] or ["play"]
    behaviour = lines[min(runs, len(lines)) - 1].split()
    kind, count = behaviour[0], int(behaviour[1]) if len(behaviour) > 1 else 0
    frames = [p.read_bytes() for p in sorted((folder / "frames").glob("*.jpg"))]
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print(f"{name}: camera started, {fps:g} fps (stand-in, run {runs}: {' '.join(behaviour)})", file=sys.stderr)
    out = sys.stdout.buffer
    sent = 0
    while True:
        if kind in ("die-after", "hang-after", "burst-then-hang") and sent >= count:
            if kind == "die-after":
                print(f"{name}: ERROR: camera frontend has timed out!", file=sys.stderr)
                sys.exit(1)
            while True:  # hung: stdout stays open, nothing more comes
                time.sleep(3600)
        out.write(frames[sent % len(frames)])
        out.flush()
        sent += 1
        if kind != "burst-then-hang":
            time.sleep(1.0 / fps)


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:
        os._exit(0)
