"""The anonymizer: faces hidden in place, heads too, fail closed, and nothing else can make an AnonymizedFrame."""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import Tuple

import cv2
import numpy as np
import pytest
from support.independent_face_detector import detect_faces as independent_faces

from appliance.anonymize import AnonymizedFrame, Anonymizer, FrameDropped
from appliance.anonymize.anonymizer import head_boxes
from appliance.anonymize.blur import expand_boxes, hide_regions, merge_overlapping
from appliance.capture import RawFrame
from appliance.config import load_config
from appliance.config.schema import AnonymizeConfig
from appliance.models import load_detectors
from appliance.models.detections import Detections
from appliance.resources import data_file, sample_clip

FACE_IMAGE = data_file("selftest_face.jpg")


def portrait(scale: float = 1.0) -> np.ndarray:
    image = cv2.imread(str(FACE_IMAGE), cv2.IMREAD_COLOR)
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC) if scale != 1 else image


@lru_cache(maxsize=1)
def detectors() -> Tuple[object, object]:
    cfg = load_config()
    return load_detectors(cfg.profile, cfg.anonymize, cfg.detection)


def anonymizer(live: bool = False, **overrides: object) -> Anonymizer:
    face, person = detectors()
    return Anonymizer(face, person, AnonymizeConfig(**overrides), live=live)


class Broken:
    """A detector whose model fails, as a corrupt file or a dead accelerator would."""

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        raise RuntimeError("onnxruntime: invalid input")


class Fixed:
    """A detector that returns the given boxes (to control exactly what is found on which frame)."""

    def __init__(self, *frames: np.ndarray) -> None:
        self.frames = list(frames)

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        boxes = self.frames.pop(0) if self.frames else np.zeros((0, 4), np.float32)
        return Detections(boxes.astype(np.float32), np.ones(len(boxes), np.float32))


# --------------------------------------------------------------------------- blur strength


@pytest.mark.parametrize("scale", [1.0, 2.5])  # an 80 px and a 200 px face
@pytest.mark.parametrize("method", ["gaussian", "pixelate", "fill"])
def test_hidden_face_is_not_found_by_an_independent_detector(scale: float, method: str) -> None:
    image = portrait(scale)
    found = independent_faces(image)
    assert len(found) == 1  # RetinaFace sees the face before
    boxes = expand_boxes(found[:, :4], 0.3, image.shape[1], image.shape[0])
    hide_regions(image, boxes, method)  # type: ignore[arg-type]
    assert len(independent_faces(image, score_threshold=0.3)) == 0


def test_the_check_above_can_fail_a_weak_blur_is_still_a_face() -> None:
    # Why the default is not a plain small-kernel blur: RetinaFace still finds this face.
    image = portrait(2.5)
    x1, y1, x2, y2 = expand_boxes(independent_faces(image)[:, :4], 0.3, image.shape[1], image.shape[0])[0]
    image[y1:y2, x1:x2] = cv2.GaussianBlur(image[y1:y2, x1:x2], (45, 45), 0)
    assert len(independent_faces(image)) == 1


def test_hide_regions_changes_only_the_regions() -> None:
    image = portrait()
    before = image.copy()
    hide_regions(image, np.array([[10, 10, 60, 50]]), "fill", "box")
    assert (image[10:50, 10:60] == 0).all()
    image[10:50, 10:60] = before[10:50, 10:60]
    assert (image == before).all()


# --------------------------------------------------------------------------- the stage


def test_real_face_is_found_and_blurred_in_place_by_the_default_anonymizer() -> None:
    image = portrait()
    raw = RawFrame(0, 0.0, image)
    frame = anonymizer().process(raw)
    assert frame.faces_blurred >= 1  # at the default 0.2 threshold a second, spurious box may be hidden too
    assert frame.image is image  # in place: no unblurred copy is left behind
    assert len(independent_faces(frame.image, score_threshold=0.3)) == 0
    face_detector, _ = detectors()
    assert len(face_detector.detect(frame.image)) == 0


def test_heads_of_people_on_the_sample_clip_are_blurred() -> None:
    cap = cv2.VideoCapture(str(sample_clip()))
    for _ in range(100):
        ok, image = cap.read()
    assert ok
    original = image.copy()
    frame = anonymizer().process(RawFrame(100, 0.0, image))
    assert len(frame.people) >= 3
    assert frame.heads_blurred == len(frame.people)
    # The top of every person box has changed; the bottom (feet) is the scene as it was.
    for x1, y1, x2, y2 in frame.people.boxes.astype(int):
        head_h = max(2, int((y2 - y1) * 0.2))
        assert np.abs(frame.image[y1 : y1 + head_h, x1:x2].astype(int) - original[y1 : y1 + head_h, x1:x2]).sum() > 0


def test_head_blur_can_be_turned_off() -> None:
    cap = cv2.VideoCapture(str(sample_clip()))
    _, image = cap.read()
    frame = anonymizer(head_blur=False).process(RawFrame(0, 0.0, image))
    assert frame.heads_blurred == 0


@pytest.mark.parametrize("broken", ["face", "person"])
def test_a_failing_model_drops_the_frame_and_destroys_its_pixels(broken: str) -> None:
    face, person = detectors()
    if broken == "face":
        face = Broken()
    else:
        person = Broken()
    stage = Anonymizer(face, person, AnonymizeConfig())
    image = portrait()
    with pytest.raises(FrameDropped) as dropped:
        stage.process(RawFrame(0, 0.0, image))
    assert dropped.value.reason == f"{broken}_model_error"
    assert not image.any()  # fail closed: nothing of the frame survives


def test_a_live_frame_over_the_latency_budget_is_dropped() -> None:
    image = portrait()
    with pytest.raises(FrameDropped, match="anonymize_too_slow"):
        anonymizer(live=True, max_latency_ms=0.001).process(RawFrame(0, 0.0, image))
    assert not image.any()


def test_a_file_frame_is_never_dropped_for_time() -> None:
    frame = anonymizer(live=False, max_latency_ms=0.001).process(RawFrame(0, 0.0, portrait()))
    assert frame.faces_blurred >= 1


def test_a_face_missed_for_a_few_frames_stays_blurred() -> None:
    face_box = np.array([[100, 100, 140, 150]])
    none = np.zeros((0, 4))
    stage = Anonymizer(Fixed(face_box, none, none), Fixed(), AnonymizeConfig(persist_frames=2, method="fill"))
    frames = [np.full((240, 320, 3), 200, np.uint8) for _ in range(4)]
    results = [stage.process(RawFrame(i, float(i), f)) for i, f in enumerate(frames)]
    centre = (125, 120)  # (y, x) inside the face box
    assert [int(r.image[centre].sum()) for r in results] == [0, 0, 0, 600]  # seen once, kept 2 more frames


def test_only_the_anonymizer_can_make_an_anonymized_frame() -> None:
    with pytest.raises(TypeError, match="only be created by"):
        AnonymizedFrame(0, 0.0, portrait(), Detections(), 0, 0)


def test_remembered_head_blur_never_hides_people_from_the_next_frames_detector() -> None:
    # The same scene five times: yesterday's head blur must not be painted over the frame before the
    # person detector looks at it, or people fade from the count frame by frame (a bug we had).
    cap = cv2.VideoCapture(str(sample_clip()))
    _, scene = cap.read()
    stage = anonymizer()
    counts = [len(stage.process(RawFrame(i, float(i), scene.copy())).people) for i in range(5)]
    assert counts[0] >= 2
    assert counts == [counts[0]] * 5


# --------------------------------------------------------------------------- faces at the frame edge


SMALL_PORTRAIT = Path(__file__).parent / "data" / "face_portrait_small.jpg"


class NoFaces:
    """A face detector that finds nothing, to see what the head blur alone hides."""

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        return Detections()


def _unchanged_fraction(after: np.ndarray, before: np.ndarray, box: np.ndarray) -> float:
    x1, y1, x2, y2 = (int(v) for v in box[:4])
    x1, y1 = max(x1, 0), max(y1, 0)
    return float((np.abs(after[y1:y2, x1:x2].astype(int) - before[y1:y2, x1:x2]).sum(2) == 0).mean())


def _lower_third(face: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = face[:4]
    return np.array([x1, y1 + (y2 - y1) * 0.66, x2, y2])


@pytest.mark.parametrize("cut", [0.4, 0.5, 0.6])  # fraction of the face's width lost at the left edge
def test_a_face_cut_by_the_left_edge_is_found_and_hidden_down_to_the_chin(cut: float) -> None:
    full = cv2.imread(str(SMALL_PORTRAIT), cv2.IMREAD_COLOR)
    x1, _, x2, _ = independent_faces(full, score_threshold=0.5)[0][:4]
    image = np.ascontiguousarray(full[:, int(x1 + (x2 - x1) * cut) :])
    truth = independent_faces(image, score_threshold=0.3)
    assert len(truth) == 1  # the independent detector still sees the half face
    before = image.copy()
    frame = anonymizer().process(RawFrame(0, 0.0, image))
    assert frame.faces_blurred >= 1  # found by our face model, not only hidden by the head blur
    assert len(independent_faces(frame.image, score_threshold=0.3)) == 0
    assert _unchanged_fraction(frame.image, before, _lower_third(truth[0])) < 0.02  # mouth and chin too


@pytest.mark.parametrize("path", [SMALL_PORTRAIT, FACE_IMAGE])
def test_the_head_blur_alone_reaches_the_chin_of_a_head_and_shoulders_view(path: Path) -> None:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    face = independent_faces(image, score_threshold=0.5)[0]
    before = image.copy()
    _, person = detectors()
    frame = Anonymizer(NoFaces(), person, AnonymizeConfig()).process(RawFrame(0, 0.0, image))
    assert len(frame.people) >= 1
    assert _unchanged_fraction(frame.image, before, face) == 0.0


def test_a_standing_persons_head_box_is_the_top_of_the_box() -> None:
    people = Detections(np.array([[100, 50, 140, 170], [0, 0, 120, 100]], np.float32), np.ones(2, np.float32))
    heads = head_boxes(people, head_height_ratio=0.28)
    assert heads[0].tolist() == pytest.approx([100, 50, 140, 50 + 120 * 0.28])  # tall and narrow: height rule
    assert heads[1].tolist() == pytest.approx([0, 0, 120, 90])  # chest-up view: 0.75 of the width


# --------------------------------------------------------------------------- concurrency and merging


@pytest.mark.parametrize("concurrent", [True, False])
@pytest.mark.parametrize("broken", ["face", "person", "both"])
def test_either_model_failing_drops_the_frame_whether_or_not_they_run_side_by_side(
    concurrent: bool, broken: str
) -> None:
    face, person = detectors()
    stage = Anonymizer(
        Broken() if broken in ("face", "both") else face,
        Broken() if broken in ("person", "both") else person,
        AnonymizeConfig(),
        concurrent=concurrent,
    )
    image = portrait()
    with pytest.raises(FrameDropped) as dropped:
        stage.process(RawFrame(0, 0.0, image))
    assert dropped.value.reason == ("person_model_error" if broken == "person" else "face_model_error")
    assert not image.any()
    stage.close()


def test_side_by_side_and_one_after_the_other_give_the_same_frame() -> None:
    cap = cv2.VideoCapture(str(sample_clip()))
    face, person = detectors()
    with Anonymizer(face, person, AnonymizeConfig(), concurrent=True) as together:
        alone = Anonymizer(face, person, AnonymizeConfig(), concurrent=False)
        for i in range(6):
            ok, image = cap.read()
            assert ok
            a = together.process(RawFrame(i, i / 10, image.copy()))
            b = alone.process(RawFrame(i, i / 10, image.copy()))
            assert np.array_equal(a.image, b.image)
            assert np.array_equal(a.people.boxes, b.people.boxes) and a.faces_blurred == b.faces_blurred


def test_close_ends_the_worker_thread() -> None:
    face, person = detectors()
    before = set(threading.enumerate())
    stage = Anonymizer(face, person, AnonymizeConfig())
    stage.process(RawFrame(0, 0.0, portrait()))
    workers = [t for t in threading.enumerate() if t not in before and t.name.startswith("detector")]
    assert len(workers) == 1
    stage.close()
    assert not workers[0].is_alive()


def test_merged_regions_cover_every_input_box_and_keep_separate_heads_apart() -> None:
    same_head = np.array([[100, 40, 130, 80], [102, 41, 132, 81], [104, 42, 134, 82], [105, 45, 131, 79]])
    other_head = np.array([[140, 40, 170, 80]])
    boxes = np.concatenate([same_head, other_head]).astype(np.int32)
    merged = merge_overlapping(boxes)
    assert len(merged) == 2
    for x1, y1, x2, y2 in boxes:
        assert any(m[0] <= x1 and m[1] <= y1 and m[2] >= x2 and m[3] >= y2 for m in merged)


def test_remembered_heads_are_hidden_in_fewer_regions_than_boxes_on_the_sample_clip() -> None:
    cap = cv2.VideoCapture(str(sample_clip()))
    stage = anonymizer()
    boxes = regions = 0
    for i in range(12):
        ok, image = cap.read()
        assert ok
        frame = stage.process(RawFrame(i, i / 10, image))
        boxes += frame.heads_blurred + sum(len(r) for r in list(stage._recent_heads)[:-1])
        regions += stage.regions_hidden
    assert regions < boxes / 2


class FailsOnWindow:
    """Stands in for the person model's onnxruntime session and fails on one window of the frame
    (a tile only: the full frame succeeds), as an accelerator fault in the middle of a frame would."""

    def __init__(self, inner: object, failing_call: int) -> None:
        self.inner = inner
        self.calls = 0
        self.failing_call = failing_call
        self.lock = threading.Lock()

    def run(self, *args: object) -> object:
        with self.lock:
            self.calls += 1
            fail = self.calls == self.failing_call
        if fail:
            raise RuntimeError("onnxruntime: device lost")
        return self.inner.run(*args)  # type: ignore[attr-defined]


@pytest.mark.parametrize("concurrent", [True, False])
def test_one_failing_person_window_drops_the_whole_frame(concurrent: bool) -> None:
    cfg = load_config()
    face, person = load_detectors(cfg.profile, cfg.anonymize, cfg.detection)
    assert len(person.windows(768, 576)) > 1, "the default profile tiles the frame"
    person.session = FailsOnWindow(person.session, failing_call=3)
    stage = Anonymizer(face, person, AnonymizeConfig(), concurrent=concurrent)
    image = cv2.resize(portrait(), (768, 576))
    with pytest.raises(FrameDropped) as dropped:
        stage.process(RawFrame(0, 0.0, image))
    assert dropped.value.reason == "person_model_error" and "device lost" in dropped.value.detail
    assert not image.any()  # nothing of the frame survives, though the face model and other windows succeeded
    ok = stage.process(RawFrame(1, 0.1, cv2.resize(portrait(), (768, 576))))  # the next frame is anonymized again
    assert ok.faces_blurred >= 1
    stage.close()
