"""The main job: capture -> anonymize -> analyze -> publish, with health beside it.

The frame loop (``appliance.frames``) reads, anonymizes and analyses; this module decides what
each result means for the outside world: its schedule (``appliance.schedule``) closes windows and
makes health due on the source's clock, and every message goes to the publisher. The frame
loop's reader (files) or the live source's capture thread, and the MQTT delivery, run in their own
threads behind their stage's interface.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Iterable, List, Optional

from appliance.analyze import Analyzer, AnomalyEvent
from appliance.anonymize import Anonymizer
from appliance.audit import AnomalyChanged, AuditRecorder, Stopped
from appliance.capture import CaptureStats, FrameSource
from appliance.frames import Analysed, Dropped, FrameLoop, FrameResult, Lost, StopReason
from appliance.health.clock import WallClock
from appliance.health.monitor import HealthMonitor
from appliance.health.watchdog import Watchdog
from appliance.progress import Progress
from appliance.publish import AuditHead, BrokerError, BrokerUnreachable, Message, Publisher
from appliance.report import anomaly_message, audit_head, counts_message
from appliance.schedule import HealthDue, Schedule, WindowDue
from appliance.vocabulary import ModelInfo

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    frames_read: int
    frames_analyzed: int
    frames_dropped: int
    windows_published: int
    stopped_by: StopReason


class Pipeline:
    def __init__(
        self,
        source: FrameSource,
        anonymizer: Anonymizer,
        analyzer: Analyzer,
        publisher: Publisher,
        *,
        schedule: Schedule,
        health: HealthMonitor,
        models: List[ModelInfo],
        connect_timeout_s: float,
        watchdog_timeout_s: float = 60.0,
        progress: Optional[Progress] = None,
        audit: Optional[AuditRecorder] = None,
        wall_clock: Optional[WallClock] = None,
    ) -> None:
        self.source = source
        self.anonymizer = anonymizer
        self.analyzer = analyzer
        self.publisher = publisher
        self.schedule = schedule
        self.health = health
        self.models = models
        self.connect_timeout_s = connect_timeout_s
        self.watchdog_timeout_s = watchdog_timeout_s
        self.progress = progress
        self.audit = audit  # every anomaly and the stop are recorded; its head goes into health
        self.wall_clock = wall_clock or WallClock()  # labels only; steps are reported in health
        self._windows = 0
        self._dropped_before_window = 0  # health's drop total when the current window opened
        self._decode_errors_before_window = 0
        self._loop: Optional[FrameLoop] = None
        # Analyse frame N beside the anonymization of N+1 (appliance.frames); off: one at a time.
        self.overlap_analysis = True

    def _capture_stats(self) -> CaptureStats:
        # As of the frame being handled: the loop's reader thread may have read further.
        return self._loop.stats() if self._loop is not None else self.source.stats()

    # ------------------------------------------------------------------ publishing

    def _publish(self, message: Message) -> None:
        start = time.monotonic()
        try:
            self.publisher.publish(message)
        except Exception:  # a publish bug must not stop counting; refusals show in the outbox health
            log.exception("publish failed for %s", type(message).__name__)
        self.health.record_latency("publish", (time.monotonic() - start) * 1000)

    def _close_window(self, due: WindowDue) -> None:
        dropped = self.health.dropped_total - self._dropped_before_window
        self._dropped_before_window = self.health.dropped_total
        summary = self.analyzer.close_window(due.start_s, due.end_s, frames_dropped=dropped)
        decode_errors = self._capture_stats().decode_errors
        if decode_errors > self._decode_errors_before_window:
            # Frames the decoder lost are frames nobody counted: this window cannot be trusted.
            summary = replace(summary, camera_ok=False)
        self._decode_errors_before_window = decode_errors
        self._publish(counts_message(summary, self._label_offset_s()))
        self._windows += 1

    def _publish_health(self) -> None:
        health = self.health.message(
            self._capture_stats(),
            self.publisher.stats(),
            models=self.models,
            audit=self._audit_head(),
            clock_step_s=self.wall_clock.take_step_s(),
        )
        self._publish(health)

    def _label_offset_s(self) -> float:
        """Wall time minus the source's clock: a live source's is monotonic, a file's media clock
        is already wall time from the start of the run. Read every time: a step is seen at once."""
        offset = self.wall_clock.offset_s()
        return offset if self.source.live else 0.0

    def _audit_head(self) -> Optional[AuditHead]:
        if self.audit is None:
            return None
        return audit_head(self.audit.published_head())

    def _on_clock(self, now_s: float, duration_s: float) -> None:
        for due in self.schedule.advance(now_s, duration_s):
            if isinstance(due, WindowDue):
                self._close_window(due)
            elif isinstance(due, HealthDue):
                self._publish_health()

    # ------------------------------------------------------------------ main loop

    def run(self, max_frames: Optional[int] = None, stop: Optional[threading.Event] = None) -> RunResult:
        loop = FrameLoop(
            self.source,
            self.anonymizer,
            self.analyzer,
            max_frames=max_frames,
            stop=stop,
            on_clock=self._on_clock,
            progress=self.progress,
            label="run",
            overlap_analysis=self.overlap_analysis,
        )
        self._loop = loop
        self.publisher.start()
        watchdog: Optional[Watchdog] = None
        try:
            try:
                self.publisher.connect(timeout_s=self.connect_timeout_s)
            except BrokerUnreachable as exc:
                # Store-and-forward: counting goes on, messages wait in the outbox for the broker.
                log.warning("%s; counting goes on and messages wait in the outbox", exc)
            except BrokerError as exc:
                # A refusal (TLS identity, credentials, ACL) needs someone to fix the broker or the
                # config; exiting would only end in a unit systemd stops restarting. Health shows
                # it, the publisher retries every mqtt.reconnect_max_s, the outbox keeps everything.
                log.error("%s; counting goes on, messages wait in the outbox, retrying", exc)
            # Only this loop proves liveness: a hung model or camera read stops the pings (systemd)
            # or ends the process (internal watchdog), so the broker publishes the last will.
            watchdog = Watchdog(self.watchdog_timeout_s)
            waiting_for_camera = False
            for result in loop:
                watchdog.progress()
                self.publisher.check()  # delivery dead for good: DeliveryFailed, exit 1 (restart)
                self._handle(result)
                if isinstance(result, Analysed) and (not watchdog.is_ready or waiting_for_camera):
                    if watchdog.is_ready:
                        watchdog.status("analysing frames")
                    else:
                        watchdog.ready()  # models loaded and the first frame analysed
                    waiting_for_camera = False
                elif isinstance(result, Lost) and not watchdog.is_ready:
                    # A live camera not there (yet) is retried here and reported in health: the
                    # service is up, and systemd's start timeout must not restart it for that.
                    watchdog.ready("waiting for the camera")
                    waiting_for_camera = True
        finally:
            if watchdog is not None:
                watchdog.stopping()
            loop.close()  # analysis worker and reader end before the last window closes and the source closes
            # The final (partial) window and health go out before the clean 'offline'.
            final = self.schedule.finish()
            if final is not None:
                self._close_window(final)
            if self.audit is not None:
                self.audit.record(Stopped(reason=loop.stopped_by, frames_analyzed=self.health.frames_analyzed))
            self._publish_health()
            self.publisher.close(clean=True)
            self.source.close()
            self.anonymizer.close()
            if watchdog is not None:
                watchdog.close()
        return RunResult(
            frames_read=loop.frames_read,
            frames_analyzed=self.health.frames_analyzed,
            frames_dropped=self.health.dropped_total,
            windows_published=self._windows,
            stopped_by=loop.stopped_by,
        )

    def _handle(self, result: FrameResult) -> None:
        if isinstance(result, Analysed):
            self.health.frame_captured()
            self.health.record_latency("capture", result.times.capture_ms)
            self.health.record_latency("anonymize", result.times.anonymize_ms)
            self.health.record_latency("analyze", result.times.analyze_ms)
            self.health.frame_analyzed()
            if result.analysis is not None:
                self._emit_events(result.analysis.events)
        elif isinstance(result, Dropped):
            self.health.frame_captured()
            self.health.record_latency("capture", result.times.capture_ms)
            self.health.frame_dropped(result.reason)
            if self.health.failing:
                log.error("anonymizer failing closed on every frame: %s", result)
            else:
                log.warning("frame %d dropped: %s", result.index, result)
        else:
            # Live source lost: no frame, so no count; analysis raises camera_tamper.
            self._emit_events(self.analyzer.camera_lost(result.timestamp_s))

    def _emit_events(self, events: Iterable[AnomalyEvent]) -> None:
        for event in events:
            if self.audit is not None:
                changed = AnomalyChanged(
                    type=event.type, state=event.state, zone=event.zone, value=event.value, threshold=event.threshold
                )
                self.audit.record(changed)  # never raises: the alert below goes out whatever the log does
            self._publish(anomaly_message(event, self._label_offset_s()))
