#!/usr/bin/env python3
"""What ``anonymize.max_detail_px_per_m`` costs in counting accuracy, on vtest.avi:

    python scripts/evaluate_detail_cap.py                 # caps: none, 125, 62.5, 40, 25 px/m
    python scripts/evaluate_detail_cap.py --json eval/detail_cap.json

1. Ground plane from people's heights (vtest has no surveyed points). The real anonymizer runs
   uncapped on every 10th frame; a line px/m = slope * foot_row + intercept is fitted to the
   person boxes wholly inside the frame (people taken as 1.7 m tall:
   ``appliance.detail_level.fit_height_scale``). For a level camera over flat ground that line
   is exact, and it fixes a homography: across the view a metre is ``s(y) = slope*y + intercept``
   pixels at row y, and depth is ``f / s(y)`` metres for a focal length ``f`` (assumed from a 60°
   horizontal field of view; it only sets how much depth is foreshortened, which never exceeds
   the across-the-view stretch the density is taken from). Four image points and their ground
   positions from that homography make the ``analytics.ground_plane`` printed below.
2. With that plane and no zones (the strictest case: the whole visible ground, whose nearest row
   is the frame's bottom edge), each cap's detail plan is the appliance's own
   (``appliance.detail_level.plan_detail``), and the real anonymizer runs on the 20 labelled frames of
   eval/vtest_labels.yaml. Reported per cap: the factor, the working frame it amounts to, count
   MAE and bias against the hand counts, and faces/heads hidden per frame.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from appliance.app import build_anonymizer, working_size  # noqa: E402
from appliance.capture.frame import RawFrame  # noqa: E402
from appliance.config.loader import load_config  # noqa: E402
from appliance.detail_level import WHOLE_GROUND, fit_height_scale, plan_detail  # noqa: E402

HFOV_DEG = 60.0
PLANE_IMAGE_POINTS = [(0.1, 0.45), (0.9, 0.45), (0.9, 0.95), (0.1, 0.95)]


def frames(video: str, wanted: set) -> Any:
    import cv2

    cap = cv2.VideoCapture(video)
    i = 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        if i in wanted:
            yield i, image
        i += 1
    cap.release()


def calibrate(video: str, n_frames: int) -> Dict[str, Any]:
    cfg = load_config()
    w, h = working_size(cfg.profile)
    boxes: List[np.ndarray] = []
    with build_anonymizer(cfg) as anonymizer:
        for i, image in frames(video, set(range(0, n_frames, 10))):
            boxes.append(anonymizer.process(RawFrame(i, i / 10, image)).people.boxes)
    scale = fit_height_scale(np.concatenate(boxes), (w, h))
    assert scale is not None, "no whole person found to calibrate from"
    focal = (w / 2) / math.tan(math.radians(HFOV_DEG / 2))
    world = []
    for fx, fy in PLANE_IMAGE_POINTS:
        x, y = fx * w, fy * h
        s = scale.slope * y + scale.intercept
        world.append([round((x - w / 2) / s, 3), round(focal / s, 3)])
    return {
        "slope": scale.slope,
        "intercept": scale.intercept,
        "people": scale.people,
        "focal_px": focal,
        "ground_plane": {"image_points": [list(p) for p in PLANE_IMAGE_POINTS], "world_points_m": world},
    }


def evaluate(video: str, labels: Dict[int, int], plane: Dict[str, Any], cap: Optional[float]) -> Dict[str, Any]:
    overrides: Dict[str, Any] = {"analytics": {"ground_plane": plane}}
    if cap is not None:
        overrides["anonymize"] = {"max_detail_px_per_m": cap}
    cfg = load_config(overrides=overrides)
    plan = plan_detail(cfg)
    errors, faces, heads = [], 0, 0
    with build_anonymizer(cfg, detail=plan) as anonymizer:
        for i, image in frames(video, set(labels)):
            frame = anonymizer.process(RawFrame(i, i / 10, image))
            errors.append(len(frame.people) - labels[i])
            faces += frame.faces_blurred
            heads += frame.heads_blurred
    (whole,) = plan.zones  # no zones: the whole visible ground
    w, h = plan.reduced_size(plan.frame_size)
    return {
        "cap_px_per_m": cap,
        "factor": round(plan.factor, 4),
        "effective_frame": f"{w}x{h}",
        "max_px_per_m": round(whole.px_per_m, 1),
        "count_mae": round(float(np.mean(np.abs(errors))), 2),
        "count_bias": round(float(np.mean(errors)), 2),
        "faces_per_frame": round(faces / len(errors), 2),
        "heads_per_frame": round(heads / len(errors), 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", default=str(REPO.parent / "shared" / "data" / "vtest.avi"))
    p.add_argument("--labels", default=str(REPO / "eval" / "vtest_labels.yaml"))
    p.add_argument("--caps", default="none,125,62.5,40,25")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    if not Path(args.video).is_file():
        sys.exit(f"{args.video}: no such file (give --video)")
    spec = yaml.safe_load(Path(args.labels).read_text())
    labels = {int(k): int(v) for k, v in spec["counts"].items()}
    calibration = calibrate(args.video, int(spec["frames"]))
    plane = calibration["ground_plane"]
    print(f"height fit: px/m = {calibration['slope']:.4f} * foot_row + {calibration['intercept']:.2f} "
          f"({calibration['people']} people), f = {calibration['focal_px']:.0f} px")
    print("analytics:\n  ground_plane: " + json.dumps(plane))
    capped = plan_detail(load_config(overrides={"analytics": {"ground_plane": plane},
                                                "anonymize": {"max_detail_px_per_m": 62.5}}))
    (whole,) = capped.measured
    print(f"uncapped: {WHOLE_GROUND} up to {whole.px_per_m:.1f} px/m ({whole.level}); factor for 62.5: "
          f"{capped.factor:.3f}")
    rows = []
    for c in args.caps.split(","):
        row = evaluate(args.video, labels, plane, None if c == "none" else float(c))
        rows.append(row)
        print(json.dumps(row))
    if args.json:
        Path(args.json).write_text(json.dumps({"calibration": calibration, "caps": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
