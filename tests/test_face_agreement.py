"""scripts/face_agreement.py counts what it claims: matching and blur coverage, with the real models.

The figures in docs/performance.md ('Face model agreement') come from ``match_pairs`` (one-to-one,
IoU >= 0.5) and ``coverage`` of the mask the anonymizer's own ``expand_boxes``/``hide_regions``
would hide. Here they run on the real CenterFace detections of committed frames: a Megamind frame
(tests/data/megamind_frame40.jpg, 640x480, three fp32 faces: two real, one on the hair above the
woman's face) and the small portrait.
"""

from __future__ import annotations

from types import ModuleType
from typing import Tuple

import cv2
import numpy as np
import pytest
from support.repo import REPO, load_script

from appliance.config.schema import AnonymizeConfig
from appliance.models import open_face_detector

DATA = REPO / "tests" / "data"
CFG = AnonymizeConfig()


@pytest.fixture(scope="module")
def fa() -> ModuleType:
    return load_script("face_agreement")


def read(name: str) -> np.ndarray:
    image = cv2.imread(str(DATA / name))
    assert image is not None, name
    return image


def faces(name: str, precision: str = "fp32", size: Tuple[int, int] = (640, 480)) -> Tuple[np.ndarray, np.ndarray]:
    image = read(name)
    det = open_face_detector(f"centerface-{precision}", threads=1, input_size=size,
                             score_threshold=CFG.face_score_threshold)
    d = det.detect(image)
    return d.boxes, d.scores


def mask_of(fa: ModuleType, boxes: np.ndarray) -> np.ndarray:
    return fa.hidden_mask(boxes, 640, 480, CFG.margin_ratio, CFG.shape)


def test_a_detector_matches_itself_one_to_one_and_its_blur_covers_every_face_it_finds(fa: ModuleType) -> None:
    boxes, _ = faces("megamind_frame40.jpg")
    assert len(boxes) >= 2
    pairs = fa.match_pairs(boxes, boxes)
    assert sorted((r, c) for r, c, _ in pairs) == [(i, i) for i in range(len(boxes))]
    assert all(iou == pytest.approx(1.0) for _, _, iou in pairs)
    mask = mask_of(fa, boxes)
    assert all(fa.coverage(mask, b) == 1.0 for b in boxes)


def test_a_face_nobody_blurs_is_wholly_unblurred_and_one_blurred_elsewhere_partly(fa: ModuleType) -> None:
    boxes, _ = faces("megamind_frame40.jpg")
    best = int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
    others = np.delete(boxes, best, axis=0)
    assert fa.coverage(mask_of(fa, boxes[:0]), boxes[best]) == 0.0
    # The other faces' blur reaches into the biggest face (the hair box overlaps it), not all of it.
    part = fa.coverage(mask_of(fa, others), boxes[best])
    assert 0.0 < part < fa.COVERED_MIN
    assert len(fa.match_pairs(boxes, others)) == len(boxes) - 1


def test_a_box_shifted_by_half_its_width_is_no_match_but_its_blur_still_hides_most_of_the_face(fa: ModuleType) -> None:
    boxes, _ = faces("face_portrait_small.jpg")
    assert len(boxes) == 1
    face = boxes[0] + np.asarray([0, 100, 0, 100], np.float32)  # into a 640x480 frame, away from the edge
    shifted = face + np.asarray([1, 0, 1, 0], np.float32) * (face[2] - face[0]) / 2
    assert fa.match_pairs(face[None], shifted[None]) == []  # IoU 1/3
    # Grown by the margin, the shifted box's ellipse still hides much of the face, not enough.
    assert 0.5 < fa.coverage(mask_of(fa, shifted[None]), face) < fa.COVERED_MIN


def test_int8_and_a_smaller_input_are_scored_against_the_reference_face_by_face(fa: ModuleType) -> None:
    frame = fa.Frame("megamind_frame40.jpg", "megamind", read("megamind_frame40.jpg"))
    reference = faces("megamind_frame40.jpg")
    for precision, size in (("int8", (640, 480)), ("int8", (480, 352))):
        found = faces("megamind_frame40.jpg", precision, size)
        same = faces("megamind_frame40.jpg", "fp32", size)
        r = fa.frame_result(frame, found, same, reference, CFG.margin_ratio, CFG.shape)
        pairs = fa.match_pairs(reference[0], found[0])
        assert r.found == len(found[0]) and r.reference == len(reference[0])
        assert r.matched_reference == len(pairs) == len(r.ious) == len(r.score_diffs)
        assert r.matched_same_size_fp32 == len(fa.match_pairs(same[0], found[0]))
        assert all(iou >= fa.MATCH_IOU for iou in r.ious)
        assert r.score_diffs == [round(float(found[1][c] - reference[1][i]), 4) for i, c, _ in pairs]
        # Every matched reference face is hidden by the blur of the face it was matched to.
        assert all(r.coverage[i] >= fa.COVERED_MIN for i, _, _ in pairs)


def test_an_edge_cut_frame_keeps_the_visible_part_of_the_face_as_its_truth(fa: ModuleType) -> None:
    portrait = read("face_portrait_small.jpg")
    face = faces("face_portrait_small.jpg")[0][0]
    frames = fa.portrait_frames(portrait, face, (640, 480))
    by_name = {f.name: f for f in frames}
    centred = by_name["portrait face 80px"]
    assert centred.truth[3] - centred.truth[1] == pytest.approx(80, abs=0.5)
    cut = by_name["portrait face 80px, left edge, 50% visible"]
    width = (face[2] - face[0]) * 80 / (face[3] - face[1])
    assert cut.truth[0] == 0 and cut.truth[2] == pytest.approx(width / 2, abs=1)
    right = by_name["portrait face 160px, right edge, 35% visible"]
    assert right.truth[2] == 640 and 640 - right.truth[0] == pytest.approx(0.35 * 2 * width, abs=1)


@pytest.mark.parametrize("side", ["left", "right"])
def test_a_face_cut_by_the_frame_edge_is_found_and_wholly_hidden(fa: ModuleType, side: str) -> None:
    # The blur of a box clipped by the frame edge used to be the ellipse inscribed in the clipped
    # box, which left the cut face's corners along the edge sharp (88-95 % of it hidden).
    portrait = read("face_portrait_small.jpg")
    face = faces("face_portrait_small.jpg")[0][0]
    frames = {f.name: f for f in fa.portrait_frames(portrait, face, (640, 480))}
    cut = frames[f"portrait face 80px, {side} edge, 35% visible"]
    det = open_face_detector("centerface-int8", threads=1, input_size=(480, 352),
                             score_threshold=CFG.face_score_threshold)
    found = det.detect(cut.image).boxes
    assert len(found) == 1
    assert fa.coverage(mask_of(fa, found), cut.truth) == 1.0
