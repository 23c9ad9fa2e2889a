"""The one frame loop every command runs: read -> anonymize -> analyze, one result per frame.

``appliance run``, ``blur``, ``count``, ``preview`` and ``bench`` all iterate a ``FrameLoop``; they
differ only in what they do with each result. So there is exactly one place where a raw frame is
read and handed to the anonymizer, and no command can show, write or analyse a frame the live
pipeline would not have blurred.

Each iteration yields one of:

* ``Analysed``: the anonymized frame (and its analysis, when the loop has an analyzer);
* ``Dropped``: the anonymizer failed closed; the frame's pixels are already destroyed;
* ``Lost``: a live source delivered nothing within its read timeout.

``on_clock(now_s, frame_period_s)`` is called before a frame is processed, with the time the
frame (or the loss) happened on the source's clock. The run's schedule closes windows there, so a
frame that reaches a window boundary is analysed into the next window, never the one it closed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Literal, Optional, Tuple, Union

from appliance.analyze import Analyzer, FrameAnalysis
from appliance.anonymize import AnonymizedFrame, Anonymizer, FrameDropped
from appliance.capture import FrameSource
from appliance.progress import NoProgress, Progress

StopReason = Literal["end_of_source", "max_frames", "signal"]


@dataclass(frozen=True)
class StageTimes:
    """Milliseconds each stage took for one frame (0 for a stage that did not run)."""

    capture_ms: float
    anonymize_ms: float = 0.0
    analyze_ms: float = 0.0


@dataclass(frozen=True)
class Analysed:
    frame: AnonymizedFrame
    analysis: Optional[FrameAnalysis]  # None when the loop runs without an analyzer (blur)
    times: StageTimes

    @property
    def timestamp_s(self) -> float:
        return self.frame.timestamp_s


@dataclass(frozen=True)
class Dropped:
    """A frame the anonymizer could not vouch for. Only its size survives, so a video writer can
    keep the timing with a black frame."""

    index: int
    timestamp_s: float
    reason: str
    detail: str
    size: Tuple[int, int]  # (width, height)
    times: StageTimes

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


@dataclass(frozen=True)
class Lost:
    timestamp_s: float  # wall clock: when the live source was found to deliver nothing


FrameResult = Union[Analysed, Dropped, Lost]
Clock = Callable[[float, float], None]


class FrameLoop:
    """Iterate once; afterwards ``stopped_by`` says why it ended and ``frames_read`` how far it got."""

    def __init__(
        self,
        source: FrameSource,
        anonymizer: Anonymizer,
        analyzer: Optional[Analyzer] = None,
        *,
        max_frames: Optional[int] = None,
        stop: Optional[threading.Event] = None,
        on_clock: Optional[Clock] = None,
        progress: Optional[Progress] = None,
        label: str = "frames",
    ) -> None:
        self.source = source
        self.anonymizer = anonymizer
        self.analyzer = analyzer
        self.max_frames = max_frames
        self.stop = stop or threading.Event()
        self.on_clock = on_clock
        self.progress = progress or NoProgress()
        self.label = label
        self.frames_read = 0
        self.stopped_by: StopReason = "signal"

    def __iter__(self) -> Iterator[FrameResult]:
        total = self.source.expected_frames
        if self.max_frames is not None:
            total = self.max_frames if total is None else min(total, self.max_frames)
        self.progress.start(self.label, total)
        try:
            for result in self._results():
                yield result
                if not isinstance(result, Lost):
                    self.progress.advance()
        finally:
            self.progress.close()

    def _results(self) -> Iterator[FrameResult]:
        period = self.source.frame_period_s or 0.0
        while not self.stop.is_set():
            if self.max_frames is not None and self.frames_read >= self.max_frames:
                self.stopped_by = "max_frames"
                return
            t0 = time.monotonic()
            raw = self.source.read()
            if raw is None:
                if self.source.state == "ended":
                    self.stopped_by = "end_of_source"
                    return
                now = time.time()
                if self.on_clock is not None:
                    self.on_clock(now, 0.0)
                yield Lost(now)
                continue
            self.frames_read += 1
            capture_ms = (time.monotonic() - t0) * 1000
            if self.on_clock is not None:
                self.on_clock(raw.timestamp_s, period)
            height, width = raw.image.shape[:2]
            t1 = time.monotonic()
            try:
                frame = self.anonymizer.process(raw)
            except FrameDropped as drop:
                times = StageTimes(capture_ms, (time.monotonic() - t1) * 1000)
                yield Dropped(raw.index, raw.timestamp_s, drop.reason, drop.detail, (width, height), times)
                continue
            t2 = time.monotonic()
            analysis = self.analyzer.process(frame) if self.analyzer is not None else None
            times = StageTimes(capture_ms, (t2 - t1) * 1000, (time.monotonic() - t2) * 1000)
            yield Analysed(frame, analysis, times)
        self.stopped_by = "signal"
