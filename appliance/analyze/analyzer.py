"""The analyze stage: wires tracker, zones, lines, dwell, heatmap and anomaly detectors by config.

Per analyzed frame (``process``) it counts people, places them in zones by the bottom-centre of
their boxes, updates tracks and line crossings, and runs each anomaly detector. ``close_window``
returns the aggregates of a window whose bounds the caller's schedule decides, and starts the next.
Only anonymized frames are accepted; the people in them were already found by the anonymizer, so
no detector runs here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from appliance.analyze.anomalies import build_detectors
from appliance.analyze.anomalies.base import AnomalyDetector, FrameContext, TrackMotion
from appliance.analyze.dwell import DwellTimer
from appliance.analyze.heatmap import HeatmapGrid
from appliance.analyze.line import LineCounter
from appliance.analyze.privacy import WindowPrivacy
from appliance.analyze.results import AnomalyEvent, FrameAnalysis, WindowSummary
from appliance.analyze.tracker import Track, Tracker
from appliance.analyze.zone import Zone
from appliance.anonymize.frame import AnonymizedFrame
from appliance.config.schema import AnalyticsConfig, AnomaliesConfig, LineConfig, PrivacyConfig, ZoneConfig
from appliance.geometry import GroundPlane, Size, to_pixels
from appliance.vocabulary import CountStats, LineCounts, ZoneStats


class _Window:
    """Running aggregates of one publishing window (its bounds belong to the caller's schedule)."""

    def __init__(self, zones: List[str], lines: List[str]) -> None:
        self.totals: List[int] = []
        self.zone_counts: Dict[str, List[int]] = {z: [] for z in zones}
        self.zone_densities: Dict[str, List[float]] = {z: [] for z in zones}
        self.lines: Dict[str, LineCounts] = {name: LineCounts(in_=0, out=0) for name in lines}
        self.camera_ok = True


class Analyzer:
    def __init__(
        self,
        frame_size: Tuple[int, int],
        *,
        zones: Sequence[ZoneConfig] = (),
        lines: Sequence[LineConfig] = (),
        analytics: Optional[AnalyticsConfig] = None,
        anomalies: Optional[AnomaliesConfig] = None,
        privacy: Optional[PrivacyConfig] = None,
        rng: Optional[np.random.Generator] = None,
    ) -> None:
        analytics = analytics or AnalyticsConfig()
        self.privacy = WindowPrivacy(privacy or PrivacyConfig(), rng)
        self.frame_size: Size = (int(frame_size[0]), int(frame_size[1]))
        ground = None
        if analytics.ground_plane is not None:
            gp = analytics.ground_plane
            ground = GroundPlane(to_pixels(gp.image_points, self.frame_size), np.asarray(gp.world_points_m))
        self.zones = [Zone(z, self.frame_size, ground) for z in zones]
        self.lines = [LineCounter(line, self.frame_size) for line in lines]
        self.tracker = Tracker(analytics.tracker)
        self.dwell = {z.name: DwellTimer(analytics.dwell_exit_grace_s) for z in self.zones}
        hm = analytics.heatmap
        self.heatmap = HeatmapGrid(hm.rows, hm.cols, self.frame_size) if hm.enabled else None
        self.detectors: List[AnomalyDetector] = build_detectors(zones, anomalies or AnomaliesConfig())
        self._window = self._new_window()

    # ------------------------------------------------------------------ per frame

    def process(self, frame: AnonymizedFrame) -> FrameAnalysis:
        if not isinstance(frame, AnonymizedFrame):
            # Structural privacy: a raw frame must never reach analysis, even by mistake.
            raise TypeError(f"Analyzer.process takes an AnonymizedFrame, not {type(frame).__name__}")
        t = float(frame.timestamp_s)
        people = frame.people
        anchors = people.bottom_centers.astype(np.float64) if len(people) else np.zeros((0, 2))
        count = len(people)

        zone_counts: Dict[str, int] = {}
        zone_densities: Dict[str, Optional[float]] = {}
        for zone in self.zones:
            zone_counts[zone.name] = zone.count(anchors)
            zone_densities[zone.name] = zone.density(zone_counts[zone.name])

        tracks, ended = self.tracker.update(people, t)
        crossings = {line.name: line.update(tracks, ended) for line in self.lines}
        observed = [tr for tr in tracks if tr.confirmed and tr.detection_index is not None]
        motions = [TrackMotion(tr.id, tr.anchor, tr.velocity, tr.height_px) for tr in observed]
        obs_anchors = np.array([m.anchor for m in motions]).reshape(-1, 2)
        zone_tracks = {}
        for zone in self.zones:
            inside = zone.contains(obs_anchors)
            zone_tracks[zone.name] = [m for m, ok in zip(motions, inside) if ok]
            self.dwell[zone.name].update(t, [m.track_id for m in zone_tracks[zone.name]], ended)

        ctx = FrameContext(
            timestamp_s=t,
            count=count,
            zone_counts=zone_counts,
            zone_densities=zone_densities,
            tracks=motions,
            zone_tracks=zone_tracks,
            image=frame.image,
        )
        events: List[AnomalyEvent] = []
        for det in self.detectors:
            events.extend(det.update(ctx))
            if ctx.camera_ok and not det.camera_ok:
                ctx = replace(ctx, camera_ok=False)  # later detectors pause on this verdict
        camera_ok = ctx.camera_ok

        self._accumulate(count, zone_counts, zone_densities, crossings, anchors, camera_ok)
        return FrameAnalysis(
            index=frame.index,
            timestamp_s=t,
            count=count,
            zone_counts=zone_counts,
            crossings=crossings,
            events=events,
            camera_ok=camera_ok,
            anchors=anchors.astype(np.float32),
            boxes=people.boxes,
            track_ids=self._track_ids_per_box(tracks, count),
        )

    @staticmethod
    def _track_ids_per_box(tracks: List[Track], n: int) -> List[Optional[int]]:
        ids: List[Optional[int]] = [None] * n
        for tr in tracks:
            if tr.confirmed and tr.detection_index is not None:
                ids[tr.detection_index] = tr.id
        return ids

    def _accumulate(
        self,
        count: int,
        zone_counts: Dict[str, int],
        zone_densities: Dict[str, Optional[float]],
        crossings: Dict[str, LineCounts],
        anchors: np.ndarray,
        camera_ok: bool,
    ) -> None:
        w = self._window
        w.totals.append(count)
        for name, c in zone_counts.items():
            w.zone_counts[name].append(c)
            d = zone_densities[name]
            if d is not None:
                w.zone_densities[name].append(d)
        for name, crossed in crossings.items():
            w.lines[name] += crossed
        if self.heatmap is not None:
            self.heatmap.add(anchors)
        w.camera_ok = w.camera_ok and camera_ok

    # ------------------------------------------------------------------ outside events

    def camera_lost(self, timestamp_s: float) -> List[AnomalyEvent]:
        """The capture source lost its signal. Returns the camera_tamper raise (publish it), if any.

        Tracks are forgotten: after a gap nobody can be matched reliably, and a crossing must not
        be counted between where someone was before the outage and where someone else is after.
        """
        t = float(timestamp_s)
        self._window.camera_ok = False
        ended = self.tracker.reset()
        for line in self.lines:
            line.update([], ended)
        for timer in self.dwell.values():
            timer.update(t, [], ended)
        return [event for det in self.detectors for event in det.signal_lost(t)]

    # ------------------------------------------------------------------ windows

    def _new_window(self) -> _Window:
        return _Window([z.name for z in self.zones], [line.name for line in self.lines])

    def close_window(self, start_s: float, end_s: float, frames_dropped: int = 0) -> WindowSummary:
        """The window ``[start_s, end_s)``'s aggregates; ``frames_dropped``: frames the anonymizer
        dropped in it (counted by the caller, which sees every frame, analysed or not)."""
        w = self._window
        start, end = float(start_s), float(end_s)
        zones: Dict[str, ZoneStats] = {}
        if w.totals:
            for zone in self.zones:
                stats = CountStats.of(w.zone_counts[zone.name])
                assert stats is not None
                dens = w.zone_densities[zone.name]
                visits = self.dwell[zone.name].visits()
                dwell_mean, dwell_p90 = self.dwell[zone.name].close_window(end)
                exact = ZoneStats(
                    min=stats.min,
                    mean=stats.mean,
                    max=stats.max,
                    last=stats.last,
                    density_per_m2=round(float(np.mean(dens)), 4) if dens else None,
                    dwell_mean_s=dwell_mean,
                    dwell_p90_s=dwell_p90,
                )
                zones[zone.name] = self.privacy.zone(exact, visits, zone.area_m2)
        else:
            for timer in self.dwell.values():
                timer.close_window(end)
        heatmap = self.heatmap.close_window() if self.heatmap is not None else None
        # A tamper flag still raised means this window's counts cannot be trusted either.
        camera_ok = w.camera_ok and all(det.camera_ok for det in self.detectors)
        total, privacy = self.privacy.total(CountStats.of(w.totals))
        summary = WindowSummary(
            window_start=start,
            window_end=end,
            frames_analyzed=len(w.totals),
            frames_dropped=frames_dropped,
            total=total,
            zones=zones,
            lines={name: self.privacy.line(counts) for name, counts in w.lines.items()},
            heatmap=heatmap,
            camera_ok=camera_ok,
            privacy=privacy,
        )
        self._window = self._new_window()
        return summary
