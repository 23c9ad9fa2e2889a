"""Detail level (px/m at each zone, IEC 62676-4 DORI) and the ``anonymize.max_detail_px_per_m`` cap."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest
import yaml

from appliance.anonymize import Anonymizer
from appliance.anonymize.detail_cap import reduce_detail
from appliance.anonymize.testing import SCENE_UNTOUCHED, KnownDetections, anonymized
from appliance.app import PreviewDetail, build_analyzer, build_anonymizer, draw_overlay, preview_detail
from appliance.capture.frame import RawFrame
from appliance.config import load_config
from appliance.config.geometry import homography
from appliance.config.schema import ApplianceConfig, GroundPlaneConfig, ZoneConfig
from appliance.detail_level import (
    WHOLE_GROUND,
    DetailPlan,
    ZoneDetail,
    capped_size,
    detail_scale,
    details_from_people,
    details_from_plane,
    dori_level,
    fit_height_scale,
    plan_detail,
    plane_px_per_m,
)
from appliance.errors import InputError
from appliance.models.detections import Detections
from appliance.transparency import build_notice

W, H = 768, 576  # the default profile's working size


def top_down_plane(px_per_m: float) -> Dict[str, list]:
    """A camera looking straight down: every metre on the ground is ``px_per_m`` pixels, everywhere."""
    image = [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]
    return {"image_points": image, "world_points_m": [[x * W / px_per_m, y * H / px_per_m] for x, y in image]}


def config(**site: object) -> ApplianceConfig:
    return load_config(overrides=site)


# --------------------------------------------------------------------------- the scale


@pytest.mark.parametrize(
    ("px_per_m", "level"),
    [(0, "below detect"), (24.9, "below detect"), (25, "detect"), (62.4, "detect"), (62.5, "observe"),
     (124.9, "observe"), (125, "recognise"), (250, "identify"), (1000, "identify")],
)
def test_densities_are_named_on_the_iec_62676_4_scale(px_per_m: float, level: str) -> None:
    assert dori_level(px_per_m) == level


# --------------------------------------------------------------------------- from the ground plane


def test_a_top_down_camera_has_the_same_density_in_every_zone() -> None:
    plane = GroundPlaneConfig(**top_down_plane(130.0))
    zones = [
        ZoneConfig(name="left", polygon=[(0, 0), (0.5, 0), (0.5, 1)]),
        ZoneConfig(name="right", polygon=[(0.5, 0), (1, 0), (1, 1)]),
    ]
    details = details_from_plane(zones, plane, (W, H))
    assert [d.zone for d in details] == ["left", "right"]
    for d in details:
        assert d.px_per_m == pytest.approx(130.0, rel=1e-6)
        assert d.level == "recognise" and d.recognisable
    (whole,) = details_from_plane([], plane, (W, H))
    assert whole.zone == WHOLE_GROUND and whole.px_per_m == pytest.approx(130.0, rel=1e-6)


def level_camera(a: float, b: float, focal_px: float) -> np.ndarray:
    """Image-to-ground homography of a level camera over flat ground: across the view a metre is
    ``a * y + b`` pixels at row y (the horizon is where that is 0), depth is ``focal_px / (a y + b)``."""
    return np.array([[1.0, 0.0, -W / 2], [0.0, 0.0, focal_px], [0.0, a, b]])


def test_density_grows_towards_the_camera_as_the_perspective_says() -> None:
    a, b = 0.2, -20.0  # horizon at row 100; 95 px/m at the bottom row
    rows = np.array([150.0, 300.0, 450.0, 575.0])
    centre = np.stack([np.full_like(rows, W / 2), rows], axis=1)
    # At the centre column the largest stretch is across the view (depth is foreshortened).
    assert plane_px_per_m(level_camera(a, b, 800.0), centre) == pytest.approx(a * rows + b, rel=1e-9)
    beyond = plane_px_per_m(level_camera(a, b, 800.0), np.array([[W / 2, 150.0], [W / 2, 50.0]]))
    assert not np.isnan(beyond[0]) and np.isnan(beyond[1])  # above the horizon is not ground


def test_the_worst_point_of_a_zone_is_its_nearest() -> None:
    a, b, f = 0.2, -20.0, 800.0
    matrix = level_camera(a, b, f)
    image = [(0.3, 0.4), (0.7, 0.4), (0.7, 0.9), (0.3, 0.9)]
    world = [tuple(p) for p in _project(matrix, [(x * W, y * H) for x, y in image])]
    plane = GroundPlaneConfig(image_points=image, world_points_m=world)
    near = ZoneConfig(name="near", polygon=[(0.45, 0.8), (0.55, 0.8), (0.55, 0.95), (0.45, 0.95)])
    far = ZoneConfig(name="far", polygon=[(0.45, 0.3), (0.55, 0.3), (0.55, 0.4), (0.45, 0.4)])
    got = {d.zone: d.px_per_m for d in details_from_plane([near, far], plane, (W, H))}
    # The nearest row, 0.95 of the frame; off the centre column the stretch is a little larger.
    assert got["near"] >= a * 0.95 * H + b
    assert got["near"] == pytest.approx(a * 0.95 * H + b, rel=0.01)
    assert got["far"] == pytest.approx(a * 0.4 * H + b, rel=0.02)


def _project(matrix: np.ndarray, points: List[Tuple[float, float]]) -> np.ndarray:
    p = np.asarray(points, np.float64) @ matrix[:, :2].T + matrix[:, 2]
    return p[:, :2] / p[:, 2:3]


def test_homography_of_the_schema_agrees_with_the_synthetic_camera() -> None:
    matrix = level_camera(0.2, -20.0, 800.0)
    src = [(100.0, 300.0), (600.0, 300.0), (600.0, 500.0), (100.0, 500.0)]
    fitted = homography(src, [tuple(p) for p in _project(matrix, src)])
    assert fitted == pytest.approx(matrix / matrix[2, 2], rel=1e-6)


# --------------------------------------------------------------------------- from people's heights


def boxes_on(slope: float, intercept: float, feet: List[float], x: float = 300.0) -> np.ndarray:
    heights = [1.7 * (slope * y + intercept) for y in feet]
    return np.array([[x, y - h, x + h / 3, y] for y, h in zip(feet, heights)], np.float32)


def test_person_heights_give_the_density_line() -> None:
    boxes = boxes_on(0.2, -20.0, [200.0, 300.0, 400.0, 500.0])
    cut = np.array([[0.0, 100.0, 40.0, 575.0]], np.float32)  # touches the frame's edge: too short to trust
    scale = fit_height_scale(np.concatenate([boxes, cut]), (W, H))
    assert scale is not None and scale.people == 4
    assert scale.slope == pytest.approx(0.2, rel=1e-4) and scale.intercept == pytest.approx(-20.0, abs=0.05)
    zone = ZoneConfig(name="z", polygon=[(0.2, 0.5), (0.8, 0.5), (0.8, 0.75), (0.2, 0.75)])
    (d,) = details_from_people([zone], scale, (W, H))
    assert d.px_per_m == pytest.approx(0.2 * 0.75 * H - 20, rel=1e-3)


def test_no_whole_person_gives_no_estimate() -> None:
    assert fit_height_scale(np.zeros((0, 4), np.float32), (W, H)) is None
    one = fit_height_scale(boxes_on(0.0, 50.0, [300.0]), (W, H))
    assert one is not None and one.slope == 0 and one.intercept == pytest.approx(50.0)


# --------------------------------------------------------------------------- the cap


def test_the_cap_gives_the_downscale_factor() -> None:
    details = [ZoneDetail("a", 100.0, "observe"), ZoneDetail("b", 250.0, "identify")]
    assert detail_scale(62.5, details) == pytest.approx(0.25)
    assert detail_scale(300.0, details) == 1.0  # already below: never upscaled
    assert detail_scale(None, details) == 1.0
    assert capped_size((768, 576), 0.25) == (192, 144)
    assert capped_size((768, 576), 0.3) == (230, 172)  # rounded down: density at or below the cap
    assert capped_size((768, 576), 1e-6) == (1, 1)


def test_the_plan_is_fixed_from_the_config() -> None:
    cfg = config(analytics={"ground_plane": top_down_plane(200.0)}, anonymize={"max_detail_px_per_m": 50.0})
    plan = plan_detail(cfg)
    assert plan.factor == pytest.approx(0.25) and plan.frame_size == (W, H)
    width, height = plan.reduced_size((W, H))
    assert width >= 190 and width * 200.0 / W <= 50.0 and height * 200.0 / H <= 50.0  # rounded down: at the cap
    assert [(d.zone, round(d.px_per_m, 6)) for d in plan.zones] == [(WHOLE_GROUND, 50.0)]
    assert plan_detail(config(analytics={"ground_plane": top_down_plane(200.0)})).factor == 1.0
    unmeasured = plan_detail(config())
    assert unmeasured.measured == () and unmeasured.factor == 1.0
    with pytest.raises(ValueError):
        DetailPlan((W, H), None, (), factor=0.0)


def test_the_cap_needs_a_ground_plane() -> None:
    with pytest.raises(InputError) as err:
        config(anonymize={"max_detail_px_per_m": 62.5})
    line = str(err.value)
    assert "\n" not in line
    assert "anonymize.max_detail_px_per_m" in line and "analytics.ground_plane" in line


def test_reducing_detail_removes_fine_stripes_in_place() -> None:
    image = np.zeros((8, 16, 3), np.uint8)
    image[:, ::2] = 255  # one-pixel stripes: detail at full resolution only
    buffer = image.ctypes.data
    reduce_detail(image, DetailPlan((16, 8), None, (), factor=0.5))
    assert image.shape == (8, 16, 3) and image.ctypes.data == buffer
    assert np.ptp(image[:, 2:-2]) <= 2  # averaged to grey: the stripes are gone
    untouched = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    before = untouched.copy()
    reduce_detail(untouched, DetailPlan((4, 4), None, ()))
    assert np.array_equal(untouched, before)


class Recording(KnownDetections):
    def __init__(self) -> None:
        super().__init__()
        self.seen: Optional[np.ndarray] = None

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        self.seen = frame_bgr.copy()
        return self.detections


def test_the_detectors_see_only_the_reduced_frame() -> None:
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, ::2] = 255
    faces, people = Recording(), Recording()
    plan = DetailPlan((64, 64), None, (), factor=0.25)
    stage = Anonymizer(faces, people, SCENE_UNTOUCHED, concurrent=False, detail=plan)
    frame = stage.process(RawFrame(0, 0.0, image))
    assert faces.seen is not None and people.seen is not None
    for seen in (faces.seen, people.seen, frame.image):
        assert seen.shape == (64, 64, 3) and np.ptp(seen[:, 4:-4]) <= 2


# --------------------------------------------------------------------------- notice and preview


def test_the_notice_states_the_detail_level_after_the_cap() -> None:
    plane = top_down_plane(200.0)
    uncapped = build_notice(config(analytics={"ground_plane": plane})).detail_level
    assert [(z.zone, z.px_per_m, z.level) for z in uncapped.zones] == [(WHOLE_GROUND, 200.0, "recognise")]
    assert "faces could be recognised" in uncapped.text and "IEC 62676-4" in uncapped.scale
    capped = build_notice(config(analytics={"ground_plane": plane}, anonymize={"max_detail_px_per_m": 60.0}))
    assert capped.detail_level.cap_px_per_m == 60.0
    assert capped.detail_level.zones[0].px_per_m <= 60.0 and capped.detail_level.zones[0].level == "detect"
    assert "downscaled" in capped.detail_level.text
    unknown = build_notice(config()).detail_level
    assert unknown.zones == [] and unknown.text.startswith("not measured")


def distinct_runs(image: np.ndarray, axis: int) -> int:
    """How many runs of repeated columns (axis 1) or rows (axis 0) the image is made of."""
    changes = np.diff(image.astype(np.int16), axis=axis) != 0
    return 1 + int(np.count_nonzero(np.any(changes, axis=tuple(a for a in range(3) if a != axis))))


def test_the_notice_promises_the_density_the_real_anonymizer_leaves_in_the_frame() -> None:
    """The public notice's px/m per zone is what a frame holds after the device's own anonymizer
    (models and all, as ``appliance run`` builds it): measured from the pixels it returns."""
    a, b, f = 0.2, -20.0, 800.0  # a level camera: density grows towards the bottom of the frame
    image_points = [(0.3, 0.4), (0.7, 0.4), (0.7, 0.9), (0.3, 0.9)]
    world = _project(level_camera(a, b, f), [(x * W, y * H) for x, y in image_points])
    site = {
        "zones": [{"name": "near", "polygon": [[0.3, 0.8], [0.7, 0.8], [0.7, 0.95], [0.3, 0.95]]},
                  {"name": "far", "polygon": [[0.3, 0.35], [0.7, 0.35], [0.7, 0.5], [0.3, 0.5]]}],
        "analytics": {"ground_plane": {"image_points": image_points, "world_points_m": world.tolist()}},
    }
    uncapped = {z.zone: z.px_per_m for z in build_notice(config(**site)).detail_level.zones}
    cfg = config(**site, anonymize={"max_detail_px_per_m": 40.0})
    promised = {z.zone: z.px_per_m for z in build_notice(cfg).detail_level.zones}
    assert promised["near"] == 40.0 and promised["far"] < 40.0

    noise = np.random.default_rng(7).integers(0, 256, (H, W, 3), dtype=np.uint8)  # detail in every pixel
    with build_anonymizer(cfg) as anonymizer:
        frame = anonymizer.process(RawFrame(0, 0.0, noise))
    kept = distinct_runs(frame.image, axis=1) / W
    assert distinct_runs(frame.image, axis=0) / H == pytest.approx(kept, abs=1 / H)
    for zone, px_per_m in uncapped.items():
        held = px_per_m * kept  # the density left in the frame, from its pixels
        # Equal to within the notice's 0.1 px/m rounding and one pixel of the frame's width.
        assert held <= promised[zone] + 0.05, zone
        assert promised[zone] - held <= px_per_m / W + 0.05, zone


def test_preview_marks_a_zone_where_faces_could_be_recognised() -> None:
    zone = {"name": "gate", "polygon": [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8]]}
    cfg = config(zones=[zone], analytics={"ground_plane": top_down_plane(150.0)})
    detail = preview_detail(cfg, plan_detail(cfg), np.zeros((0, 4), np.float32), (W, H))
    assert not detail.estimated and detail.zones[0].level == "recognise"
    (warning,) = detail.warnings()
    assert "gate" in warning and "150 px/m" in warning and "max_detail_px_per_m" in warning
    frame = anonymized(np.full((H, W, 3), 128, np.uint8), Detections.empty())
    analysis = build_analyzer(cfg).process(frame)
    drawn = draw_overlay(frame, analysis, cfg, detail)
    assert np.all(drawn[H - 5, W // 2] == (0, 0, 200))  # the red warning line along the bottom
    calm = draw_overlay(frame, analysis, cfg, PreviewDetail([ZoneDetail("gate", 40.0, "detect")], estimated=False))
    assert np.all(calm[H - 5, W // 2] == 128)
    capped = config(
        zones=[zone], analytics={"ground_plane": top_down_plane(150.0)}, anonymize={"max_detail_px_per_m": 100.0}
    )
    assert preview_detail(capped, plan_detail(capped), np.zeros((0, 4), np.float32), (W, H)).warnings() == []


def test_preview_without_a_ground_plane_estimates_from_people() -> None:
    zone = {"name": "gate", "polygon": [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8]]}
    cfg = config(zones=[zone])
    detail = preview_detail(cfg, plan_detail(cfg), boxes_on(0.3, 0.0, [200.0, 400.0]), (W, H))
    assert detail.estimated and detail.zones[0].px_per_m == pytest.approx(0.3 * 0.8 * H, rel=1e-3)
    assert len(detail.warnings()) == 1 and "estimated" in detail.warnings()[0]
    assert preview_detail(cfg, plan_detail(cfg), np.zeros((0, 4), np.float32), (W, H)).zones == []


@pytest.mark.slow
def test_appliance_preview_warns_on_stderr(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({"analytics": {"ground_plane": top_down_plane(140.0)}}))
    out = tmp_path / "preview.png"
    proc = subprocess.run(
        [sys.executable, "-m", "appliance", "preview", "--config", str(site), "-o", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "140 px/m" in warnings[0] and "recognise" in warnings[0]
