"""Specification of the shipped models and their loader: integrity first, then what they detect.

Fixtures in tests/data/ are real images (no ../shared needed): ``face_portrait_small.jpg`` is
portrait.jpg (face_recognition 1.3.0 test image, MIT) scaled to 240x300; ``vtest_frame300.jpg`` is
frame 300 of OpenCV's vtest.avi read sequentially, with 6 people in view.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.config.schema import ApplianceConfig, BoardProfile, DetectionConfig
from appliance.errors import ModelIntegrityError
from appliance.models import load_detectors, open_face_detector, open_person_detector
from appliance.models.manifest import MANIFEST_SHA256, load_manifest, read_verified
from appliance.models.nms import iou_matrix, match_detections, nms
from appliance.models.person_detector import PERSPECTIVE_BANDS, band_windows, ssd_anchors, tile_windows
from appliance.models.runtime import select_providers
from appliance.models.verify import verify_models
from appliance.resources import models_dir

DATA = Path(__file__).parent / "data"
MANIFEST = load_manifest()


@pytest.fixture(scope="module")
def face_crop() -> np.ndarray:
    img = cv2.imread(str(DATA / "face_portrait_small.jpg"), cv2.IMREAD_COLOR)
    assert img is not None
    return img


@pytest.fixture(scope="module")
def vtest_frame() -> np.ndarray:
    img = cv2.imread(str(DATA / "vtest_frame300.jpg"), cv2.IMREAD_COLOR)
    assert img is not None and img.shape == (576, 768, 3)
    return img


def _names(task: str) -> list:
    return [m.name for m in MANIFEST.models if m.task == task]


def _tampered_copy(tmp_path: Path, name: str) -> Path:
    dst = tmp_path / "models"
    shutil.copytree(models_dir(), dst)
    path = dst / MANIFEST.get(name).file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, deep inside the weights
    path.write_bytes(bytes(data))
    return dst


# --------------------------------------------------------------------------- integrity


def test_every_shipped_file_matches_its_manifest_sha256() -> None:
    report = verify_models()
    assert report.ok, report.lines()
    d = report.to_dict()
    assert d["ok"] is True and d["files"] and all(f["ok"] for f in d["files"])


def test_the_default_board_profile_names_models_that_ship() -> None:
    sel = BoardProfile(name="default").models
    assert MANIFEST.get(sel.face).task == "face"
    assert MANIFEST.get(sel.person).task == "person"


def test_manifest_records_provenance_of_every_model() -> None:
    for m in MANIFEST.models:
        assert m.source.licence == "MIT" and m.source.version and len(m.source.wheel_sha256) == 64
        assert m.training_data
        if m.precision == "int8":
            assert m.quantization is not None and m.agreement_with_fp32 is not None
            assert m.agreement_with_fp32.matched_ratio >= 0.95, "int8 ships only if it keeps 95% of fp32"


@pytest.mark.parametrize("name", [m.name for m in MANIFEST.models])
def test_a_tampered_model_is_refused_with_one_line_naming_the_file(tmp_path: Path, name: str) -> None:
    root = _tampered_copy(tmp_path, name)
    report = verify_models(root)
    assert not report.ok
    bad = [c for c in report.checks if not c.ok]
    assert [c.file for c in bad] == [MANIFEST.get(name).file]
    opener = open_face_detector if MANIFEST.get(name).task == "face" else open_person_detector
    with pytest.raises(ModelIntegrityError) as exc:
        opener(name, models_dir=root)
    msg = str(exc.value)
    assert "\n" not in msg and MANIFEST.get(name).file in msg and "sha256" in msg


def test_no_session_is_created_for_a_tampered_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    created = []
    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda *a, **k: created.append(a))
    name = _names("face")[0]
    with pytest.raises(ModelIntegrityError):
        open_face_detector(name, models_dir=_tampered_copy(tmp_path, name))
    assert created == []


def test_a_model_swapped_together_with_its_manifest_hash_is_refused(tmp_path: Path) -> None:
    # The manifest moves with APPLIANCE_MODELS_DIR; its own sha256 is pinned inside the package.
    name = _names("face")[0]
    root = _tampered_copy(tmp_path, name)
    manifest = root / "manifest.yaml"
    entry = MANIFEST.get(name)
    forged = hashlib.sha256((root / entry.file).read_bytes()).hexdigest()
    manifest.write_text(manifest.read_text().replace(entry.sha256, forged))
    assert forged in manifest.read_text()
    report = verify_models(root)
    assert not report.ok and "manifest.yaml" in (report.error or "") and "sha256" in (report.error or "")
    with pytest.raises(ModelIntegrityError) as exc:
        open_face_detector(name, models_dir=root)
    assert "\n" not in str(exc.value) and "manifest.yaml" in str(exc.value)
    proc = subprocess.run(
        [sys.executable, "-m", "appliance", "count", str(DATA / "face_portrait_small.jpg")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "APPLIANCE_MODELS_DIR": str(root)},
    )
    assert proc.returncode == 2 and proc.stdout == ""
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "manifest.yaml" in errors[0] and "Traceback" not in proc.stderr


def test_the_shipped_manifest_is_the_pinned_one() -> None:
    assert hashlib.sha256((models_dir() / "manifest.yaml").read_bytes()).hexdigest() == MANIFEST_SHA256


def test_a_missing_model_file_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "models"
    shutil.copytree(models_dir(), root)
    name = _names("person")[0]
    (root / MANIFEST.get(name).file).unlink()
    assert not verify_models(root).ok
    with pytest.raises(ModelIntegrityError, match=MANIFEST.get(name).file.replace(".", r"\.")):
        open_person_detector(name, models_dir=root)


def test_a_missing_anchors_file_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "models"
    shutil.copytree(models_dir(), root)
    entry = MANIFEST.get(_names("person")[0])
    (root / entry.postprocess.anchors_file).unlink()
    with pytest.raises(ModelIntegrityError, match="anchors"):
        open_person_detector(entry.name, models_dir=root)


def test_a_missing_manifest_fails_verification(tmp_path: Path) -> None:
    report = verify_models(tmp_path)
    assert not report.ok and "manifest" in (report.error or "")
    with pytest.raises(ModelIntegrityError):
        read_verified(tmp_path, "nothing.onnx", "0" * 64)


# --------------------------------------------------------------------------- runtime


def test_providers_keep_order_skip_missing_and_end_with_cpu() -> None:
    available = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    requested = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert select_providers(requested, available) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert select_providers([], available) == ["CPUExecutionProvider"]


def test_load_detectors_uses_the_profile_and_site_thresholds() -> None:
    cfg = ApplianceConfig(profile=BoardProfile(name="t", face_input_width=320, face_input_height=256))
    face, person = load_detectors(cfg.profile, cfg.anonymize, cfg.detection)
    assert face.input_size == (320, 256)
    assert face.score_threshold == cfg.anonymize.face_score_threshold
    assert person.score_threshold == cfg.detection.person_score_threshold
    assert person.input_size == cfg.profile.person_input_size


def test_a_site_places_its_own_perspective_bands_and_the_full_frame_still_runs_first() -> None:
    # Bands are a site setting (where the camera looks); the board profile says perspective or not.
    cfg = ApplianceConfig(
        profile=BoardProfile(name="t", person_tiling="perspective"),
        detection={"perspective_bands": [{"top": 0.165, "bottom": 0.77, "columns": 2}]},
    )
    _, person = load_detectors(cfg.profile, cfg.anonymize, cfg.detection)
    assert person.windows(768, 576) == [(0, 0, 768, 576), (0, 95, 461, 444), (307, 95, 768, 444)]
    _, built_in = load_detectors(cfg.profile, cfg.anonymize, DetectionConfig())
    assert built_in.windows(768, 576) == band_windows(768, 576, PERSPECTIVE_BANDS)
    # Without perspective tiling the detector does not use bands (a config combining the two is
    # refused at load: tests/test_config_rules.py).
    _, tiled = load_detectors(BoardProfile(name="t", person_tiling="2x1"), cfg.anonymize, cfg.detection)
    assert tiled.windows(768, 576) == tile_windows(768, 576, "2x1")


# --------------------------------------------------------------------------- faces


@pytest.mark.parametrize("name", _names("face"))
def test_face_detector_finds_the_one_face_in_a_real_portrait(face_crop: np.ndarray, name: str) -> None:
    det = open_face_detector(name, input_size=(256, 320))
    faces = det.detect(face_crop)
    assert len(faces) == 1
    x1, y1, x2, y2 = faces.boxes[0]
    h, w = face_crop.shape[:2]
    # The face sits in the upper middle of the portrait and fills a good part of it.
    assert 0.2 * w < (x1 + x2) / 2 < 0.8 * w and (y2 - y1) > 0.25 * h
    assert faces.landmarks is not None and faces.landmarks.shape == (1, 5, 2)
    lm = faces.landmarks[0]
    assert ((lm[:, 0] >= x1) & (lm[:, 0] <= x2) & (lm[:, 1] >= y1) & (lm[:, 1] <= y2)).all()


@pytest.mark.parametrize("name", _names("face"))
def test_face_boxes_are_in_frame_pixels_whatever_the_detector_size(face_crop: np.ndarray, name: str) -> None:
    a = open_face_detector(name, input_size=(256, 320)).detect(face_crop)
    # Upscaled 2.7x and stretched, the crop can give an extra weak detection; the face is the best.
    b = open_face_detector(name, input_size=(640, 480)).detect(face_crop)
    assert len(a) == 1 and len(b) >= 1
    assert iou_matrix(a.boxes, b.boxes[:1])[0, 0] > 0.7


@pytest.mark.parametrize("name", _names("face"))
@pytest.mark.parametrize("value", [0, 128, 255])
def test_face_detector_finds_nothing_in_a_blank_frame(name: str, value: int) -> None:
    blank = np.full((480, 640, 3), value, np.uint8)
    assert len(open_face_detector(name).detect(blank)) == 0


# --------------------------------------------------------------------------- people


@pytest.mark.parametrize("name", _names("person"))
def test_person_detector_finds_the_people_on_a_vtest_frame(vtest_frame: np.ndarray, name: str) -> None:
    people = open_person_detector(name, score_threshold=0.4).detect(vtest_frame)
    # 6 people are in view (counted by eye); the model at 300x300 undercounts small people.
    assert 4 <= len(people) <= 7
    assert (people.boxes[:, [0, 2]] >= 0).all() and (people.boxes[:, [0, 2]] <= 768).all()
    assert (people.boxes[:, [1, 3]] >= 0).all() and (people.boxes[:, [1, 3]] <= 576).all()
    heights = people.boxes[:, 3] - people.boxes[:, 1]
    assert (heights > 30).all() and (heights < 150).all(), "pedestrians here are 40-90 px tall"


@pytest.mark.parametrize("tiling", ["2x1", "2x2", "perspective"])
def test_tiling_finds_at_least_as_many_people_without_duplicates(vtest_frame: np.ndarray, tiling: str) -> None:
    name = _names("person")[0]
    base = open_person_detector(name, score_threshold=0.4).detect(vtest_frame)
    tiled = open_person_detector(name, score_threshold=0.4, tiling=tiling).detect(vtest_frame)
    assert len(base) <= len(tiled) <= 7
    ious = iou_matrix(tiled.boxes, tiled.boxes)
    np.fill_diagonal(ious, 0)
    assert ious.max() < 0.45, "the merged boxes overlap like duplicates"


@pytest.mark.parametrize("size", [320, 416, 512])
def test_larger_input_sizes_run_with_regenerated_anchors(vtest_frame: np.ndarray, size: int) -> None:
    # detect() raises if the graph's box count and the regenerated anchors disagree.
    people = open_person_detector(_names("person")[0], input_size=size, score_threshold=0.3).detect(vtest_frame)
    assert 3 <= len(people) <= 9


def test_min_box_height_drops_small_boxes(vtest_frame: np.ndarray) -> None:
    people = open_person_detector(_names("person")[0], score_threshold=0.4, min_box_height_px=1000).detect(vtest_frame)
    assert len(people) == 0


def test_generated_anchors_reproduce_the_ones_frozen_in_the_tf_graph() -> None:
    entry = MANIFEST.get(_names("person")[0])
    frozen = np.load(models_dir() / entry.postprocess.anchors_file)
    assert frozen.shape == (1917, 4)
    np.testing.assert_allclose(ssd_anchors(300), frozen, atol=1e-4)
    assert ssd_anchors(512).shape == (5118, 4)


def test_tiles_cover_the_frame_and_overlap() -> None:
    wins = tile_windows(768, 576, "2x2")
    assert wins[0] == (0, 0, 768, 576) and len(wins) == 5
    (_, _, lx2, _), (rx1, _, _, _) = wins[1], wins[2]
    assert rx1 < lx2 and lx2 - rx1 >= 0.15 * 768
    assert tile_windows(768, 576, "off") == [(0, 0, 768, 576)]


def test_perspective_tiles_are_smallest_at_the_top_and_cover_each_band() -> None:
    wins = tile_windows(768, 576, "perspective")
    assert wins[0] == (0, 0, 768, 576)
    top = [w for w in wins[1:] if w[1] == 0]
    middle = [w for w in wins[1:] if w[1] > 0]
    assert len(top) == 3 and len(middle) == 2
    # Each band spans the whole width, and its tiles overlap their neighbours.
    for band in (top, middle):
        assert band[0][0] == 0 and band[-1][2] == 768
        assert all(b[0] < a[2] for a, b in zip(band, band[1:]))
    area = [(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in wins[1:]]
    assert max(area[:3]) < min(area[3:])  # far people (top) get the most magnification
    # The bands overlap, so nobody standing on the boundary is cut in both.
    assert middle[0][1] < top[0][3]


def test_detect_runs_the_tiling_windows_and_other_layouts_must_start_with_the_full_frame(
    vtest_frame: np.ndarray,
) -> None:
    det = open_person_detector(_names("person")[0], score_threshold=0.4, tiling="perspective")
    windows = tile_windows(768, 576, "perspective")
    assert windows == band_windows(768, 576, PERSPECTIVE_BANDS)
    np.testing.assert_array_equal(det.detect(vtest_frame).boxes, det.detect_in_windows(vtest_frame, windows).boxes)
    with pytest.raises(ValueError, match="full frame"):
        det.detect_in_windows(vtest_frame, windows[1:])


# --------------------------------------------------------------------------- int8 vs fp32


def _pairs() -> list:
    names = {m.name for m in MANIFEST.models}
    return [n for n in names if n.endswith("-int8") and n.replace("-int8", "-fp32") in names]


@pytest.mark.parametrize("int8", _pairs() or [pytest.param(None, marks=pytest.mark.skip("no int8/fp32 pair ships"))])
def test_int8_and_fp32_agree_on_a_committed_frame(int8: str, face_crop: np.ndarray, vtest_frame: np.ndarray) -> None:
    fp32 = int8.replace("-int8", "-fp32")
    if MANIFEST.get(int8).task == "face":
        a = open_face_detector(fp32, input_size=(256, 320)).detect(face_crop)
        b = open_face_detector(int8, input_size=(256, 320)).detect(face_crop)
    else:
        a = open_person_detector(fp32, score_threshold=0.4).detect(vtest_frame)
        b = open_person_detector(int8, score_threshold=0.4).detect(vtest_frame)
    assert len(match_detections(a.boxes, b.boxes, 0.5)) >= 0.8 * len(a)


# --------------------------------------------------------------------------- nms


def test_nms_keeps_the_best_of_overlapping_boxes_and_separate_ones() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.6, 0.9, 0.5], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(np.zeros((0, 4)), np.zeros((0,)), 0.5).tolist() == []


# --------------------------------------------------------------------------- pre-processing


def _reference_blob(image: np.ndarray, size: tuple, entry: object, layout: str) -> np.ndarray:
    """The straightforward formula the fast pre-processing must reproduce."""
    img = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    if entry.input.color == "RGB":  # type: ignore[attr-defined]
        img = img[:, :, ::-1]
    mean = np.asarray(entry.input.mean, np.float32)  # type: ignore[attr-defined]
    scale = np.asarray(entry.input.scale, np.float32)  # type: ignore[attr-defined]
    blob = (img.astype(np.float32) - mean) * scale
    return (blob.transpose(2, 0, 1) if layout == "NCHW" else blob)[None]


@pytest.mark.parametrize("name", _names("face"))
def test_face_preprocessing_equals_the_plain_formula_on_a_real_frame(vtest_frame: np.ndarray, name: str) -> None:
    det = open_face_detector(name, input_size=(640, 480))
    expected = _reference_blob(vtest_frame, (640, 480), det.entry, "NCHW")
    np.testing.assert_allclose(det.preprocess(vtest_frame), expected, rtol=0, atol=1e-5)
    # The buffer is reused: a second, different frame gives its own numbers, not the first's.
    other = vtest_frame[::-1].copy()
    np.testing.assert_allclose(det.preprocess(other), _reference_blob(other, (640, 480), det.entry, "NCHW"), atol=1e-5)


@pytest.mark.parametrize("name", _names("person"))
def test_person_preprocessing_equals_the_plain_formula_on_a_real_frame(vtest_frame: np.ndarray, name: str) -> None:
    det = open_person_detector(name, input_size=300)
    for window in (vtest_frame, vtest_frame[:, 300:700]):  # a tile is a non-contiguous view
        expected = _reference_blob(window, (300, 300), det.entry, "NHWC")
        np.testing.assert_allclose(det.preprocess(window), expected, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- nothing written outside


def test_a_full_run_writes_nothing_under_home(tmp_path: Path) -> None:
    # onnxruntime would otherwise keep a telemetry queue (~/.cache/Microsoft/DeveloperTools/
    # .onnxruntime/onnxruntime.db with a device id); no library may leave files in HOME.
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "appliance", "run", "--max-frames", "5"],
        capture_output=True, text=True, timeout=300, env=env, cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.returncode == 0, proc.stderr
    assert "online" in proc.stdout  # it really ran: birth printed
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*")) == []
