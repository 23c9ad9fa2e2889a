"""The main job: capture -> anonymize -> analyze -> publish, with health beside it.

One loop, one thread (the capture reader and the MQTT delivery run in their own threads behind
their stage's interface). Windows and health periods run on the source's clock: the media clock
for files (a clip analysed faster than real time still gives ``interval_s`` windows of video),
the wall clock for live sources.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional

from appliance.analyze import Analyzer, AnomalyEvent, FrameAnalysis
from appliance.anonymize import Anonymizer, FrameDropped
from appliance.capture import FrameSource, RawFrame
from appliance.config import ApplianceConfig
from appliance.health import HealthMonitor
from appliance.health.watchdog import Watchdog
from appliance.publish import BrokerUnreachable, ModelInfo, Publisher
from appliance.report import anomaly_message, counts_message, health_message

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    frames_read: int
    frames_analyzed: int
    frames_dropped: int
    windows_published: int
    stopped_by: str  # "end_of_source", "max_frames" or "signal"


class Pipeline:
    def __init__(
        self,
        cfg: ApplianceConfig,
        source: FrameSource,
        anonymizer: Anonymizer,
        analyzer: Analyzer,
        publisher: Publisher,
        models: List[ModelInfo],
        on_frame: Optional[Callable[[FrameAnalysis], None]] = None,
    ) -> None:
        self.cfg = cfg
        self.source = source
        self.anonymizer = anonymizer
        self.analyzer = analyzer
        self.publisher = publisher
        self.models = models
        self.health = HealthMonitor(cfg.health.face_stage_max_consecutive_failures)
        self.on_frame = on_frame
        self._windows = 0

    # ------------------------------------------------------------------ publishing helpers

    def _publish(self, message: object) -> None:
        start = time.monotonic()
        try:
            self.publisher.publish(message)
        except Exception:  # a publish bug must not stop counting; refusals show in the outbox health
            log.exception("publish failed for %s", type(message).__name__)
        self.health.record_latency("publish", (time.monotonic() - start) * 1000)

    def _close_window(self, end_s: float) -> None:
        summary = self.analyzer.close_window(end_s)
        self._publish(counts_message(summary))
        self._windows += 1

    def _publish_health(self) -> None:
        cam = self.source.stats()
        snap = self.health.snapshot(cam.state if cam.state != "ended" else "ok", cam.reconnects)
        self._publish(health_message(snap, self.models))

    # ------------------------------------------------------------------ main loop

    def run(self, max_frames: Optional[int] = None, stop: Optional[threading.Event] = None) -> RunResult:
        stop = stop or threading.Event()
        cfg = self.cfg
        self.publisher.start()
        window_start: Optional[float] = None
        next_health: Optional[float] = None
        now = time.time()
        frames_read = 0
        stopped_by = "signal"
        watchdog: Optional[Watchdog] = None
        watchdog_ready = False
        try:
            try:
                self.publisher.connect(timeout_s=cfg.mqtt.connect_timeout_s)
            except BrokerUnreachable as exc:
                # Store-and-forward: counting goes on, messages wait in the outbox for the broker.
                log.warning("%s; counting goes on and messages wait in the outbox", exc)
            # Watchdog hook: only this loop proves liveness (READY after the first analysed frame).
            watchdog = Watchdog(cfg.health.watchdog_timeout_s)
            while not stop.is_set():
                watchdog.progress()
                if max_frames is not None and frames_read >= max_frames:
                    stopped_by = "max_frames"
                    break
                t0 = time.monotonic()
                raw = self.source.read()
                if raw is None and self.source.state == "ended":
                    stopped_by = "end_of_source"
                    break
                now = time.time() if raw is None else raw.timestamp_s
                if window_start is None:
                    window_start = now
                    next_health = now + cfg.publish.health_interval_s
                # Windows are [start, end): the frame that reaches the boundary opens the next one.
                if now - window_start >= cfg.publish.interval_s:
                    self._close_window(now)
                    window_start = now
                if next_health is not None and now >= next_health:
                    self._publish_health()
                    next_health = now + cfg.publish.health_interval_s
                if raw is None:
                    # Live source lost: no frame, so no count; analysis raises camera_tamper.
                    self._emit_events(self.analyzer.camera_lost(now))
                    continue
                frames_read += 1
                self.health.frame_captured()
                self.health.record_latency("capture", (time.monotonic() - t0) * 1000)
                self._process(raw)
                if not watchdog_ready and self.health.frames_analyzed:
                    watchdog.ready()
                    watchdog_ready = True
                now += self.source.frame_period_s or 0.0  # the final window ends after its last frame
        finally:
            if watchdog is not None:
                watchdog.stopping()
            # The final (partial) window and health go out before the clean 'offline'.
            if window_start is not None:
                self._close_window(now)
            self._publish_health()
            self.publisher.close(clean=True)
            self.source.close()
            if watchdog is not None:
                watchdog.close()
        return RunResult(
            frames_read=frames_read,
            frames_analyzed=self.health.frames_analyzed,
            frames_dropped=sum(self.health.dropped.values()),
            windows_published=self._windows,
            stopped_by=stopped_by,
        )

    def _process(self, raw: RawFrame) -> None:
        t0 = time.monotonic()
        try:
            frame = self.anonymizer.process(raw)
        except FrameDropped as drop:
            self.health.frame_dropped(drop.reason)
            self.analyzer.frame_dropped(raw.timestamp_s, drop.reason)
            if self.health.failing:
                log.error("anonymizer failing closed on every frame: %s", drop)
            else:
                log.warning("frame %d dropped: %s", raw.index, drop)
            return
        t1 = time.monotonic()
        self.health.record_latency("anonymize", (t1 - t0) * 1000)
        analysis = self.analyzer.process(frame)
        self.health.record_latency("analyze", (time.monotonic() - t1) * 1000)
        self.health.frame_analyzed()
        self._emit_events(analysis.events)
        if self.on_frame is not None:
            self.on_frame(analysis)

    def _emit_events(self, events: Iterable[AnomalyEvent]) -> None:
        for event in events:
            self._publish(anomaly_message(event))
