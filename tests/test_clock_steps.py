"""A wall clock that jumps (NTP's first sync, `date -s`, an RTC-less board) never stops, stretches or
breaks the counting: windows, ages and durations run on the monotonic clock; wall time only labels
them. A step is detected, logged and reported in health as ``clock_step_s``.

The real clock cannot be stepped in a test, so the process's ``time.time`` is: everything that
reads wall time in Python through it (a live source stamping its frames, the run's labels) sees the
step, as it would see ``date -s``. The pipeline is the real one, on a live HTTP stream of the
sample clip with the example site's zone (dwell times) and line.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import cv2
import jsonschema
import numpy as np
import pytest
from support.http_camera import stream_url
from support.publishing import printing_publisher
from support.repo import REPO

from appliance.app import build_pipeline
from appliance.capture import open_source
from appliance.config import load_config
from appliance.config.schema import CaptureConfig
from appliance.health.clock import WallClock

SCHEMAS = REPO / "docs" / "schemas"
INTERVAL_S = 1.0


class SteppedWallClock:
    """``time.time`` plus a shift the test changes: a wall clock someone steps."""

    def __init__(self) -> None:
        self.real = time.time
        self.shift_s = 0.0

    def __call__(self) -> float:
        return self.real() + self.shift_s


@pytest.fixture
def stepped_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[SteppedWallClock]:
    clock = SteppedWallClock()
    monkeypatch.setattr(time, "time", clock)
    yield clock


def test_a_step_of_the_wall_clock_is_detected_once_with_its_sign_and_size() -> None:
    wall, mono = [1_000_000.0], [50.0]
    clock = WallClock(wall=lambda: wall[0], monotonic=lambda: mono[0])
    assert clock.offset_s() == 1_000_000.0 - 50.0 and clock.take_step_s() is None
    wall[0] += 10.0
    mono[0] += 10.0
    assert clock.take_step_s() is None  # both moved together: no step
    wall[0] -= 120.0  # `date -s` two minutes back
    assert clock.offset_s() == pytest.approx(1_000_000.0 - 50.0 - 120.0)
    assert clock.take_step_s() == pytest.approx(-120.0)
    assert clock.take_step_s() is None  # reported once
    wall[0] += 3600.0
    mono[0] += 0.5
    assert clock.take_step_s() == pytest.approx(3599.5)


def test_a_slewed_clock_is_not_a_step() -> None:
    # NTP slews by at most 500 ppm: 1.8 s over a 3600 s health interval is a correction, not a step.
    wall, mono = [0.0], [0.0]
    clock = WallClock(wall=lambda: wall[0], monotonic=lambda: mono[0])
    clock.offset_s()
    wall[0] += 3600.0 * 1.0005
    mono[0] += 3600.0
    assert clock.take_step_s() is None


@pytest.mark.slow
def test_a_live_run_keeps_its_windows_and_health_through_a_clock_stepped_back_an_hour_and_forward_again(
    camera_server: Any,
    stepped_clock: SteppedWallClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = load_config(
        REPO / "examples" / "site.yaml",
        {
            "capture": {"source": stream_url(camera_server), "read_timeout_s": 1.0,
                        "reconnect_initial_s": 0.05, "reconnect_max_s": 0.2},
            "publish": {"health_interval_s": INTERVAL_S, "interval_s": INTERVAL_S},
            "device_id": "clock-1",
        },
    )  # fmt: skip
    out = io.StringIO()
    pipeline = build_pipeline(cfg, publisher=printing_publisher(cfg, out))
    stop = threading.Event()
    steps: List[int] = []  # how many messages had been printed when each step happened

    def published() -> List[Dict[str, Any]]:
        lines = out.getvalue().splitlines(keepends=True)  # the pipeline's thread is still writing
        return [json.loads(line) for line in lines if line.endswith("\n")]

    def kinds_since(start: int) -> List[str]:
        return [m["topic"].rsplit("/", 1)[1] for m in published()[start:]]

    def wait(condition: Callable[[], bool], timeout_s: float = 120.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while not condition() and time.monotonic() < deadline and not stop.is_set():
            stop.wait(0.1)
        return condition()

    def step_the_clock() -> None:
        try:
            for shift in (-3600.0, 0.0):  # one hour back, then forward again
                # Three windows and two health messages under the current time first: a window
                # (or its dwell) straddling the step is what used to break.
                if not wait(lambda: kinds_since(steps[-1] if steps else 0).count("counts") >= 3
                            and kinds_since(steps[-1] if steps else 0).count("health") >= 2):
                    return
                steps.append(len(published()))
                stepped_clock.shift_s = shift
            wait(lambda: kinds_since(steps[-1]).count("counts") >= 3 and kinds_since(steps[-1]).count("health") >= 2)
        finally:
            stop.set()

    stepper = threading.Thread(target=step_the_clock, daemon=True)
    stepper.start()
    with caplog.at_level(logging.WARNING):
        pipeline.run(stop=stop)  # no traceback
    stepper.join()

    messages = published()
    assert len(steps) == 2, f"no windows or health before a step: {[m['topic'] for m in messages]}"
    for start, end in ((steps[0], steps[1]), (steps[1], len(messages))):
        kinds = [m["topic"].rsplit("/", 1)[1] for m in messages[start:end]]
        assert kinds.count("counts") >= 3 and kinds.count("health") >= 2, kinds  # never silence

    for m in messages:
        kind = m["topic"].rsplit("/", 1)[1]
        if kind != "notice":
            jsonschema.validate(m["payload"], json.loads((SCHEMAS / f"{kind}.json").read_text()))
    counts = [m["payload"] for m in messages if m["topic"].endswith("/counts")]
    for c in counts:
        start, end = (datetime.fromisoformat(c[k].replace("Z", "+00:00")) for k in ("window_start", "window_end"))
        length = (end - start).total_seconds()  # about INTERVAL_S (a frame more or less), never an hour
        assert 0 <= length <= INTERVAL_S + 30, c
        for zone in c["zones"].values():
            assert zone["dwell_mean_s"] is None or zone["dwell_mean_s"] >= 0
    # Frames are counted in exactly one window each: none lost or counted twice across the steps.
    assert sum(c["frames_analyzed"] for c in counts) == pipeline.health.frames_analyzed

    # Each step is reported once in health, with its sign, and logged.
    reported = [m["payload"].get("clock_step_s") for m in messages if m["topic"].endswith("/health")]
    found = [s for s in reported if s is not None]
    assert len(found) == 2 and found[0] == pytest.approx(-3600, abs=5) and found[1] == pytest.approx(3600, abs=5)
    logged = [r.getMessage() for r in caplog.records if "wall clock stepped" in r.getMessage()]
    assert len(logged) == 2 and "-3600" in logged[0] and "+3600" in logged[1]

    # Labels follow the wall clock: windows closed during the hour back are labelled an hour back.
    back = [m["payload"] for m in messages[steps[0] + 2 : steps[1]] if m["topic"].endswith("/counts")]
    after = [m["payload"] for m in messages[steps[1] + 2 :] if m["topic"].endswith("/counts")]
    assert back and after and back[-1]["window_end"] < counts[0]["window_start"] < after[-1]["window_end"]


def test_a_looped_folder_of_images_keeps_its_media_clock_running_forward(tmp_path: Path) -> None:
    # A clock that ran back at each loop would stall the schedule and make durations negative.
    for name in ("a.png", "b.png"):
        assert cv2.imwrite(str(tmp_path / name), np.zeros((8, 8, 3), np.uint8))
    source = open_source(str(tmp_path), CaptureConfig(loop=True), None)
    stamps = []
    for _ in range(5):
        frame = source.read()
        assert frame is not None
        stamps.append(frame.timestamp_s)
    source.close()
    assert [round(b - a, 6) for a, b in zip(stamps, stamps[1:])] == [1.0, 1.0, 1.0, 1.0]
