"""The one frame loop: every command's frames go read -> anonymize -> analyze through it."""

from __future__ import annotations

import io
import json
import threading

import numpy as np
import pytest
from support.analysis import config, detections, person_at
from support.publishing import printing_publisher

from appliance.anonymize import Anonymizer
from appliance.anonymize.testing import KnownDetections
from appliance.app import build_analyzer, build_pipeline
from appliance.capture import open_source
from appliance.config.schema import AnonymizeConfig, CaptureConfig
from appliance.frames import Analysed, Dropped, FrameLoop
from appliance.models.detections import Detections

SIZE = (320, 240)


class FailsOnEveryThird:
    """A person detector that raises on frames 2, 5, 8, ... (a flaky model)."""

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        self.calls += 1
        if self.calls % 3 == 0:
            raise RuntimeError("model fault")
        return detections([person_at(100, 200, 80)])


def sample(max_frames: int = 12) -> FrameLoop:
    source = open_source("sample", CaptureConfig(), SIZE)
    anonymizer = Anonymizer(KnownDetections(), FailsOnEveryThird(), AnonymizeConfig())
    return FrameLoop(source, anonymizer, build_analyzer(config(), SIZE), max_frames=max_frames)


def test_every_frame_read_yields_one_result_and_a_dropped_one_keeps_no_pixels() -> None:
    loop = sample(12)
    results = list(loop)
    assert loop.stopped_by == "max_frames" and loop.frames_read == 12 and len(results) == 12
    dropped = [r for r in results if isinstance(r, Dropped)]
    analysed = [r for r in results if isinstance(r, Analysed)]
    assert [r.index for r in dropped] == [2, 5, 8, 11]
    assert all(r.reason == "person_model_error" and r.size == SIZE for r in dropped)
    assert not any(isinstance(getattr(r, "image", None), np.ndarray) for r in dropped)
    assert all(r.analysis is not None and r.analysis.count == 1 for r in analysed)


def test_a_set_stop_event_ends_the_loop_as_a_signal() -> None:
    loop = sample(100)
    stop = threading.Event()
    loop.stop = stop
    seen = 0
    for _ in loop:
        seen += 1
        if seen == 3:
            stop.set()
    assert seen == 3 and loop.stopped_by == "signal"


def test_the_clock_hook_runs_before_each_frame_is_analysed() -> None:
    order = []
    loop = sample(3)
    loop.on_clock = lambda now, period: order.append(("clock", round(period, 3)))
    for result in loop:
        order.append(("result", type(result).__name__))
    assert order == [("clock", 0.1), ("result", "Analysed"), ("clock", 0.1), ("result", "Analysed"),
                     ("clock", 0.1), ("result", "Dropped")]


@pytest.mark.slow
def test_a_dropped_frame_is_counted_in_its_window_and_in_health() -> None:
    cfg = config(publish={"interval_s": 0.5})
    out = io.StringIO()
    source = open_source("sample", cfg.capture, SIZE)
    publisher = printing_publisher(cfg, out)
    pipeline = build_pipeline(cfg, source=source, publisher=publisher)
    pipeline.anonymizer = Anonymizer(KnownDetections(), FailsOnEveryThird(), cfg.anonymize)
    result = pipeline.run(max_frames=12)
    messages = [json.loads(line) for line in out.getvalue().splitlines()]
    counts = [m["payload"] for m in messages if m["topic"].endswith("/counts")]
    # 12 frames at 10 fps in 0.5 s windows: [0, 0.5) [0.5, 1.0) [1.0, 1.2); drops at frames 2, 5, 8, 11.
    assert [(c["frames_analyzed"], c["frames_dropped"]) for c in counts] == [(4, 1), (3, 2), (1, 1)]
    health = [m["payload"] for m in messages if m["topic"].endswith("/health")][-1]
    assert health["frames"]["dropped"] == {"person_model_error": 4}
    assert result.frames_dropped == 4 and result.frames_analyzed == 8 and result.frames_read == 12
