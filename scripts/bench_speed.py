#!/usr/bin/env python3
"""Side-by-side speed checks of the frame pipeline, as ratios from interleaved runs (medians of N).

Three measurements, each run in turns (A, B, A, B, ...) so that load from other work on the
machine falls on both sides alike; only ratios are meaningful, never the absolute times:

* ``whole``: ``appliance run`` on the first ``--frames`` frames of a clip, whole process with
  start-up, this checkout against ``--baseline`` (a checkout of another commit, e.g. made with
  ``git archive BASE | tar -x -C /tmp/base``), same interpreter; wall and CPU time.
* ``detectors``: the Anonymizer in one process with the two detectors side by side
  (``concurrent=True``) and one after the other, on the same decoded frames.
* ``import``: ``import appliance.app`` here and in the baseline.
* ``threads``: the Anonymizer (detectors side by side) with 1 and 2 intra-op threads per session.
* ``threads-run``: ``appliance run`` (whole process, this checkout, ``--config`` or the example site)
  with 1 and with 2 intra-op threads per session (``board_overrides``), wall and CPU time.
* ``floor``: model-only floor / pipeline time per frame, in one process. The pipeline side is
  ``Pipeline.run`` as ``appliance run`` builds it (``--config``; read, anonymize, analyze, publish
  to a printer on /dev/null); the floor side replays the very ``session.run`` inputs the pipeline
  made (recorded on its first ``--floor-frames`` frames, then cycled) through the same two
  sessions in the same arrangement: the face run and each person window are jobs the calling
  thread and one worker take in turn, as the anonymizer does. Same models, sizes, tiling and
  threads; nothing else.

Usage: python scripts/bench_speed.py --clip /work/shared/data/vtest.avi --baseline /tmp/base
       python scripts/bench_speed.py --only floor --config examples/site.yaml
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

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


def bench_whole(clip: Path, frames: int, baseline: Path, repeats: int, config: Optional[Path]) -> None:
    args = ["-m", "appliance", "run", "--source", str(clip), "--max-frames", str(frames), "--device-id", "bench"]
    if config is not None:
        args += ["--config", str(config.resolve())]
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
    face, person = load_detectors(cfg.profile, cfg.anonymize, cfg.detection)
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
        face, person = load_detectors(cfg.profile, cfg.anonymize, cfg.detection)
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


def bench_threads_run(clip: Path, frames: int, repeats: int, config: Optional[Path]) -> None:
    """``appliance run`` with 1 and 2 intra-op threads per session, whole process, this checkout."""
    import tempfile

    import yaml

    site = yaml.safe_load((config or REPO / "examples" / "site.yaml").read_text())
    tmp = Path(tempfile.mkdtemp(prefix="bench-threads-"))
    sides = {}
    for n in (1, 2):
        overrides = site.setdefault("board_overrides", {})
        overrides.setdefault("runtime", {})["intra_op_threads"] = n
        path = tmp / f"site-{n}.yaml"
        path.write_text(yaml.safe_dump(site))
        args = ["-m", "appliance", "run", "--config", str(path), "--source", str(clip), "--max-frames", str(frames)]
        sides[f"{n} thread(s)"] = lambda args=args: timed_process(args, REPO)
    res = interleave(sides, repeats, "appliance run, intra-op threads")
    one, two = res["1 thread(s)"], res["2 thread(s)"]
    print(f"appliance run, {frames} frames: 1 / 2 intra-op threads per session wall "
          f"{median(one, 0) / median(two, 0):.2f}x, CPU {median(one, 1) / median(two, 1):.2f}x (medians of {repeats}; "
          f"wall {median(one, 0):.1f} s vs {median(two, 0):.1f} s)")


class _RecordingSession:
    """Stands in for an onnxruntime session: forwards every call and keeps a copy of the first
    ``limit`` calls' inputs (the pipeline's own, as it made them)."""

    def __init__(self, inner: Any, limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self.calls = 0
        self.recorded: List[Tuple[Any, Dict[str, Any]]] = []

    def run(self, output_names: Any, feeds: Dict[str, Any], *args: Any) -> Any:
        self.calls += 1
        if len(self.recorded) < self.limit:
            self.recorded.append((output_names, {k: v.copy() for k, v in feeds.items()}))
        return self.inner.run(output_names, feeds, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def bench_floor(clip: Path, frames: int, repeats: int, config: Optional[Path], record_frames: int,
                analysis_ab: bool) -> None:
    """Model-only floor / whole pipeline time per frame, interleaved in one process."""
    from concurrent.futures import ThreadPoolExecutor

    from appliance.anonymize import Anonymizer
    from appliance.anonymize.work_sharing import run_shared
    from appliance.app import build_pipeline, working_size
    from appliance.capture import open_source
    from appliance.config import config_hash, load_config
    from appliance.detail_level import plan_detail
    from appliance.models import load_detectors
    from appliance.publish import StdoutPublisher, make_birth

    cfg = load_config(config)
    face, person = load_detectors(cfg.profile, cfg.anonymize, cfg.detection)
    devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the benchmark
    stage_p50: Dict[str, List[float]] = {}

    def pipeline_pass(n: int, overlap_analysis: bool = True) -> Tuple[float, float]:
        source = open_source(str(clip), cfg.capture.model_copy(update={"loop": True}), working_size(cfg.profile))
        birth = make_birth(config_hash=config_hash(cfg), board=cfg.profile.name, models=[])
        publisher = StdoutPublisher(device_id="bench", mqtt=cfg.mqtt, publish=cfg.publish, birth=birth, stream=devnull)
        pipeline = build_pipeline(cfg, source=source, publisher=publisher)
        pipeline.anonymizer.close()  # its own fresh sessions: use the shared (recording) ones
        pipeline.anonymizer = Anonymizer(face, person, cfg.anonymize, detail=plan_detail(cfg))
        pipeline.anonymizer.warm_up(*working_size(cfg.profile))
        pipeline.overlap_analysis = overlap_analysis
        t0, c0 = time.perf_counter(), time.process_time()
        result = pipeline.run(max_frames=n)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if overlap_analysis:
            for stage, lat in pipeline.health.latency().items():
                stage_p50.setdefault(stage, []).append(lat.p50)
        return wall / result.frames_analyzed * 1000, cpu / result.frames_analyzed * 1000

    # One untimed pass records the pipeline's own model inputs.
    face_rec = _RecordingSession(face.session, record_frames)
    person_rec = _RecordingSession(person.session, 10**9)
    face.session, person.session = face_rec, person_rec
    progress(f"recording the models' inputs on {record_frames} frames")
    pipeline_pass(record_frames)
    face.session, person.session = face_rec.inner, person_rec.inner
    windows = person_rec.calls // face_rec.calls
    face_feeds = face_rec.recorded
    person_feeds = [person_rec.recorded[i * windows:(i + 1) * windows] for i in range(len(face_feeds))]
    del person_rec.recorded[len(face_feeds) * windows:]
    stage_p50.clear()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="detector")

    def floor_pass(n: int) -> Tuple[float, float]:
        # The same scheduling as the anonymizer: the face run and each person window are jobs the
        # calling thread and the worker take in turn (run_shared), face first.
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(n):
            names, feeds = face_feeds[i % len(face_feeds)]
            jobs = [partial(face.session.run, names, feeds)]
            jobs += [partial(person.session.run, pn, pf) for pn, pf in person_feeds[i % len(person_feeds)]]
            for result in run_shared(jobs, pool):
                if isinstance(result, Exception):
                    raise result
        return (time.perf_counter() - t0) / n * 1000, (time.process_time() - c0) / n * 1000

    sides = {"model floor": lambda: floor_pass(frames), "pipeline": lambda: pipeline_pass(frames)}
    if analysis_ab:  # analysis beside the next anonymization (the default) against one frame at a time
        sides["pipeline, analysis one frame at a time"] = lambda: pipeline_pass(frames, overlap_analysis=False)
    res = interleave(sides, repeats, "floor vs pipeline")
    fl, fc = median(res["model floor"], 0), median(res["model floor"], 1)
    for name in sides:
        if name == "model floor":
            continue
        pl, pc = median(res[name], 0), median(res[name], 1)
        print(f"model-only floor / {name}, time per frame: {fl / pl:.2f} ({fl:.1f} vs {pl:.1f} ms wall; CPU {fc:.1f} "
              f"vs {pc:.1f} ms; {frames} frames, {windows} person window(s) per frame, medians of {repeats})")
    if analysis_ab:
        a, b = res["pipeline"], res["pipeline, analysis one frame at a time"]
        print(f"analysis beside the next anonymization / one frame at a time: wall {median(a, 0) / median(b, 0):.2f}x, "
              f"CPU {median(a, 1) / median(b, 1):.2f}x")
    print("pipeline stage p50 (ms, medians over passes; capture runs in the reader thread, "
          "anonymize is both detectors' jobs on two threads plus the blur): "
          + ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in stage_p50.items()))
    pool.shutdown()


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
    ap.add_argument("--config", type=Path, help="site config for the whole run and the floor (default: built-in)")
    ap.add_argument("--floor-frames", type=int, default=20, help="frames whose model inputs the floor replays")
    ap.add_argument("--no-analysis-ab", action="store_true",
                    help="floor: skip the side with analysis one frame at a time (overlap off)")
    ap.add_argument("--only", action="append",
                    choices=["whole", "detectors", "import", "threads", "threads-run", "floor"])
    args = ap.parse_args()
    only = set(args.only or ["whole", "detectors", "import", "threads", "floor"])
    if not args.clip.exists():
        raise SystemExit(f"{args.clip}: clip not found")
    if "import" in only:
        bench_import(args.baseline, max(args.repeats, 5))
    if "detectors" in only:
        bench_detectors(args.clip, args.frames, args.repeats)
    if "threads" in only:
        bench_threads(args.clip, args.frames, args.repeats)
    if "threads-run" in only:
        bench_threads_run(args.clip, args.frames, args.repeats, args.config)
    if "floor" in only:
        bench_floor(args.clip, args.frames, args.repeats, args.config, args.floor_frames, not args.no_analysis_ab)
    if "whole" in only:
        if not args.baseline:
            raise SystemExit("--baseline is needed for the whole-run comparison")
        bench_whole(args.clip, args.frames, args.baseline, args.repeats, args.config)


if __name__ == "__main__":
    main()
