"""Camera stand-ins for capture tests: GStreamer's RTSP server as an IP camera on loopback, the
board camera programs (rpicam-vid, gst-launch-1.0) replaced by a script sending the clip's frames,
and a device running live in a thread."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

from support.brokers import free_port
from support.publishing import printing_publisher

TESTS = Path(__file__).resolve().parent.parent


RTSP_CAMERA = TESTS / "rtsp_camera.py"


SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with python3-gi and GStreamer's RTSP server


class RtspCamera:
    """GStreamer's RTSP server (tests/rtsp_camera.py) serving the clip's frames as MJPEG/RTP on a
    loopback port that stays the same across ``kill`` and ``start``, as a camera's address does."""

    def __init__(self, frames: Path, workdir: Path, user: Optional[str] = None, password: Optional[str] = None) -> None:
        self.frames = frames
        self.workdir = workdir
        self.port = free_port()
        self.user = user
        self.password = password
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        """The stream's URL without credentials."""
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self) -> None:
        args = [SYSTEM_PYTHON, str(RTSP_CAMERA), "--port", str(self.port), "--frames", str(self.frames)]
        if self.user:
            args += ["--user", self.user, "--password", self.password or ""]
        with open(self.workdir / "rtsp-camera.log", "ab") as log:
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "ready ..." once it listens (or "" if it died)
        if not line.startswith("ready"):
            self.proc.wait(timeout=10)
            raise AssertionError(f"RTSP camera did not start: {(self.workdir / 'rtsp-camera.log').read_text()}")

    def kill(self) -> None:
        """The camera's power cut: no goodbye on its connections."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stall(self, on: bool = True) -> None:
        """Stop sending frames, leaving the RTSP session and its TCP connection open (or resume)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGUSR1 if on else signal.SIGUSR2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


CAMERA_STANDIN = TESTS / "camera_standin.py"


class StandIn:
    """The board camera programs of tests/camera_standin.py, first on PATH: what each run does,
    and what each run was asked to do."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def behave(self, *runs: str) -> None:
        (self.folder / "behaviour").write_text("\n".join(runs) + "\n", encoding="utf-8")

    def runs(self) -> List[Dict[str, Any]]:
        log = self.folder / "runs.log"
        return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.exists() else []


class RunningDevice:
    """``build_pipeline(...).run()`` in a thread, printing its messages into a buffer."""

    def __init__(self, source: str, capture: Dict[str, Any], device_id: str = "live-1") -> None:
        from appliance.app import build_pipeline
        from appliance.config import load_config

        cfg = load_config(overrides={"capture": {"source": source, **capture},
                                     "publish": {"health_interval_s": 1.0, "interval_s": 2.0},
                                     "device_id": device_id})
        self.out = io.StringIO()
        self.pipeline = build_pipeline(cfg, publisher=printing_publisher(cfg, self.out))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.pipeline.run, kwargs={"stop": self.stop}, daemon=True)
        self.thread.start()

    def messages(self, kind: str) -> List[Dict[str, Any]]:
        # The pipeline's thread is still writing: only whole lines count.
        lines = [line for line in self.out.getvalue().splitlines(keepends=True) if line.endswith("\n")]
        return [m["payload"] for m in map(json.loads, lines) if m["topic"].endswith("/" + kind)]

    def windows(self) -> List[Dict[str, Any]]:
        return [{"frames_analyzed": c["frames_analyzed"], "camera_ok": c["camera_ok"]} for c in self.messages("counts")]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()
