#!/usr/bin/env python3
"""Does the face model find the same faces in int8 as in fp32, and at every face input size a board
profile uses, as at 640x480? And the privacy question: would the anonymizer's blur still cover
every face the fp32 640x480 model finds?

Frames (all at one frame size, default 640x480, rpi4's working size, the profile with the smaller
face input; ``--frame-size`` for another):

* ``megamind``: every ``--every``-th frame of Megamind.avi (animated faces in motion), resized to
  the frame size as capture does;
* ``portrait-scale``: portrait.jpg scaled so the face box is 12-200 px tall, centred on a grey frame;
* ``portrait-edge``: the portrait shifted so the frame's left or right edge cuts the face, keeping
  70 %, 50 % or 35 % of its width (the case the detector's mirrored edge border is for);
* ``small``: tests/data/face_portrait_small.jpg, unscaled, centred on a grey frame.

For each precision (int8, fp32) and face input size (640x480, 480x352 and every size in
firmware_configs/*.yaml) the real detector (``open_face_detector``: the edge border, the aspect
padding and the decoder of the appliance, the default site's ``face_score_threshold``) runs on
every frame. Per (precision, size):

* faces found; int8 boxes matched to the fp32 boxes at the same size (IoU >= 0.5);
* against the reference, fp32 at 640x480: recall, mean IoU of matched boxes, score differences;
* coverage: the region the anonymizer would hide (``expand_boxes`` with the default
  ``margin_ratio``, drawn by ``hide_regions`` with the default ``shape``) is rendered as a mask,
  and a reference face counts as *left unblurred* when less than 95 % of its box is hidden;
* for the portrait frames the face's true place is known (the portrait's face box at full
  resolution, scaled and shifted with the frame, clipped to it), so coverage is also counted
  against it: that counts the faces the reference itself misses too.

Person boxes (the anonymizer's head blur) and faces remembered from earlier frames are left out
on purpose: this is the face model's own coverage.

Usage: python scripts/face_agreement.py measure [--every 10] [--frame-size 640x480] [--size WxH] > faces.json
       python scripts/face_agreement.py table faces.json        # markdown tables on stdout
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import numpy as np

REPO = Path(__file__).resolve().parent.parent
# The test material (not in the repository): ../shared/data beside the main checkout, which is two
# levels up from a worktree under ../wt/.
SHARED = next((p for p in (REPO.parent / "shared" / "data", REPO.parent.parent / "shared" / "data") if p.is_dir()),
              REPO.parent / "shared" / "data")
PRECISIONS = ("int8", "fp32")
REFERENCE = ("fp32", (640, 480))
ALWAYS_SIZES = ((640, 480), (480, 352))
MATCH_IOU = 0.5
# A face counts as blurred when at least this fraction of its box lies in the hidden region: the
# ellipse inscribed in a face box grown by the default margin covers the whole box, so a face found
# in the right place is 100 % covered, and a few percent of corner is background, not face.
COVERED_MIN = 0.95
GREY = 114
FACE_HEIGHTS_PX = (12, 16, 20, 30, 40, 60, 80, 120, 160, 200)
EDGE_VISIBLE = (0.7, 0.5, 0.35)
EDGE_FACE_HEIGHTS_PX = (80, 160)

if TYPE_CHECKING:
    from appliance.anonymize.blur import Shape

Size = Tuple[int, int]


@dataclass
class Frame:
    name: str
    group: str
    image: np.ndarray
    truth: Optional[np.ndarray] = None  # (4,) xyxy of the placed face, clipped to the frame


@dataclass
class FrameResult:
    frame: str
    group: str
    found: int
    matched_same_size_fp32: Optional[int]  # int8 only: same-size fp32 boxes int8 also finds
    reference: int  # faces the reference finds
    matched_reference: int
    ious: List[float]
    score_diffs: List[float]  # this detector's score - the reference's, per matched face
    coverage: List[float]  # per reference face: fraction of its box hidden
    truth_coverage: Optional[float]  # the placed face (portrait frames)


@dataclass
class Summary:
    group: str
    precision: str
    size: str
    profiles: List[str]  # the profiles that run this precision at this size
    frames: int
    found: int
    same_size_fp32: Optional[int]  # int8 only: fp32 boxes at this size
    matched_same_size_fp32: Optional[int]
    reference: int
    matched_reference: int
    recall: float
    mean_iou: Optional[float]
    mean_score_diff: Optional[float]
    max_abs_score_diff: Optional[float]
    reference_unblurred: int  # reference faces less than COVERED_MIN hidden
    min_coverage: Optional[float]
    placed: int  # portrait frames: placed faces
    placed_unblurred: int
    unblurred_frames: List[str] = field(default_factory=list)


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_size(text: str) -> Size:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, got {text!r}") from None
    return w, h


def fmt(size: Size) -> str:
    return f"{size[0]}x{size[1]}"


# ---------------------------------------------------------------- matching and coverage


def match_pairs(
    reference: np.ndarray, candidate: np.ndarray, iou_threshold: float = MATCH_IOU
) -> List[Tuple[int, int, float]]:
    """Greedy one-to-one pairs (reference index, candidate index, IoU), best first: the matching
    the models' int8/fp32 agreement uses (``appliance.models.nms.match_pairs``)."""
    from appliance.models.nms import match_pairs as pairs

    return pairs(reference, candidate, iou_threshold)


def hidden_mask(boxes: np.ndarray, width: int, height: int, margin_ratio: float, shape: Shape) -> np.ndarray:
    """(H, W) bool: the pixels the anonymizer would hide for these face boxes, drawn by its own code
    (``expand_boxes`` then ``hide_regions``, filling black on a white frame)."""
    from appliance.anonymize.blur import expand_boxes, hide_regions

    canvas = np.full((height, width, 3), 255, np.uint8)
    hide_regions(canvas, expand_boxes(boxes, margin_ratio, width, height), "fill", shape)
    return canvas[:, :, 0] == 0


def coverage(mask: np.ndarray, box: np.ndarray) -> float:
    """Fraction of the pixels of ``box`` (xyxy, frame pixels) that ``mask`` hides."""
    h, w = mask.shape
    x1, y1 = max(0, round(float(box[0]))), max(0, round(float(box[1])))
    x2, y2 = min(w, round(float(box[2]))), min(h, round(float(box[3])))
    if x2 <= x1 or y2 <= y1:
        return 1.0  # nothing of it is in the frame
    return float(mask[y1:y2, x1:x2].mean())


# ---------------------------------------------------------------- frames


def _place(image: np.ndarray, face: np.ndarray, scale: float, center: Tuple[float, float], size: Size) -> Frame:
    """``image`` scaled by ``scale`` on a grey frame of ``size`` with the face's centre at ``center``
    (frame pixels, may lie outside); returns the frame and the face box in it (unclipped in truth)."""
    import cv2

    w, h = size
    scaled = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    f = face * scale
    dx = round(float(center[0] - (f[0] + f[2]) / 2))
    dy = round(float(center[1] - (f[1] + f[3]) / 2))
    frame = np.full((h, w, 3), GREY, np.uint8)
    sh, sw = scaled.shape[:2]
    x1, y1, x2, y2 = max(0, dx), max(0, dy), min(w, dx + sw), min(h, dy + sh)
    if x2 > x1 and y2 > y1:
        frame[y1:y2, x1:x2] = scaled[y1 - dy : y2 - dy, x1 - dx : x2 - dx]
    box = f + np.asarray([dx, dy, dx, dy], np.float32)
    return Frame("", "", frame, box)


def _clip(box: np.ndarray, size: Size) -> np.ndarray:
    return np.clip(box, 0, [size[0], size[1], size[0], size[1]]).astype(np.float32)


def portrait_frames(portrait: np.ndarray, face: np.ndarray, size: Size) -> List[Frame]:
    """The scaled and the edge-cut portrait frames; ``face``: the face box in the full portrait."""
    w, h = size
    face_h = float(face[3] - face[1])
    face_w = float(face[2] - face[0])
    out = []
    for px in FACE_HEIGHTS_PX:
        fr = _place(portrait, face, px / face_h, (w / 2, h / 2), size)
        assert fr.truth is not None
        out.append(Frame(f"portrait face {px}px", "portrait-scale", fr.image, _clip(fr.truth, size)))
    for px in EDGE_FACE_HEIGHTS_PX:
        s = px / face_h
        fw = face_w * s
        for visible in EDGE_VISIBLE:
            for side in ("left", "right"):
                # The face's centre so that ``visible`` of its width is inside the frame.
                cx = visible * fw - fw / 2 if side == "left" else w - visible * fw + fw / 2
                fr = _place(portrait, face, s, (cx, h / 2), size)
                assert fr.truth is not None
                name = f"portrait face {px}px, {side} edge, {visible:.0%} visible"
                out.append(Frame(name, "portrait-edge", fr.image, _clip(fr.truth, size)))
    return out


def megamind_frames(path: Path, every: int, size: Size) -> List[Frame]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    out = []
    index = 0
    while True:
        ok, image = cap.read()  # sequential reads: seeking in these AVIs may land on a neighbour
        if not ok:
            break
        if index % every == 0:
            frame = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            out.append(Frame(f"Megamind.avi #{index}", "megamind", frame))
        index += 1
    cap.release()
    return out


def small_portrait_frame(path: Path, size: Size) -> Frame:
    image = _read(path)
    w, h = size
    ih, iw = image.shape[:2]
    if iw > w or ih > h:
        raise SystemExit(f"{path}: larger than the frame size {fmt(size)}")
    frame = np.full((h, w, 3), GREY, np.uint8)
    x, y = (w - iw) // 2, (h - ih) // 2
    frame[y : y + ih, x : x + iw] = image
    return Frame(path.name, "small", frame)


def _read(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path))
    if image is None:
        raise SystemExit(f"{path}: cannot read the image")
    return image


# ---------------------------------------------------------------- measuring


def profile_sizes(frame_size: Size) -> Dict[Tuple[str, Size], List[str]]:
    """(precision, face input size) -> the board profiles that run the face model so, each with its
    working size when that is not ``frame_size`` (then these frames are not what it sees)."""
    from appliance.config.loader import load_board_profile
    from appliance.resources import firmware_configs_dir

    out: Dict[Tuple[str, Size], List[str]] = {}
    for path in sorted(firmware_configs_dir().glob("*.yaml")):
        prof = load_board_profile(path.stem)
        precision = prof.models.face.rsplit("-", 1)[-1]
        working = (prof.working_width, prof.working_height)
        label = prof.name if working == frame_size else f"{prof.name} ({fmt(working)} frames)"
        out.setdefault((precision, (prof.face_input_width, prof.face_input_height)), []).append(label)
    return out


Found = List[Tuple[np.ndarray, np.ndarray]]  # per frame: boxes, scores


def detect_all(frames: Sequence[Frame], sizes: Sequence[Size], threads: int) -> Dict[Tuple[str, Size], Found]:
    """(precision, size) -> per frame (boxes, scores), the default site's face threshold."""
    import cv2

    from appliance.config.schema import AnonymizeConfig
    from appliance.models import open_face_detector

    cv2.setNumThreads(1)
    threshold = AnonymizeConfig().face_score_threshold
    out: Dict[Tuple[str, Size], Found] = {}
    runs = [(p, s) for s in sizes for p in PRECISIONS]
    for k, (precision, size) in enumerate(runs, 1):
        det = open_face_detector(f"centerface-{precision}", threads=threads, input_size=size, score_threshold=threshold)
        found = []
        for i, frame in enumerate(frames, 1):
            d = det.detect(frame.image)
            found.append((d.boxes.copy(), d.scores.copy()))
            if i % 10 == 0 or i == len(frames):
                progress(f"detector {k}/{len(runs)} ({precision} {fmt(size)}): frame {i}/{len(frames)}")
        out[(precision, size)] = found
    return out


def frame_result(
    frame: Frame,
    found: Tuple[np.ndarray, np.ndarray],
    same_size_fp32: Optional[Tuple[np.ndarray, np.ndarray]],
    reference: Tuple[np.ndarray, np.ndarray],
    margin_ratio: float,
    shape: Shape,
) -> FrameResult:
    """One detector's faces on one frame against the same-size fp32 faces and the reference's."""
    boxes, scores = found
    ref_boxes, ref_scores = reference
    pairs = match_pairs(ref_boxes, boxes)
    h, w = frame.image.shape[:2]
    mask = hidden_mask(boxes, w, h, margin_ratio, shape)
    return FrameResult(
        frame=frame.name,
        group=frame.group,
        found=len(boxes),
        matched_same_size_fp32=None if same_size_fp32 is None else len(match_pairs(same_size_fp32[0], boxes)),
        reference=len(ref_boxes),
        matched_reference=len(pairs),
        ious=[round(iou, 4) for _, _, iou in pairs],
        score_diffs=[round(float(scores[c] - ref_scores[r]), 4) for r, c, _ in pairs],
        coverage=[round(coverage(mask, b), 4) for b in ref_boxes],
        truth_coverage=None if frame.truth is None else round(coverage(mask, frame.truth), 4),
    )


def summarize(
    group: str, precision: str, size: Size, profiles: List[str], rows: List[FrameResult], fp32_found: Optional[int]
) -> Summary:
    ious = [x for r in rows for x in r.ious]
    diffs = [x for r in rows for x in r.score_diffs]
    cov = [x for r in rows for x in r.coverage]
    placed = [r for r in rows if r.truth_coverage is not None]
    reference = sum(r.reference for r in rows)
    matched = sum(r.matched_reference for r in rows)
    same = [r.matched_same_size_fp32 for r in rows]
    return Summary(
        group=group,
        precision=precision,
        size=fmt(size),
        profiles=profiles,
        frames=len(rows),
        found=sum(r.found for r in rows),
        same_size_fp32=fp32_found,
        matched_same_size_fp32=None if precision == "fp32" else sum(int(x or 0) for x in same),
        reference=reference,
        matched_reference=matched,
        recall=round(matched / reference, 4) if reference else 1.0,
        mean_iou=round(float(np.mean(ious)), 4) if ious else None,
        mean_score_diff=round(float(np.mean(diffs)), 4) if diffs else None,
        max_abs_score_diff=round(float(np.max(np.abs(diffs))), 4) if diffs else None,
        reference_unblurred=sum(x < COVERED_MIN for x in cov),
        min_coverage=round(min(cov), 4) if cov else None,
        placed=len(placed),
        placed_unblurred=sum(float(r.truth_coverage or 0) < COVERED_MIN for r in placed),
        unblurred_frames=[
            r.frame
            for r in rows
            if any(x < COVERED_MIN for x in r.coverage)
            or (r.truth_coverage is not None and r.truth_coverage < COVERED_MIN)
        ],
    )


def measure(
    frames: Sequence[Frame], sizes: Sequence[Size], threads: int
) -> Tuple[List[Summary], Dict[str, List[FrameResult]]]:
    from appliance.config.schema import AnonymizeConfig

    cfg = AnonymizeConfig()
    found = detect_all(frames, sizes, threads)
    h, w = frames[0].image.shape[:2]
    users = profile_sizes((w, h))
    reference = found[REFERENCE]
    per_frame: Dict[str, List[FrameResult]] = {}
    summaries: List[Summary] = []
    groups = list(dict.fromkeys(f.group for f in frames))
    for size in sizes:
        for precision in PRECISIONS:
            same = found[("fp32", size)] if precision == "int8" else None
            rows = [
                frame_result(f, found[(precision, size)][i], None if same is None else same[i], reference[i],
                             cfg.margin_ratio, cfg.shape)
                for i, f in enumerate(frames)
            ]
            per_frame[f"{precision} {fmt(size)}"] = rows
            profiles = users.get((precision, size), [])
            for group in [*groups, "all"]:
                picked = [i for i, f in enumerate(frames) if group in ("all", f.group)]
                fp32_found = None if same is None else sum(len(same[i][0]) for i in picked)
                summaries.append(summarize(group, precision, size, profiles, [rows[i] for i in picked], fp32_found))
    return summaries, per_frame


def build_frames(every: int, size: Size, shared: Path) -> List[Frame]:
    from appliance.models import open_face_detector

    portrait = _read(shared / "portrait.jpg")
    # The face's place in the full portrait, as the reference model sees it at a generous input.
    det = open_face_detector(f"centerface-{REFERENCE[0]}", threads=1, input_size=(1280, 960))
    faces = det.detect(portrait)
    if len(faces) != 1:
        raise SystemExit(f"{shared / 'portrait.jpg'}: expected one face at full resolution, found {len(faces)}")
    frames = megamind_frames(shared / "Megamind.avi", every, size)
    frames += portrait_frames(portrait, faces.boxes[0], size)
    frames.append(small_portrait_frame(REPO / "tests" / "data" / "face_portrait_small.jpg", size))
    return frames


def cmd_measure(args: argparse.Namespace) -> int:
    import onnxruntime

    for name in ("portrait.jpg", "Megamind.avi"):
        if not (args.shared / name).is_file():
            print(f"{args.shared / name}: not found (--shared names the folder of the test material)", file=sys.stderr)
            return 2
    sizes = list(dict.fromkeys([*ALWAYS_SIZES, *(s for _, s in profile_sizes(args.frame_size)), *args.size]))
    frames = build_frames(args.every, args.frame_size, args.shared)
    progress(f"{len(frames)} frames at {fmt(args.frame_size)}, face input sizes {', '.join(map(fmt, sizes))}")
    summaries, per_frame = measure(frames, sizes, args.threads)
    result = {
        "frame_size": fmt(args.frame_size),
        "every": args.every,
        "reference": f"{REFERENCE[0]} {fmt(REFERENCE[1])}",
        "match_iou": MATCH_IOU,
        "covered_min": COVERED_MIN,
        "onnxruntime": onnxruntime.__version__,
        "summary": [asdict(s) for s in summaries],
        "frames": {k: [asdict(r) for r in rows] for k, rows in per_frame.items()},
    }
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


def _opt(value: Optional[float], digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def cmd_table(args: argparse.Namespace) -> int:
    try:
        data = json.loads(Path(args.result).read_text())
    except (OSError, ValueError) as exc:
        print(f"{args.result}: cannot read a measure result ({exc})", file=sys.stderr)
        return 2
    print(f"Frames at {data['frame_size']}; reference {data['reference']}; match IoU >= {data['match_iou']}; "
          f"a face is left unblurred when < {data['covered_min']:.0%} of its box is hidden.\n")
    print("| frames | precision | face input | profiles | found | int8 = fp32 same size | recall vs ref "
          "| mean IoU | score diff mean / max | ref faces unblurred (min cover) | placed faces unblurred |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for s in data["summary"]:
        same = "-" if s["matched_same_size_fp32"] is None else f"{s['matched_same_size_fp32']}/{s['same_size_fp32']}"
        placed = "-" if not s["placed"] else f"{s['placed_unblurred']}/{s['placed']}"
        group = f"**{s['group']}**" if s["group"] == "all" else s["group"]
        print(
            f"| {group} ({s['frames']}) | {s['precision']} | {s['size']} | {', '.join(s['profiles']) or '-'} "
            f"| {s['found']} | {same} | {s['matched_reference']}/{s['reference']} ({s['recall']:.0%}) "
            f"| {_opt(s['mean_iou'])} | {_opt(s['mean_score_diff'])} / {_opt(s['max_abs_score_diff'])} "
            f"| {s['reference_unblurred']} ({_opt(s['min_coverage'], 2)}) | {placed} |"
        )
    missed = {(s["precision"], s["size"]): s["unblurred_frames"] for s in data["summary"] if s["group"] == "all"}
    lines = [f"- {p} {size}: {', '.join(names)}" for (p, size), names in missed.items() if names]
    if lines:
        print("\nFrames with a face left unblurred:\n")
        print("\n".join(lines))
    return 0


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="measure here; JSON on stdout, progress on stderr")
    m.add_argument("--every", type=int, default=10, help="every N-th Megamind.avi frame (default %(default)s)")
    m.add_argument("--frame-size", type=parse_size, default=(640, 480), help="frame size WxH (default 640x480)")
    m.add_argument("--size", type=parse_size, action="append", default=[],
                   help="also measure this face input size WxH (a candidate for a profile; repeatable)")
    m.add_argument("--threads", type=int, default=2, help="intra-op threads per session (default %(default)s)")
    m.add_argument("--shared", type=Path, default=SHARED,
                   help="folder with portrait.jpg and Megamind.avi (default %(default)s)")
    t = sub.add_parser("table", help="markdown tables from a measure result")
    t.add_argument("result", help="JSON written by measure")
    args = parser.parse_args(argv)
    if args.command == "measure":
        if args.every < 1:
            parser.error("--every must be >= 1")
        return cmd_measure(args)
    return cmd_table(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
