"""Counting, zones, overcrowding and the window summary: the part of analysis the spine needs."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from support.analysis import H, W, analyzer, config, frame, person_at
from support.publishing import printing_publisher

from appliance.analyze import WindowSummary
from appliance.capture.frame import RawFrame
from appliance.geometry import GroundPlane, points_in_polygon, polygon_area
from appliance.report import counts_message

LEFT_HALF = {"name": "left", "polygon": [(0, 0), (0.5, 0), (0.5, 1), (0, 1)]}


def test_count_is_the_number_of_people_in_the_frame() -> None:
    an = analyzer(config())
    fa = an.process(frame(0, [person_at(100, 300), person_at(500, 300), person_at(700, 500)]))
    assert fa.count == 3
    assert fa.index == 0 and fa.timestamp_s == 0.0
    assert len(fa.anchors) == 3 and len(fa.boxes) == 3 and len(fa.track_ids) == 3


def test_a_person_is_in_a_zone_by_the_bottom_centre_of_their_box() -> None:
    an = analyzer(config(zones=[LEFT_HALF]))
    # The box straddles the zone border; its feet (bottom centre, x=390) are inside.
    straddling = (370, 200, 410, 300)
    # Head inside the zone, feet outside: not in the zone.
    leaning = (395, 200, 450, 300)
    fa = an.process(frame(0, [straddling, leaning]))
    assert fa.zone_counts == {"left": 1}


def test_analysis_refuses_a_raw_frame() -> None:
    an = analyzer(config())
    raw = RawFrame(index=0, timestamp_s=0.0, image=np.zeros((H, W, 3), np.uint8))
    with pytest.raises(TypeError):
        an.process(raw)  # type: ignore[arg-type]


def test_overcrowding_is_raised_only_after_the_limit_is_exceeded_for_hold_s() -> None:
    zone = dict(LEFT_HALF, max_people=3, hold_s=1.0)
    an = analyzer(config(zones=[zone]))
    crowd = [person_at(50 + 40 * i, 400) for i in range(4)]
    events = [an.process(frame(i, crowd)).events for i in range(15)]
    raised_at = [i for i, ev in enumerate(events) if ev]
    assert raised_at == [10]  # 0.0 s .. 1.0 s above the limit
    ev = events[10][0]
    assert (ev.type, ev.zone, ev.state, ev.severity) == ("overcrowding", "left", "raised", "warning")
    assert ev.value == 4 and ev.threshold == 3 and ev.since == 0.0
    assert "above the limit 3" in ev.reason and "for 1.0s" in ev.reason


def test_a_short_spike_over_the_limit_raises_nothing() -> None:
    zone = dict(LEFT_HALF, max_people=2, hold_s=1.0)
    an = analyzer(config(zones=[zone]))
    crowd = [person_at(50 + 40 * i, 400) for i in range(3)]
    for i in range(30):
        people = crowd if i % 8 < 5 else crowd[:1]  # 0.5 s over, 0.3 s under, repeatedly
        assert an.process(frame(i, people)).events == []


def test_overcrowding_clears_only_below_the_hysteresis_level() -> None:
    zone = dict(LEFT_HALF, max_people=4, hold_s=0.5, clear_hysteresis_ratio=0.5)
    an = analyzer(config(zones=[zone]))
    people = [person_at(30 + 40 * i, 400) for i in range(6)]
    i = 0

    def run(n: int, k: int) -> list:
        nonlocal i
        out = []
        for _ in range(n):
            out += an.process(frame(i, people[:k])).events
            i += 1
        return out

    assert [e.state for e in run(10, 5)] == ["raised"]
    assert run(20, 3) == []  # at or below the limit but above 4 * 0.5: stays raised
    cleared = run(10, 1)
    assert [e.state for e in cleared] == ["cleared"] and cleared[0].severity == "info"


def test_overcrowding_far_above_the_limit_is_critical() -> None:
    zone = dict(LEFT_HALF, max_people=2, hold_s=0.0)
    an = analyzer(config(zones=[zone]))
    ev = an.process(frame(0, [person_at(30 + 40 * i, 400) for i in range(3)])).events
    assert ev[0].severity == "critical"  # 3 >= 1.5 * 2


def test_density_limit_uses_the_zone_area() -> None:
    zone = dict(LEFT_HALF, area_m2=2.0, max_density_per_m2=1.0, hold_s=0.0)
    an = analyzer(config(zones=[zone]))
    assert an.process(frame(0, [person_at(100, 400), person_at(200, 400)])).events == []
    ev = an.process(frame(1, [person_at(100 + 50 * i, 400) for i in range(3)])).events
    assert ev[0].value == 1.5 and ev[0].threshold == 1.0 and "people/m²" in ev[0].reason


def test_window_summary_aggregates_counts_per_window_and_starts_a_new_one() -> None:
    zones = [LEFT_HALF, {"name": "right", "polygon": [(0.5, 0), (1, 0), (1, 1), (0.5, 1)], "area_m2": 10.0}]
    an = analyzer(config(zones=zones))
    per_frame = [[person_at(100, 400)], [person_at(100, 400), person_at(600, 400)], []]
    for i, people in enumerate(per_frame):
        an.process(frame(i, people))
    s = an.close_window(0.0, 0.4, frames_dropped=1)
    assert isinstance(s, WindowSummary)
    assert (s.window_start, s.window_end, s.frames_analyzed, s.frames_dropped) == (0.0, 0.4, 3, 1)
    assert (s.total.min, s.total.mean, s.total.max, s.total.last) == (0, 1.0, 2, 0)
    assert (s.zones["left"].min, s.zones["left"].max, s.zones["left"].last) == (0, 1, 0)
    assert s.zones["right"].density_per_m2 == pytest.approx(1 / 3 / 10, abs=1e-4)
    assert s.zones["left"].density_per_m2 is None
    assert s.camera_ok and s.heatmap is None

    an.process(frame(5, [person_at(100, 400)] * 4))
    s2 = an.close_window(0.4, 0.8)
    assert s2.window_start == 0.4 and s2.frames_analyzed == 1 and s2.frames_dropped == 0
    assert s2.total.last == 4


def test_a_window_without_frames_says_so_instead_of_reporting_zero_people() -> None:
    an = analyzer(config(zones=[LEFT_HALF]))
    s = an.close_window(10.0, 10.0)
    assert s.frames_analyzed == 0 and s.total is None and s.zones == {}


def test_a_window_summary_is_published_with_the_documented_field_names() -> None:
    """Through the real path: the report's message builder, then the publisher's wire form."""
    cfg = config(zones=[LEFT_HALF], lines=[{"name": "door", "start": (0.5, 0), "end": (0.5, 1)}])
    an = analyzer(cfg)
    an.process(frame(0, [person_at(100, 400)]))
    out = io.StringIO()
    pub = printing_publisher(cfg, out)
    pub.start()
    pub.publish(counts_message(an.close_window(0.0, 1.0)))
    pub.close(clean=True)
    printed = [json.loads(line) for line in out.getvalue().splitlines()]
    (d,) = [line["payload"] for line in printed if line["topic"].endswith("/counts")]
    assert set(d) == {
        "v", "device_id", "boot_id", "seq", "sent_at", "clock_synced",
        "window_start", "window_end", "frames_analyzed", "frames_dropped", "total", "zones", "lines",
        "heatmap", "camera_ok", "privacy",
    }
    assert (d["window_start"], d["window_end"]) == ("1970-01-01T00:00:00.000Z", "1970-01-01T00:00:01.000Z")
    assert set(d["total"]) == {"min", "mean", "max", "last"}
    assert set(d["zones"]["left"]) == {
        "min", "mean", "max", "last", "density_per_m2", "dwell_mean_s", "dwell_p90_s", "suppressed",
    }
    assert d["lines"] == {"door": {"in": 0, "out": 0, "suppressed": False}}


def test_heatmap_counts_anchors_per_cell_when_enabled() -> None:
    an = analyzer(config(analytics={"heatmap": {"enabled": True, "rows": 2, "cols": 2}}))
    an.process(frame(0, [person_at(100, 100), person_at(700, 599), person_at(700, 600)]))
    an.process(frame(1, [person_at(100, 100)]))
    hm = an.close_window(0.0, 1.0).heatmap
    assert hm is not None and (hm.rows, hm.cols) == (2, 2)
    assert hm.cells == [[2, 0], [0, 2]]  # feet on the bottom edge still land in the last row
    assert an.close_window(1.0, 2.0).heatmap.cells == [[0, 0], [0, 0]]


def test_ground_plane_gives_zone_area_without_area_m2() -> None:
    # Image corners of a 4 m x 3 m rectangle seen head-on: 200 px per metre.
    gp = {"image_points": [(0, 0), (1, 0), (1, 1), (0, 1)], "world_points_m": [(0, 0), (4, 0), (4, 3), (0, 3)]}
    an = analyzer(config(zones=[LEFT_HALF], analytics={"ground_plane": gp}))
    assert an.zones[0].area_m2 == pytest.approx(6.0)


def test_ground_plane_undoes_perspective() -> None:
    # A trapezoid in the image (far edge narrower) is a 10 m x 10 m square on the ground.
    image = np.array([[300, 100], [500, 100], [800, 600], [0, 600]], float)
    plane = GroundPlane(image, np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float))
    assert plane.area_m2(image) == pytest.approx(100.0)
    # The near half of the image trapezoid is much less than half of the ground.
    near = np.array([[150, 350], [650, 350], [800, 600], [0, 600]], float)
    assert plane.area_m2(near) < 40


def test_point_in_polygon_and_area_helpers() -> None:
    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    inside = points_in_polygon(np.array([[5, 5], [15, 5], [-1, 5], [9.9, 0.1]]), square)
    assert inside.tolist() == [True, False, False, True]
    assert polygon_area(square) == 100.0
