"""The one frame loop every command runs: read -> anonymize -> analyze, one result per frame.

``appliance run``, ``blur``, ``count``, ``preview`` and ``bench`` all iterate a ``FrameLoop``; they
differ only in what they do with each result. So there is exactly one place where a raw frame is
read and handed to the anonymizer, and no command can show, write or analyse a frame the live
pipeline would not have blurred.

Each iteration yields one of:

* ``Analysed``: the anonymized frame (and its analysis, when the loop has an analyzer);
* ``Dropped``: the anonymizer failed closed; the frame's pixels are already destroyed;
* ``Lost``: a live source delivered nothing within its read timeout.

``on_clock(now_s, frame_period_s)`` is called before a frame is analysed and before its result
is yielded, after the previous frame's result, with the time the frame (or the loss) happened on
the source's clock. The run's schedule closes windows there, so a frame that reaches a window
boundary is analysed into the next window, never the one it closed.

With an analyzer, frame N+1 is anonymized while a worker thread analyses frame N (tracker,
zones, anomalies: mostly numpy and OpenCV, which release the GIL in their loops), so
anonymization may run before its frame's clock hook; nothing in it reads the clock. The blur
still comes first: the worker is handed anonymized frames only. A result is yielded once the
next frame has been read and anonymized: on a live camera that keeps up, one frame period later.

A finite source (a file, a folder) is read ahead by a reader thread (``ReadAhead``): OpenCV
decodes and resizes the next frame without the GIL while this thread anonymizes the current one.
The queue holds at most ``READ_AHEAD_FRAMES`` raw frames and hands them only to this loop, in
order; a frame still queued when the loop stops is zeroed. Live sources are not read ahead: they
have their own capture thread that keeps only the newest frame, and a queue would only age it.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Deque, Generator, Iterator, Literal, Optional, Tuple, Union

import numpy as np

from appliance.analyze import Analyzer, FrameAnalysis
from appliance.anonymize import AnonymizedFrame, Anonymizer, FrameDropped
from appliance.capture import CaptureStats, FrameSource, RawFrame
from appliance.progress import NoProgress, Progress

log = logging.getLogger(__name__)

# Decoded frames waiting for the anonymizer (the reader holds one more, ready, while it waits).
# One hides a decode of a few ms behind some 50 ms of inference; each more costs a frame of RSS.
READ_AHEAD_FRAMES = 1

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
    timestamp_s: float  # monotonic clock, as live frames: when the live source was found to deliver nothing


FrameResult = Union[Analysed, Dropped, Lost]
Clock = Callable[[float, float], None]


@dataclass(frozen=True)
class SourceRead:
    """One ``FrameSource.read()``: the frame (None: ended or nothing yet), whether the source had
    ended, how long the read took, and the source's counters right after it."""

    raw: Optional[RawFrame]
    ended: bool
    read_ms: float
    stats: CaptureStats


def read_once(source: FrameSource) -> SourceRead:
    t0 = time.monotonic()
    raw = source.read()
    read_ms = (time.monotonic() - t0) * 1000
    return SourceRead(raw, raw is None and source.state == "ended", read_ms, source.stats())


class ReadAhead:
    """Reads a source in its own thread, at most ``depth`` reads ahead of ``next()``, in order.

    The thread stops after ``limit`` frames, at the source's end, at its first exception (which
    ``next()`` raises in the caller's thread, as a direct read would) or at ``close()``. ``close()``
    waits for a read in progress, so the source may be closed right after it, and zeroes the
    frames nobody took: a raw frame leaves only through ``next()``.
    """

    def __init__(self, source: FrameSource, limit: Optional[int] = None, depth: int = READ_AHEAD_FRAMES) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._source = source
        self._limit = limit
        self._depth = depth
        self._cond = threading.Condition()
        self._items: Deque[Union[SourceRead, BaseException]] = deque()
        self._closing = False
        self._done = False  # the thread has put its last item
        self._thread = threading.Thread(target=self._run, name="frame-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        frames = 0
        try:
            while self._limit is None or frames < self._limit:
                read = read_once(self._source)
                if not self._put(read) or read.ended:
                    return
                frames += read.raw is not None
        except BaseException as exc:  # handed to the loop's thread, which raises it
            self._put(exc)
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _put(self, item: Union[SourceRead, BaseException]) -> bool:
        with self._cond:
            while len(self._items) >= self._depth and not self._closing:
                self._cond.wait()
            if self._closing:
                if isinstance(item, SourceRead):
                    _destroy(item)
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def next(self) -> SourceRead:
        with self._cond:
            while not self._items and not self._done:
                self._cond.wait()
            if not self._items:
                raise RuntimeError("read past the reader's limit")
            item = self._items.popleft()
            self._cond.notify_all()
        if isinstance(item, BaseException):
            raise item
        return item

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self, timeout_s: float = 30.0) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.error("frame reader still in a read after %.0f s; the source is closed under it", timeout_s)
        with self._cond:
            for item in self._items:
                if isinstance(item, SourceRead):
                    _destroy(item)
            self._items.clear()


def _destroy(read: SourceRead) -> None:
    if read.raw is not None and isinstance(read.raw.image, np.ndarray):
        read.raw.image[...] = 0


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
        overlap_analysis: bool = True,
    ) -> None:
        self.source = source
        self.anonymizer = anonymizer
        self.analyzer = analyzer
        self.max_frames = max_frames
        self.stop = stop or threading.Event()
        self.on_clock = on_clock
        self.progress = progress or NoProgress()
        self.label = label
        self.overlap_analysis = overlap_analysis
        self.frames_read = 0
        self.stopped_by: StopReason = "signal"
        self._reader: Optional[ReadAhead] = None
        self._stats: Optional[CaptureStats] = None
        self._active: Optional[weakref.ReferenceType[Generator[FrameResult, None, None]]] = None

    def stats(self) -> CaptureStats:
        """The source's counters as of the frame last handed on: the reader may be ahead, and a
        window must not be charged with decode errors met after the frames it holds."""
        return self._stats if self._stats is not None else self.source.stats()

    def close(self) -> None:
        """Stop iterating: the analysis worker and the reader thread end (waiting for the work in
        progress), so the analyzer may close its window and the source may be closed. Iterating to
        the end does this too."""
        active = self._active() if self._active is not None else None
        if active is not None:
            active.close()  # runs the generator's finally blocks where it is suspended
        self._active = None
        self._close_reader()

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __iter__(self) -> Iterator[FrameResult]:
        iterator = self._iterate()
        # Weakly held: a caller that breaks out of its for loop drops the iterator, and that
        # closes it at once (threads ended) as it would without this reference.
        self._active = weakref.ref(iterator)
        return iterator

    def _iterate(self) -> Generator[FrameResult, None, None]:
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
            self._close_reader()
            self.progress.close()

    def _read(self) -> SourceRead:
        if self._reader is None and not self.source.live:
            limit = None if self.max_frames is None else self.max_frames - self.frames_read
            self._reader = ReadAhead(self.source, limit)
        read = self._reader.next() if self._reader is not None else read_once(self.source)
        self._stats = read.stats
        return read

    def _results(self) -> Iterator[FrameResult]:
        worker = None
        if self.analyzer is not None and self.overlap_analysis:
            worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="frame-analysis")
        try:
            yield from self._pipelined(worker)
        finally:
            if worker is not None:
                worker.shutdown(wait=True)

    def _pipelined(self, worker: Optional[ThreadPoolExecutor]) -> Iterator[FrameResult]:
        """Frame N+1 is anonymized while frame N is analysed in ``worker`` (when given); N's result
        is yielded, then N+1's clock hook runs, then N+1 is analysed: windows close exactly where
        they did with one frame at a time, and results come in order."""
        period = self.source.frame_period_s or 0.0
        in_flight: Optional[_InFlight] = None
        stopped_by: StopReason = "signal"
        while not self.stop.is_set():
            if self.max_frames is not None and self.frames_read >= self.max_frames:
                stopped_by = "max_frames"
                break
            try:
                read = self._read()
            except BaseException:
                if in_flight is not None:  # the frames before a failing read are reported first, as before
                    yield in_flight.result()
                raise
            raw = read.raw
            if raw is None:
                if in_flight is not None:
                    yield in_flight.result()
                    in_flight = None
                if read.ended:
                    stopped_by = "end_of_source"
                    break
                now = time.monotonic()  # a live source's clock (files never come here)
                if self.on_clock is not None:
                    self.on_clock(now, 0.0)
                yield Lost(now)
                continue
            height, width = raw.image.shape[:2]
            t1 = time.monotonic()
            frame: Optional[AnonymizedFrame] = None
            dropped: Optional[FrameDropped] = None
            try:
                frame = self.anonymizer.process(raw)
            except FrameDropped as drop:
                dropped = drop
            except BaseException:
                if in_flight is not None:
                    yield in_flight.result()
                raise
            anonymize_ms = (time.monotonic() - t1) * 1000
            if in_flight is not None:
                yield in_flight.result()
                in_flight = None
                if self.stop.is_set():  # asked to stop while handling the previous frame: this one is not taken
                    raw.image[...] = 0
                    break
            self.frames_read += 1
            if self.on_clock is not None:
                self.on_clock(raw.timestamp_s, period)
            if dropped is not None:
                times = StageTimes(read.read_ms, anonymize_ms)
                yield Dropped(raw.index, raw.timestamp_s, dropped.reason, dropped.detail, (width, height), times)
                continue
            assert frame is not None
            if worker is not None:
                in_flight = _InFlight(worker.submit(_timed_analysis, self.analyzer, frame), frame, read.read_ms,
                                      anonymize_ms)
                continue
            analysis, analyze_ms = _timed_analysis(self.analyzer, frame)
            yield Analysed(frame, analysis, StageTimes(read.read_ms, anonymize_ms, analyze_ms))
        if in_flight is not None:  # a frame already clocked and counted: its result is due
            yield in_flight.result()
        self.stopped_by = stopped_by


@dataclass(frozen=True)
class _InFlight:
    """A frame being analysed in the worker."""

    job: Future[Tuple[Optional[FrameAnalysis], float]]
    frame: AnonymizedFrame
    capture_ms: float
    anonymize_ms: float

    def result(self) -> Analysed:
        analysis, analyze_ms = self.job.result()  # an analyzer's exception is raised here, in order
        return Analysed(self.frame, analysis, StageTimes(self.capture_ms, self.anonymize_ms, analyze_ms))


def _timed_analysis(analyzer: Optional[Analyzer], frame: AnonymizedFrame) -> Tuple[Optional[FrameAnalysis], float]:
    t0 = time.monotonic()
    analysis = analyzer.process(frame) if analyzer is not None else None
    return analysis, (time.monotonic() - t0) * 1000
