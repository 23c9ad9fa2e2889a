#!/usr/bin/env python3
"""Side-by-side speed checks for issue 12, as ratios from interleaved runs (medians of N).

Three measurements, each run in turns (A, B, A, B, ...) so that load from other work on the
machine falls on both sides alike; only ratios are meaningful, never the absolute times:

* ``whole``: ``appliance run`` on the first ``--frames`` frames of a clip, whole process with
  start-up, this checkout against ``--baseline`` (a checkout of another commit, e.g. made with
  ``git archive BASE | tar -x -C /tmp/base``), same interpreter; wall and CPU time.
* ``detectors``: the Anonymizer in one process with the two detectors side by side
  (``concurrent=True``) and one after the other, on the same decoded frames.
* ``import``: ``import appliance.app`` here and in the baseline.
* ``threads``: the Anonymizer (detectors side by side) with 1 and 2 intra-op threads per session.

Usage: python scripts/bench_speed.py --clip /work/shared/data/vtest.avi --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def timed_process(args: List[str], tree: Path) -> Tuple[float, float]:
    """(wall s, CPU s of the child) for one run of ``python args`` with ``tree`` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=tree, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: {' '.join(args)} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


Timings = Dict[str, List[Tuple[float, ...]]]


def interleave(sides: Dict[str, Callable[[], Tuple[float, ...]]], repeats: int, what: str) -> Timings:
    out: Timings = {k: [] for k in sides}
    for r in range(repeats):
        for name, fn in sides.items():
            progress(f"{what}: round {r + 1}/{repeats}, {name}")
            out[name].append(fn())
    return out


def median(rows: List[Tuple[float, ...]], i: int) -> float:
    return statistics.median(r[i] for r in rows)


def bench_whole(clip: Path, frames: int, baseline: Path, repeats: int) -> None:
    args = ["-m", "appliance", "run", "--source", str(clip), "--max-frames", str(frames), "--device-id", "bench"]
    res = interleave({"this": lambda: timed_process(args, REPO), "baseline": lambda: timed_process(args, baseline)},
                     repeats, "appliance run")
    tw, tc = median(res["this"], 0), median(res["this"], 1)
    bw, bc = median(res["baseline"], 0), median(res["baseline"], 1)
    print(f"appliance run, {frames} frames, whole process: this/baseline wall {tw / bw:.2f}x, CPU {tc / bc:.2f}x, "
          f"fps ratio {bw / tw:.2f}x  (medians of {repeats}; wall {tw:.1f} s vs {bw:.1f} s on a shared machine)")


def bench_detectors(clip: Path, frames: int, repeats: int) -> None:
    import cv2
    import numpy as np

    from appliance.anonymize import Anonymizer
    from appliance.capture import RawFrame
    from appliance.config import load_config
    from appliance.models import load_detectors

    cfg = load_config()
    face, person = load_detectors(cfg)
    cap = cv2.VideoCapture(str(clip))
    images: List[np.ndarray] = []
    while len(images) < frames:
        ok, image = cap.read()
        if not ok:
            break
        images.append(image)
    stages = {"side by side": Anonymizer(face, person, cfg.anonymize, concurrent=True),
              "one after the other": Anonymizer(face, person, cfg.anonymize, concurrent=False)}
    stages["side by side"].warm_up(images[0].shape[1], images[0].shape[0])
    regions: Dict[str, List[int]] = {"boxes": [], "hidden": []}

    def run(stage: Anonymizer) -> Tuple[float, float]:
        stage.reset()
        t0, c0 = time.perf_counter(), time.process_time()
        for i, image in enumerate(images):
            frame = stage.process(RawFrame(i, i / 10, image.copy()))
            if stage is stages["side by side"]:
                regions["boxes"].append(frame.heads_blurred + sum(len(r) for r in list(stage._recent_heads)[:-1])
                                        + frame.faces_blurred + sum(len(r) for r in list(stage._recent_faces)[:-1]))
                regions["hidden"].append(stage.regions_hidden)
        return time.perf_counter() - t0, time.process_time() - c0

    res = interleave({k: (lambda s=s: run(s)) for k, s in stages.items()}, repeats, "anonymizer")
    cw, sw = median(res["side by side"], 0), median(res["one after the other"], 0)
    cc, sc = median(res["side by side"], 1), median(res["one after the other"], 1)
    print(f"anonymizer, {len(images)} frames: side by side / one after the other wall {cw / sw:.2f}x, "
          f"CPU {cc / sc:.2f}x (medians of {repeats}; {os.cpu_count()} CPUs visible)")
    n = len(regions["boxes"])
    print(f"regions per frame: {sum(regions['boxes']) / n:.1f} boxes (new + remembered) hidden as "
          f"{sum(regions['hidden']) / n:.1f} regions after merging")
    stages["side by side"].close()


def bench_threads(clip: Path, frames: int, repeats: int) -> None:
    """The Anonymizer (detectors side by side) with 1 and with 2 intra-op threads per session."""
    import cv2

    from appliance.anonymize import Anonymizer
    from appliance.capture import RawFrame
    from appliance.config import load_config
    from appliance.models import load_detectors

    cap = cv2.VideoCapture(str(clip))
    images = []
    while len(images) < frames:
        ok, image = cap.read()
        if not ok:
            break
        images.append(image)
    stages = {}
    for n in (1, 2):
        cfg = load_config()
        cfg.profile.runtime.intra_op_threads = n  # the profile is a plain model: set it for this run
        face, person = load_detectors(cfg)
        stages[f"{n} thread(s)"] = Anonymizer(face, person, cfg.anonymize)
        stages[f"{n} thread(s)"].warm_up(images[0].shape[1], images[0].shape[0])

    def run(stage: Anonymizer) -> Tuple[float, float]:
        stage.reset()
        t0, c0 = time.perf_counter(), time.process_time()
        for i, image in enumerate(images):
            stage.process(RawFrame(i, i / 10, image.copy()))
        return time.perf_counter() - t0, time.process_time() - c0

    res = interleave({k: (lambda s=s: run(s)) for k, s in stages.items()}, repeats, "intra-op threads")
    one, two = res["1 thread(s)"], res["2 thread(s)"]
    print(f"anonymizer side by side, {len(images)} frames: 1 / 2 intra-op threads per session wall "
          f"{median(one, 0) / median(two, 0):.2f}x, CPU {median(one, 1) / median(two, 1):.2f}x (medians of {repeats})")
    for stage in stages.values():
        stage.close()


def bench_import(baseline: Optional[Path], repeats: int) -> None:
    args = ["-c", "import appliance.app"]
    sides = {"this": lambda: timed_process(args, REPO)}
    if baseline:
        sides["baseline"] = lambda: timed_process(args, baseline)
    res = interleave(sides, repeats, "import appliance.app")
    if baseline:
        print(f"import appliance.app: this/baseline wall {median(res['this'], 0) / median(res['baseline'], 0):.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clip", type=Path, default=REPO.parent.parent / "shared" / "data" / "vtest.avi")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline", type=Path, help="checkout to compare the whole run and the import with")
    ap.add_argument("--only", choices=["whole", "detectors", "import", "threads"], action="append")
    args = ap.parse_args()
    only = set(args.only or ["whole", "detectors", "import", "threads"])
    if not args.clip.exists():
        raise SystemExit(f"{args.clip}: clip not found")
    if "import" in only:
        bench_import(args.baseline, max(args.repeats, 5))
    if "detectors" in only:
        bench_detectors(args.clip, args.frames, args.repeats)
    if "threads" in only:
        bench_threads(args.clip, args.frames, args.repeats)
    if "whole" in only:
        if not args.baseline:
            raise SystemExit("--baseline is needed for the whole-run comparison")
        bench_whole(args.clip, args.frames, args.baseline, args.repeats)


if __name__ == "__main__":
    main()
