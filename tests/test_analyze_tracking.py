"""Tracker, counting lines and dwell time: the track-based analytics."""

from __future__ import annotations

from typing import List, Tuple

import numpy as np
import pytest
from support.analysis import FPS, H, W, analyzer, config, detections, frame, person_at

from appliance.analyze.dwell import DwellTimer
from appliance.analyze.line import LineCounter
from appliance.analyze.tracker import Tracker
from appliance.config.schema import LineConfig, TrackerConfig
from appliance.vocabulary import LineCounts


def walk(start: Tuple[float, float], velocity_px_s: Tuple[float, float], n: int) -> List[Tuple[float, float]]:
    return [(start[0] + velocity_px_s[0] * i / FPS, start[1] + velocity_px_s[1] * i / FPS) for i in range(n)]


def test_a_walking_person_keeps_one_track_confirmed_after_min_hits() -> None:
    tracker = Tracker(TrackerConfig(min_hits=3))
    ids, confirmed = set(), []
    for i, (x, y) in enumerate(walk((100, 300), (80, 0), 30)):
        tracks, _ = tracker.update(detections([person_at(x, y)]), i / FPS)
        assert len(tracks) == 1
        ids.add(tracks[0].id)
        confirmed.append(tracks[0].confirmed)
    assert len(ids) == 1
    assert confirmed[:2] == [False, False] and all(confirmed[2:])


def test_track_velocity_estimates_the_anchor_speed_in_pixels_per_second() -> None:
    tracker = Tracker(TrackerConfig())
    for i, (x, y) in enumerate(walk((100, 200), (60, 30), 40)):
        tracks, _ = tracker.update(detections([person_at(x, y)]), i / FPS)
    assert tracks[0].velocity == pytest.approx([60, 30], abs=3)


def test_two_people_passing_each_other_keep_their_own_tracks() -> None:
    tracker = Tracker(TrackerConfig())
    a = walk((100, 300), (100, 0), 50)
    b = walk((600, 330), (-100, 0), 50)  # same row, slightly lower: their boxes overlap mid-way
    first = None
    for i in range(50):
        tracks, _ = tracker.update(detections([person_at(*a[i]), person_at(*b[i])]), i / FPS)
        by_det = {tr.detection_index: tr.id for tr in tracks}
        if first is None:
            first = by_det
        assert by_det == first


def test_a_missed_frame_keeps_the_track_but_a_long_absence_ends_it() -> None:
    tracker = Tracker(TrackerConfig(max_age_s=1.0))
    path = walk((100, 300), (50, 0), 60)
    ids = []
    ended_all: List[int] = []
    for i, (x, y) in enumerate(path):
        seen = not (10 <= i < 12 or 30 <= i < 45)  # a 0.2 s gap, then a 1.5 s gap
        tracks, ended = tracker.update(detections([person_at(x, y)] if seen else []), i / FPS)
        ended_all += ended
        if seen:
            ids.append(tracks[0].id if tracks[0].detection_index is not None else None)
    assert ids[0] == ids[9] == ids[10]  # survived the short gap
    assert ids[-1] != ids[0] and ended_all == [ids[0]]


def test_weak_detections_extend_tracks_but_never_start_them() -> None:
    tracker = Tracker(TrackerConfig(high_score=0.5))
    tracks, _ = tracker.update(detections([person_at(100, 300)], score=0.3), 0.0)
    assert tracks == []
    for i in range(5):
        tracks, _ = tracker.update(detections([person_at(100 + 5 * i, 300)], score=0.9), (i + 1) / FPS)
    tid = tracks[0].id
    tracks, _ = tracker.update(detections([person_at(130, 300)], score=0.3), 0.6)
    assert [(t.id, t.detection_index) for t in tracks] == [(tid, 0)]


# ----------------------------------------------------------------------------- lines


def vertical_line(x: float = 0.5, **kw: float) -> LineConfig:
    # Drawn top to bottom: its right-hand side (seen on screen) is the left of the frame.
    return LineConfig(name="door", start=(x, 0.1), end=(x, 0.9), **kw)


def run_line(line: LineConfig, xs: List[float], y: float = 300) -> Tuple[int, int]:
    tracker = Tracker(TrackerConfig())
    counter = LineCounter(line, (W, H))
    n_in = n_out = 0
    for i, x in enumerate(xs):
        tracks, ended = tracker.update(detections([person_at(x, y)]), i / FPS)
        crossed = counter.update(tracks, ended)
        n_in, n_out = n_in + crossed.in_, n_out + crossed.out
    return n_in, n_out


def test_crossing_direction_right_hand_side_of_start_to_end_is_in() -> None:
    right_to_left = list(np.linspace(600, 200, 30))
    assert run_line(vertical_line(), right_to_left) == (1, 0)
    assert run_line(vertical_line(), right_to_left[::-1]) == (0, 1)


def test_jitter_on_the_line_never_counts() -> None:
    wobble = [400 + 5 * (-1) ** i for i in range(60)]  # feet wobbling ±5 px across the line
    assert run_line(vertical_line(min_crossing_px=8), wobble) == (0, 0)


def test_jitter_after_a_crossing_counts_it_once() -> None:
    wobble_past_the_line = [405, 395, 406, 394, 412, 398, 420]
    path = [*np.linspace(200, 395, 20), *wobble_past_the_line, *np.linspace(430, 600, 10)]
    assert run_line(vertical_line(min_crossing_px=8), path) == (0, 1)


def test_walking_back_and_forth_counts_each_real_crossing() -> None:
    there = list(np.linspace(250, 550, 20))
    assert run_line(vertical_line(), there + there[::-1] + there) == (1, 2)


def test_passing_beyond_the_end_of_the_line_does_not_count() -> None:
    line = LineConfig(name="short", start=(0.5, 0.1), end=(0.5, 0.3))  # y 60..180 px
    assert run_line(line, list(np.linspace(200, 600, 30)), y=450) == (0, 0)


def test_a_line_near_the_frame_edge_counts_people_entering_right_at_it() -> None:
    # Line 8 px from the left edge: a person appears with feet 3 px from the edge and walks in.
    line = vertical_line(x=0.01, min_crossing_px=8)
    assert run_line(line, list(np.linspace(3, 200, 20))) == (0, 1)


def test_crossings_show_per_frame_and_sum_in_the_window() -> None:
    an = analyzer(config(lines=[{"name": "door", "start": (0.5, 0.1), "end": (0.5, 0.9)}]))
    per_frame = []
    for i, x in enumerate(np.linspace(200, 600, 30)):
        per_frame.append(an.process(frame(i, [person_at(x, 300)])).crossings["door"])
    assert sum(c.out for c in per_frame) == 1 and sum(c.in_ for c in per_frame) == 0
    assert an.close_window(0.0, 3.0).lines == {"door": LineCounts(in_=0, out=1)}


def test_track_ids_are_reported_per_box_once_confirmed() -> None:
    an = analyzer(config())
    ids = [an.process(frame(i, [person_at(100 + 10 * i, 300)])).track_ids for i in range(4)]
    assert ids[0] == [None] and ids[3][0] is not None


# ----------------------------------------------------------------------------- dwell


def test_dwell_is_the_time_a_visit_lasted_with_a_grace_for_border_jitter() -> None:
    timer = DwellTimer(exit_grace_s=1.0)
    t = 0.0
    for i in range(31):  # inside from 0 to 3 s, except a 0.5 s flicker outside
        t = i / FPS
        timer.update(t, [] if 10 <= i < 15 else [7], [])
    for i in range(31, 45):
        timer.update(i / FPS, [], [])
    mean, p90 = timer.close_window(4.5)
    assert mean == pytest.approx(3.0) and p90 == pytest.approx(3.0)


def test_dwell_window_includes_visits_in_progress_then_forgets_finished_ones() -> None:
    timer = DwellTimer(exit_grace_s=1.0)
    for i in range(21):
        timer.update(i / FPS, [1] if i <= 10 else [1, 2], [])
    timer.update(2.1, [2], [1])  # track 1 ended (deleted) after 2.0 s inside
    mean, _ = timer.close_window(2.1)
    assert mean == pytest.approx((2.0 + 1.0) / 2)  # track 2 entered at 1.1 s
    assert timer.close_window(2.2) == (pytest.approx(1.0), pytest.approx(1.0))


def test_zone_dwell_reaches_the_window_summary() -> None:
    zone = {"name": "left", "polygon": [(0, 0), (0.5, 0), (0.5, 1), (0, 1)]}
    an = analyzer(config(zones=[zone], analytics={"dwell_exit_grace_s": 0.5}))
    for i in range(60):  # stands at x=200 for 4 s, then walks out to the right
        x = 200 if i < 40 else 200 + (i - 40) * 30
        an.process(frame(i, [person_at(x, 300)]))
    s = an.close_window(0.0, 6.0)
    # Confirmed at 0.2 s (min_hits 3); inside until x passes 400 px at about 4.6 s.
    assert s.zones["left"].dwell_mean_s == pytest.approx(4.4, abs=0.25)
