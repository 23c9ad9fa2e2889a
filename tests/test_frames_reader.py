"""The frame loop reads a file ahead in a thread: the same frames, in the same order, with the same
ends as reading in the loop's own thread, and no raw frame left behind when it stops."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np
import pytest
from support.analysis import config, detections, person_at
from support.publishing import printing_publisher
from support.waiting import wait_until

from appliance.anonymize import Anonymizer
from appliance.anonymize.testing import KnownDetections
from appliance.app import build_analyzer, build_pipeline
from appliance.capture import FrameSource, RawFrame, open_source
from appliance.config.schema import AnonymizeConfig, CaptureConfig
from appliance.errors import SourceError
from appliance.frames import READ_AHEAD_FRAMES, Analysed, FrameLoop, ReadAhead
from appliance.models.detections import Detections
from appliance.progress import NoProgress

SIZE = (320, 240)


class Recorded(FrameSource):
    """A real source, wrapped to record what was read and when it was closed; it raises
    ``fail_at_read`` (1-based) if given, and reports itself live if asked (no read-ahead)."""

    def __init__(self, inner: FrameSource, *, fail_at_read: Optional[int] = None, live: bool = False) -> None:
        super().__init__(inner.size)
        self.inner = inner
        self.fail_at_read = fail_at_read
        self._live = live
        self.handed: List[RawFrame] = []
        self.closed = False
        self.reads_after_close = 0
        self.reader_threads: set = set()

    @property
    def live(self) -> bool:
        return self._live

    @property
    def frame_period_s(self) -> Optional[float]:
        return self.inner.frame_period_s

    def read(self) -> Optional[RawFrame]:
        self.reader_threads.add(threading.current_thread().name)
        if self.closed:
            self.reads_after_close += 1
        if self.fail_at_read is not None and len(self.handed) + 1 == self.fail_at_read:
            raise SourceError("camera unplugged")
        raw = self.inner.read()
        self.state = self.inner.state
        if raw is not None:
            self.handed.append(raw)
        return raw

    def close(self) -> None:
        self.closed = True
        self.inner.close()


def sample_loop(source: FrameSource, max_frames: Optional[int] = None) -> FrameLoop:
    anonymizer = Anonymizer(KnownDetections(), KnownDetections(), AnonymizeConfig())
    return FrameLoop(source, anonymizer, build_analyzer(config(), SIZE), max_frames=max_frames)


def no_reader_thread() -> bool:
    return not any(t.name == "frame-reader" for t in threading.enumerate())


def test_a_file_is_read_in_a_reader_thread_in_order_and_never_past_max_frames() -> None:
    source = Recorded(open_source("sample", CaptureConfig(), SIZE))
    loop = sample_loop(source, max_frames=20)
    results = [r for r in loop if isinstance(r, Analysed)]
    assert [r.frame.index for r in results] == list(range(20))
    assert [r.timestamp_s for r in results] == sorted(r.timestamp_s for r in results)
    assert source.reader_threads == {"frame-reader"}
    assert len(source.handed) == 20, "the reader stops at max_frames instead of reading ahead past it"
    assert loop.stopped_by == "max_frames" and no_reader_thread()


def test_the_end_of_a_folder_ends_the_loop_and_its_reader(tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((40, 60, 3), 10 * i, np.uint8))
    loop = sample_loop(open_source(str(tmp_path), CaptureConfig(), SIZE))
    assert [r.frame.index for r in loop if isinstance(r, Analysed)] == [0, 1, 2]
    assert loop.stopped_by == "end_of_source" and loop.frames_read == 3 and no_reader_thread()


def test_a_live_source_is_read_in_the_loops_own_thread() -> None:
    source = Recorded(open_source("sample", CaptureConfig(), SIZE), live=True)
    assert len(list(sample_loop(source, max_frames=3))) == 3
    assert source.reader_threads == {threading.current_thread().name}


def test_a_stop_mid_run_ends_the_reader_zeroes_the_frames_it_read_ahead_and_reads_no_more() -> None:
    source = Recorded(open_source("sample", CaptureConfig(), SIZE))
    stop = threading.Event()
    loop = sample_loop(source)
    loop.stop = stop
    seen = 0
    for _ in loop:
        seen += 1
        if seen == 3:
            stop.set()
    assert seen == 3 and loop.stopped_by == "signal" and no_reader_thread()
    source.close()
    assert source.reads_after_close == 0
    # Beyond the 3 taken: one anonymized beside the third's analysis, the queue, one in the reader's hands.
    assert 3 <= len(source.handed) <= 3 + 1 + READ_AHEAD_FRAMES + 1
    assert all(not raw.image.any() for raw in source.handed[3:]), "frames read ahead but never taken are zeroed"


def test_breaking_out_of_the_loop_ends_the_reader() -> None:
    source = Recorded(open_source("sample", CaptureConfig(), SIZE))
    for _ in sample_loop(source):
        break
    assert no_reader_thread()


def test_closing_the_loop_mid_run_ends_its_analysis_worker_and_reader_before_it_returns() -> None:
    source = Recorded(open_source("sample", CaptureConfig(), SIZE))
    loop = sample_loop(source)
    results = iter(loop)
    for _ in range(3):
        next(results)
    assert {"frame-reader", "frame-analysis"} <= {t.name.split("_")[0] for t in threading.enumerate()}
    loop.close()  # what the pipeline does when its consumer fails: then it closes the window and the source
    assert not any(t.name.startswith(("frame-reader", "frame-analysis")) for t in threading.enumerate())


@pytest.mark.parametrize("live", [False, True], ids=["read ahead", "read in the loop"])
def test_a_source_that_raises_raises_the_same_error_after_the_same_frames(live: bool) -> None:
    source = Recorded(open_source("sample", CaptureConfig(), SIZE), fail_at_read=5, live=live)
    seen = []
    with pytest.raises(SourceError, match="camera unplugged"):
        for result in sample_loop(source):
            seen.append(result.frame.index if isinstance(result, Analysed) else None)
    assert seen == [0, 1, 2, 3] and no_reader_thread()


def test_read_ahead_holds_at_most_depth_frames_and_close_zeroes_them() -> None:
    source = Recorded(open_source("sample", CaptureConfig(), SIZE))
    reader = ReadAhead(source, depth=2)
    first = reader.next()
    assert first.raw is not None and first.raw.index == 0
    # The thread fills the queue (2 frames) and then waits with one more read in its hands.
    wait_until(lambda: len(source.handed) == 4)
    reader.close()
    assert not reader.alive
    assert all(not raw.image.any() for raw in source.handed[1:])
    assert first.raw.image.any(), "the frame handed on is the caller's"


class StopAfter(NoProgress):
    """A progress display that asks the run to stop once ``frames`` are done, as a signal would."""

    def __init__(self, frames: int, stop: threading.Event) -> None:
        self.frames, self.done, self.stop = frames, 0, stop

    def advance(self) -> None:
        self.done += 1
        if self.done == self.frames:
            self.stop.set()


@pytest.mark.slow
def test_a_pipeline_stopped_mid_run_closes_its_source_after_the_reader_has_ended() -> None:
    cfg = config(publish={"interval_s": 0.5})
    source = Recorded(open_source("sample", cfg.capture, SIZE))
    stop = threading.Event()
    pipeline = build_pipeline(
        cfg, source=source, publisher=printing_publisher(cfg, io.StringIO()), progress=StopAfter(5, stop)
    )
    pipeline.anonymizer = Anonymizer(KnownDetections(), KnownDetections(), cfg.anonymize)
    result = pipeline.run(stop=stop)
    assert result.stopped_by == "signal" and result.frames_analyzed == 5
    assert source.closed and source.reads_after_close == 0 and no_reader_thread()


class WalkingPerson:
    """A person detector that sees one person walk left to right, 6 px a frame, and fails on
    every fifth frame (a dropped frame in the middle of the walk)."""

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        self.calls += 1
        if self.calls % 5 == 0:
            raise RuntimeError("model fault")
        return detections([person_at(20 + 6 * self.calls, 200, 80)])


def run_messages(overlap: bool) -> List[dict]:
    # The analyzer works at the profile's size (768 px wide): the line is at x = 92 px, crossed at frame 12.
    cfg = config(publish={"interval_s": 0.5}, lines=[{"name": "middle", "start": [0.12, 0.0], "end": [0.12, 1.0]}],
                 anomalies={"camera_tamper": {"enabled": True}})
    out = io.StringIO()
    source = open_source("sample", cfg.capture, SIZE)
    pipeline = build_pipeline(cfg, source=source, publisher=printing_publisher(cfg, out))
    pipeline.anonymizer = Anonymizer(KnownDetections(), WalkingPerson(), cfg.anonymize)
    pipeline.overlap_analysis = overlap
    pipeline.run(max_frames=24)
    wall_clock = {"sent_at", "window_start", "window_end", "uptime_s", "stage_latency_ms", "fps"}
    messages = [json.loads(line) for line in out.getvalue().splitlines()]
    return [{"topic": m["topic"], **{k: v for k, v in m["payload"].items() if k not in wall_clock}}
            for m in messages if m["topic"].endswith(("/counts", "/anomalies"))]


@pytest.mark.slow
def test_analysing_beside_the_next_frames_anonymization_publishes_the_same_windows_as_one_at_a_time() -> None:
    together, one_at_a_time = run_messages(overlap=True), run_messages(overlap=False)
    counts = [m for m in together if m["topic"].endswith("/counts")]
    # 24 frames at 10 fps in 0.5 s windows; drops at frames 4, 9, 14, 19; one crossing of the line.
    assert [(c["frames_analyzed"], c["frames_dropped"]) for c in counts] == [(4, 1), (4, 1), (4, 1), (4, 1), (4, 0)]
    assert sum(c["lines"]["middle"]["in"] + c["lines"]["middle"]["out"] for c in counts) == 1
    assert together == one_at_a_time
