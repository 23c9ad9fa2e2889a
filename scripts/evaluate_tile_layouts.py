#!/usr/bin/env python3
"""Compare person-detector tile layouts on the labelled vtest frames: count accuracy against
detector time, side by side (about 2 minutes on 2 cores).

    python scripts/evaluate_tile_layouts.py [--video ../shared/data/vtest.avi] [--labels eval/vtest_labels.yaml]

For another site: its footage and hand counts of some of its frames (same format as
eval/vtest_labels.yaml); the derived layouts are printed as ``detection.perspective_bands`` too.

Layouts: the shipped tilings (2x1, perspective), other fixed band layouts, and layouts derived
from people's heights: a line ``height_px = a * foot_row + b`` is fitted to the person boxes the
perspective setting finds on every 10th frame (score >= 0.5, boxes wholly inside the frame), and
bands are placed from the top foot row down so that the smallest person of each band (feet on the
band's top edge) is at least ``target`` pixels tall at the model's input; below the row where the
full frame already gives ``target`` pixels, no tiles. The full frame always runs first. The line is
fitted on the first 795 frames (80 s at 10 fps).

Reported per layout: windows per frame, count MAE at thresholds 0.3/0.4/0.5 and bias at 0.4 on the
20 labelled frames, and the median detector milliseconds per frame, timed interleaved (every frame
through each layout in turn, ``--repeats`` passes), as a ratio to 2x1. Only the ratios mean
anything on a shared machine. Results: docs/analytics.md ("Perspective tiles").
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from evaluate import read_video  # noqa: E402  (scripts/, beside this file)

from appliance.config.loader import load_config  # noqa: E402
from appliance.models import open_person_detector  # noqa: E402
from appliance.models.person_detector import TILE_OVERLAP, Band, Window, band_windows, tile_windows  # noqa: E402

INPUT_PX = 300
# Fixed layouts tried besides the shipped ones: (top, bottom, columns) bands, fractions of the height.
BAND_LAYOUTS: Dict[str, Tuple[Tuple[float, float, int], ...]] = {
    "3 top": ((0.0, 0.5, 3),),
    "2 top": ((0.0, 0.5, 2),),
    "3 top to 0.6": ((0.0, 0.6, 3),),
    "3 top + 1 middle": ((0.0, 0.5, 3), (0.3, 0.85, 1)),
    "2 top 0.1-0.45 + 2 middle": ((0.1, 0.45, 2), (0.3, 0.85, 2)),
    "3 top + 2 middle 0.25-0.8": ((0.0, 0.5, 3), (0.25, 0.8, 2)),
}
TARGETS_PX = (45, 55, 65)  # smallest person at the model input, for the height-derived layouts
MAX_SQUASH = 1.5  # a tile may be at most this much wider than tall (the model input is square)


def read_frames(video: str, wanted: Sequence[int]) -> Dict[int, np.ndarray]:
    want = set(wanted)
    return {i: img for i, img in enumerate(read_video(video)) if i in want}


def fit_height_line(boxes: np.ndarray, frame_h: int) -> Tuple[float, float]:
    """Least-squares ``height = a * foot_row + b`` over boxes wholly inside the frame."""
    inside = (boxes[:, 1] > 2) & (boxes[:, 3] < frame_h - 2)
    b = boxes[inside]
    a_, b_ = np.linalg.lstsq(np.c_[b[:, 3], np.ones(len(b))], b[:, 3] - b[:, 1], rcond=None)[0]
    return float(a_), float(b_)


def height_bands(width: int, height: int, a: float, b: float, top_row: float, target_px: float) -> List[Band]:
    """Bands from ``top_row`` down, each as tall as keeps its smallest person at ``target_px``:
    ``(top, bottom, columns)``, fractions of the height, as ``detection.perspective_bands`` takes them."""
    bands: List[Band] = []
    foot = top_row
    while foot < height and (a * foot + b) * INPUT_PX / height < target_px:
        person = a * foot + b
        y1 = max(0.0, foot - person)
        y2 = min(float(height), y1 + INPUT_PX * person / target_px)
        cols = 1
        while width * (1 + TILE_OVERLAP * (cols - 1)) / cols > MAX_SQUASH * (y2 - y1):
            cols += 1
        bands.append((round(y1 / height, 3), round(y2 / height, 3), cols))
        foot = y2
    return bands


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", default=str(REPO.parent / "shared" / "data" / "vtest.avi"))
    p.add_argument("--labels", default=str(REPO / "eval" / "vtest_labels.yaml"))
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    labels = {int(k): int(v) for k, v in yaml.safe_load(Path(args.labels).read_text())["counts"].items()}
    fit_frames = list(range(0, 795, 10))
    frames = read_frames(args.video, sorted(set(labels) | set(fit_frames)))
    h, w = next(iter(frames.values())).shape[:2]
    cfg = load_config()
    prof = cfg.profile
    det = open_person_detector(
        prof.models.person,
        providers=prof.runtime.execution_providers,
        threads=prof.runtime.intra_op_threads,
        input_size=INPUT_PX,
        tiling="perspective",
        score_threshold=0.2,
        nms_iou=cfg.detection.nms_iou,
        min_box_height_px=cfg.detection.min_box_height_px,
    )

    found = [det.detect(frames[i]) for i in fit_frames if i in frames]
    boxes = np.concatenate([d.boxes[d.scores >= 0.5] for d in found])
    a, b = fit_height_line(boxes, h)
    top_row = float(np.percentile(boxes[:, 3], 1))
    print(f"height line from {len(boxes)} boxes: height_px = {a:.3f} * foot_row + {b:.1f}; top foot row {top_row:.0f}")

    layouts: Dict[str, List[Window]] = {t: tile_windows(w, h, t) for t in ("2x1", "perspective")}
    layouts.update({name: band_windows(w, h, bands) for name, bands in BAND_LAYOUTS.items()})
    derived = {f"from heights, {t} px": height_bands(w, h, a, b, top_row, t) for t in TARGETS_PX}
    layouts.update({name: band_windows(w, h, bands) for name, bands in derived.items()})

    scores: Dict[str, Dict[int, np.ndarray]] = {n: {} for n in layouts}
    times: Dict[str, List[float]] = {n: [] for n in layouts}
    for rep in range(args.repeats):
        sys.stderr.write(f"\rpass {rep + 1}/{args.repeats}")
        sys.stderr.flush()
        for i in labels:
            for name, windows in layouts.items():
                t0 = time.perf_counter()
                d = det.detect_in_windows(frames[i], windows)
                times[name].append(1000 * (time.perf_counter() - t0))
                scores[name][i] = d.scores
    sys.stderr.write("\n")

    ref = float(np.median(times["2x1"]))
    print("\n| layout | windows | MAE 0.3 | MAE 0.4 | bias 0.4 | MAE 0.5 | detector time / 2x1 |")
    print("|---|---|---|---|---|---|---|")
    for name, windows in layouts.items():
        cells = []
        for thr in (0.3, 0.4, 0.5):
            errs = [int((scores[name][i] >= thr).sum()) - n for i, n in labels.items()]
            cells.append((float(np.mean(np.abs(errs))), float(np.mean(errs))))
        ratio = float(np.median(times[name])) / ref
        print(
            f"| {name} | {len(windows)} | {cells[0][0]:.2f} | {cells[1][0]:.2f} | {cells[1][1]:+.2f} "
            f"| {cells[2][0]:.2f} | {ratio:.2f} |"
        )
    print("\nThe derived layouts as site config (with a board profile running person_tiling: perspective):")
    for name, bands in derived.items():
        items = ", ".join(f"{{top: {t:g}, bottom: {btm:g}, columns: {c}}}" for t, btm, c in bands)
        print(f"{name}:  detection: {{perspective_bands: [{items}]}}")


if __name__ == "__main__":
    main()
