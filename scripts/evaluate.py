#!/usr/bin/env python3
"""Evaluate counting, line crossing and anomaly flags on real footage (vtest.avi), one command:

    python scripts/evaluate.py                       # full table (a few minutes on 2 cores)
    python scripts/evaluate.py --quick               # default detector settings only
    python scripts/evaluate.py --json eval/results.json

1. Detector settings sweep (input size x tiling x score threshold). Each (size, tiling) runs the
   person detector once over the whole clip at the lowest threshold; higher thresholds are applied
   to those cached boxes (a box's score does not depend on the threshold; NMS ran once at the lowest
   threshold, which can keep a slightly different box of a pair than a run at the higher one).
   Reported: count MAE on the labelled frames, signed bias, crossings of the labelled line against
   the truth, detector milliseconds per frame.
2. Anomaly clips made from the real video (``scripts/make_anomaly_clips.py``): frame skipping
   (running), time-reversed segments (counterflow), black / blurred / shifted frames (tamper),
   spliced low/high-count segments (gathering / dispersal). Reported per flag: recall over the clips
   made for it, median latency, and false alarms per hour on normal footage (the clip forward and
   mirrored).

Ground truth: eval/vtest_labels.yaml (labelled by eye with scripts/label_counts.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from make_anomaly_clips import Clip, make_clips  # noqa: E402

from appliance.anonymize.frame import AnonymizedFrame  # noqa: E402
from appliance.anonymize.testing import anonymized  # noqa: E402
from appliance.app import build_analyzer  # noqa: E402
from appliance.capture import to_working_size  # noqa: E402
from appliance.config.loader import load_config  # noqa: E402
from appliance.config.schema import ApplianceConfig  # noqa: E402
from appliance.models.detections import Detections  # noqa: E402

FPS = 10.0
MIN_THRESHOLD = 0.2
SMALL_W, SMALL_H = 192, 144  # frames kept in memory for the camera checks (they downscale further)
PERSON_MODEL: Optional[str] = None  # --person-model; None: the board profile's
# --working-size: frames are resized to this (width, height) as capture does for a board whose
# working resolution differs from the video's; None keeps the video's 768x576.
WORKING_SIZE: Optional[Tuple[int, int]] = None
FLAGS = ("rapid_change", "abnormal_motion", "counterflow", "camera_tamper")

# ----------------------------------------------------------------------------- progress


class Progress:
    """A dependency-free progress bar on stderr."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.n, self.t0 = max(total, 1), label, 0, time.monotonic()
        self._draw()

    def step(self, k: int = 1) -> None:
        self.n += k
        if self.n == self.total or self.n % 10 == 0:
            self._draw()

    def _draw(self) -> None:
        frac = min(self.n / self.total, 1.0)
        bar = "#" * int(frac * 30)
        el = time.monotonic() - self.t0
        sys.stderr.write(f"\r{self.label:<28} [{bar:<30}] {self.n}/{self.total} {el:5.1f}s")
        if self.n >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


# ----------------------------------------------------------------------------- video and detector


def read_video(path: str) -> Iterator[np.ndarray]:
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        sys.exit(f"{path}: cannot open video")
    while True:
        ok, img = cap.read()
        if not ok:
            break
        yield to_working_size(img, WORKING_SIZE)  # the frames the device sees (None: as read)
    cap.release()


@dataclass
class DetRun:
    size: int
    tiling: str
    boxes: List[np.ndarray]
    scores: List[np.ndarray]
    ms_per_frame: float

    def at(self, i: int, threshold: float) -> Detections:
        keep = self.scores[i] >= threshold
        return Detections(self.boxes[i][keep], self.scores[i][keep])


def open_detector(cfg: ApplianceConfig, size: int, tiling: str, models_dir: Optional[str]) -> Any:
    from appliance.models import open_person_detector

    prof = cfg.profile
    return open_person_detector(
        PERSON_MODEL or prof.models.person,
        models_dir=Path(models_dir) if models_dir else None,
        providers=prof.runtime.execution_providers,
        threads=prof.runtime.intra_op_threads,
        input_size=size,
        tiling=tiling,
        score_threshold=MIN_THRESHOLD,
        nms_iou=cfg.detection.nms_iou,
        min_box_height_px=cfg.detection.min_box_height_px,
    )


def detect_all(
    cfg: ApplianceConfig, video: str, size: int, tiling: str, n_frames: int, args: argparse.Namespace
) -> DetRun:
    model = PERSON_MODEL or cfg.profile.models.person
    at = f"_{WORKING_SIZE[0]}x{WORKING_SIZE[1]}" if WORKING_SIZE else ""
    cache = Path(args.cache_dir) / f"det_{model}_{size}_{tiling}_{MIN_THRESHOLD}{at}.npz"
    if cache.is_file() and not args.no_cache:
        z = np.load(cache, allow_pickle=False)
        n = int(z["n"])
        return DetRun(size, tiling, [z[f"b{i}"] for i in range(n)], [z[f"s{i}"] for i in range(n)], float(z["ms"]))
    det = open_detector(cfg, size, tiling, args.models_dir)
    boxes, scores = [], []
    bar = Progress(n_frames, f"detect {size}px tiling={tiling}")
    t_total = 0.0
    for img in read_video(video):
        t0 = time.perf_counter()
        d = det.detect(img)
        t_total += time.perf_counter() - t0
        boxes.append(d.boxes.astype(np.float32))
        scores.append(d.scores.astype(np.float32))
        bar.step()
    ms = 1000 * t_total / max(len(boxes), 1)
    cache.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"b{i}": b for i, b in enumerate(boxes)} | {f"s{i}": s for i, s in enumerate(scores)}
    np.savez_compressed(cache, n=len(boxes), ms=ms, **arrays)
    return DetRun(size, tiling, boxes, scores, ms)


def interleaved_timing(
    cfg: ApplianceConfig, video: str, settings: Sequence[Tuple[int, str]], n_frames: int, args: argparse.Namespace
) -> Dict[Tuple[int, str], float]:
    """Median detector ms per frame of each setting, timed side by side: every frame goes through
    each setting in turn (A, B, C, A, B, C, ...), so load from other work falls on all of them alike."""
    detectors = {s: open_detector(cfg, s[0], s[1], args.models_dir) for s in settings}
    times: Dict[Tuple[int, str], List[float]] = {s: [] for s in settings}
    bar = Progress(n_frames, "interleaved timing")
    for k, img in enumerate(read_video(video)):
        if k >= n_frames:
            break
        for s, det in detectors.items():
            t0 = time.perf_counter()
            det.detect(img)
            times[s].append(1000 * (time.perf_counter() - t0))
        bar.step()
    return {s: float(np.median(v)) for s, v in times.items()}


def make_frame(i: int, t: float, image: np.ndarray, people: Detections) -> AnonymizedFrame:
    # A replay: the boxes were recorded from the same person detector the anonymizer runs, and the
    # images are already downscaled for the camera checks; nothing here leaves the process.
    return anonymized(image, people, index=i, timestamp_s=t)


# ----------------------------------------------------------------------------- counting and lines


def count_errors(run: DetRun, threshold: float, labels: Dict[int, int]) -> Tuple[float, float]:
    errs = [len(run.at(i, threshold)) - n for i, n in labels.items()]
    return float(np.mean(np.abs(errs))), float(np.mean(errs))


def line_counts(
    run: DetRun, threshold: float, line: dict, size: Tuple[int, int], small: List[np.ndarray]
) -> Tuple[int, int]:
    cfg = load_config(
        overrides={
            "lines": [{"name": "path", "start": line["start"], "end": line["end"]}],
            "anomalies": {k: {"enabled": False} for k in FLAGS},
        }
    )
    an = build_analyzer(cfg, size)
    segments = [tuple(s) for s in line["segments"]]
    n_in = n_out = 0
    for i in range(len(run.boxes)):
        fa = an.process(make_frame(i, i / FPS, small[i], run.at(i, threshold)))
        if any(a <= i < b for a, b in segments):
            n_in += fa.crossings["path"].in_
            n_out += fa.crossings["path"].out
    return n_in, n_out


# ----------------------------------------------------------------------------- anomalies


# A stricter counterflow for two-way paths like vtest's, reported beside the defaults.
STRICT_COUNTERFLOW = {"counterflow": {"min_share": 0.8, "min_tracks": 3, "hold_s": 3.0}}


def eval_config(mirrored: bool = False, anomalies: Optional[dict] = None) -> ApplianceConfig:
    """Default anomaly settings; one zone along the main path whose walkers mostly go left
    (all labelled crossings are leftward), for counterflow. Mirrored footage gets the mirrored zone."""
    polygon = [(0.0, 0.28), (0.75, 0.28), (0.75, 0.62), (0.0, 0.45)]
    if mirrored:
        polygon = [(1 - x, y) for x, y in polygon]
    zone = {"name": "path", "polygon": polygon, "flow_direction_deg": 0 if mirrored else 180}
    return load_config(overrides={"zones": [zone], "anomalies": anomalies or {}})


def run_clip(clip: Clip, size: Tuple[int, int], anomalies: Optional[dict]) -> List[Tuple[str, str, float]]:
    an = build_analyzer(eval_config(clip.mirrored, anomalies), size)
    events: List[Tuple[str, str, float]] = []
    for k, (image, people) in enumerate(zip(clip.images, clip.people)):
        t = k / FPS
        fa = an.process(make_frame(k, t, image, people))
        events += [(e.type, e.state, t) for e in fa.events]
    return events


@dataclass
class FlagStats:
    clips: int = 0
    detected: int = 0
    latencies: Tuple[float, ...] = ()
    false_alarms: int = 0
    normal_s: float = 0.0


def evaluate_anomalies(
    clips: Sequence[Clip], size: Tuple[int, int], anomalies: Optional[dict] = None, types: Sequence[str] = FLAGS
) -> Dict[str, FlagStats]:
    stats = {t: FlagStats() for t in types}
    clips = [c for c in clips if c.expected is None or c.expected in types]
    bar = Progress(len(clips), "anomaly clips" + (" (variant)" if anomalies else ""))
    for clip in clips:
        events = run_clip(clip, size, anomalies)
        raised = [(typ, t) for typ, state, t in events if state == "raised"]
        duration = len(clip.people) / FPS
        if clip.expected is None:
            for typ in types:
                stats[typ].normal_s += duration
                stats[typ].false_alarms += sum(1 for r, _ in raised if r == typ)
        else:
            s = stats[clip.expected]
            s.clips += 1
            a, b = clip.anomaly_s
            hits = [t for r, t in raised if r == clip.expected and a <= t <= b + clip.grace_s]
            if hits:
                s.detected += 1
                s.latencies = (*s.latencies, hits[0] - a)
            # Flags of the same type outside the anomaly (plus its grace) are false alarms too.
            s.false_alarms += sum(1 for r, t in raised if r == clip.expected and not a <= t <= b + clip.grace_s)
            s.normal_s += duration - (b - a) - clip.grace_s
        bar.step()
    return stats


# ----------------------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", default=str(REPO.parent / "shared" / "data" / "vtest.avi"))
    p.add_argument("--labels", default=str(REPO / "eval" / "vtest_labels.yaml"))
    p.add_argument("--models-dir", default=None)
    p.add_argument("--person-model", default=None, help="manifest name; default: the board profile's")
    p.add_argument(
        "--settings",
        default="300:off,416:off,300:2x2",
        help="person detector input_size:tiling pairs to compare (416:2x2 costs ~0.5 s/frame on 2 cores)",
    )
    p.add_argument("--thresholds", default="0.3,0.4,0.5,0.6")
    p.add_argument(
        "--working-size",
        default=None,
        help="WxH: resize frames to a board's working resolution first (e.g. 640x480 for rpi4)",
    )
    p.add_argument("--quick", action="store_true", help="only the board profile's own size/tiling")
    p.add_argument("--cache-dir", default="/tmp/appliance-eval-cache")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--json", help="also write the results here")
    p.add_argument(
        "--timing-frames",
        type=int,
        default=0,
        help="also time the settings side by side (interleaved, median ms) on this many frames",
    )
    args = p.parse_args()
    global PERSON_MODEL, WORKING_SIZE
    PERSON_MODEL = args.person_model
    if args.working_size:
        w, h = (int(v) for v in args.working_size.lower().split("x"))
        WORKING_SIZE = (w, h)

    labels = yaml.safe_load(Path(args.labels).read_text())
    count_labels = {int(k): int(v) for k, v in labels["counts"].items()}
    line = labels["lines"]["path"]
    base = load_config()
    settings = [(base.profile.person_input_size, base.profile.person_tiling)]
    if not args.quick:
        settings = [(int(s.split(":")[0]), s.split(":")[1]) for s in args.settings.split(",")]
    thresholds = [float(t) for t in args.thresholds.split(",")]

    first = next(read_video(args.video))
    frame_size = (first.shape[1], first.shape[0])
    small = [cv2.resize(img, (SMALL_W, SMALL_H), interpolation=cv2.INTER_AREA) for img in read_video(args.video)]
    n = len(small)

    runs = [detect_all(base, args.video, s, t, n, args) for s, t in settings]
    rows = []
    bar = Progress(len(runs) * len(thresholds), "counting + line")
    for run in runs:
        for thr in thresholds:
            mae, bias = count_errors(run, thr, count_labels)
            n_in, n_out = line_counts(run, thr, line, frame_size, small)
            rows.append(
                {
                    "input_size": run.size,
                    "tiling": run.tiling,
                    "threshold": thr,
                    "count_mae": round(mae, 2),
                    "count_bias": round(bias, 2),
                    "line_in": n_in,
                    "line_out": n_out,
                    "line_abs_error": abs(n_in - line["in"]) + abs(n_out - line["out"]),
                    "detector_ms_per_frame": round(run.ms_per_frame, 1),
                }
            )
            bar.step()

    timing: Dict[Tuple[int, str], float] = {}
    if args.timing_frames:
        timing = interleaved_timing(base, args.video, settings, args.timing_frames, args)
        for r in rows:
            r["detector_ms_interleaved"] = round(timing[(r["input_size"], r["tiling"])], 1)

    prof = base.profile
    default = next((r for r in runs if (r.size, r.tiling) == (prof.person_input_size, prof.person_tiling)), runs[0])
    thr = base.detection.person_score_threshold
    det = open_detector(base, default.size, default.tiling, args.models_dir)
    clips = make_clips(default, thr, read_video(args.video), small, det, frame_size)
    stats = evaluate_anomalies(clips, frame_size)
    strict = evaluate_anomalies(clips, frame_size, STRICT_COUNTERFLOW, ("counterflow",))
    stats["counterflow (min_share 0.8, min_tracks 3, hold 3 s)"] = strict["counterflow"]

    truth = f"truth in={line['in']} out={line['out']}"
    print(f"\nCounting ({len(count_labels)} labelled frames) and line 'path' ({truth}):\n")
    print("| input | tiling | threshold | count MAE | bias | line in/out | line error | detector ms/frame |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['input_size']} | {r['tiling']} | {r['threshold']:.2f} | {r['count_mae']:.2f} "
            f"| {r['count_bias']:+.2f} "
            f"| {r['line_in']}/{r['line_out']} | {r['line_abs_error']} | {r['detector_ms_per_frame']:.0f} |"
        )
    if timing:
        ref = timing.get((prof.person_input_size, prof.person_tiling)) or next(iter(timing.values()))
        print(f"\nDetector time side by side ({args.timing_frames} frames, interleaved, median ms per frame):\n")
        print("| input | tiling | ms/frame | ratio to the profile's setting |")
        print("|---|---|---|---|")
        for (size, tiling), ms in timing.items():
            print(f"| {size} | {tiling} | {ms:.0f} | {ms / ref:.2f} |")
    setting = f"detector {default.size}px tiling={default.tiling}, threshold {thr}"
    print(f"\nAnomaly flags ({setting}, default flag settings):\n")
    print("| flag | recall | median latency s | false alarms | normal footage s | false alarms / hour |")
    print("|---|---|---|---|---|---|")
    out_flags = {}
    for typ, s in stats.items():
        per_h = s.false_alarms / (s.normal_s / 3600) if s.normal_s else float("nan")
        lat = float(np.median(s.latencies)) if s.latencies else float("nan")
        print(f"| {typ} | {s.detected}/{s.clips} | {lat:.1f} | {s.false_alarms} | {s.normal_s:.0f} | {per_h:.0f} |")
        out_flags[typ] = {
            "recall": f"{s.detected}/{s.clips}",
            "median_latency_s": None if np.isnan(lat) else round(lat, 2),
            "false_alarms": s.false_alarms,
            "normal_footage_s": round(s.normal_s, 1),
            "false_alarms_per_hour": None if np.isnan(per_h) else round(per_h, 1),
        }
    if args.json:
        # Which detector setting the anomaly figures belong to (the board profile's, when measured).
        anomaly_setting = {
            "person_model": PERSON_MODEL or prof.models.person,
            "input_size": default.size,
            "tiling": default.tiling,
            "threshold": thr,
        }
        out = {
            "frame_size": list(frame_size),
            "detector_settings": rows,
            "anomaly_setting": anomaly_setting,
            "anomalies": out_flags,
        }
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
