#!/usr/bin/env python3
"""int8 vs fp32, model only, at the input sizes of the CPU board profiles, and whether the two
precisions find the same faces and people on a committed frame.

Runs under whatever Python starts it: scripts/aarch64_bench.sh runs it on this host and under an
emulated aarch64 Python, then ``table`` renders both results side by side.

* latency: ``session.run`` alone (pre-processing done once, outside the clock) on the frame as the
  profile's detector sees it, int8 and fp32 interleaved (the order swapped every round, so load and
  drift fall on both alike), one warm-up run each, medians of ``--rounds``. Only the int8/fp32 ratio
  is meant to be read; under emulation the milliseconds say nothing about a board.
* agreement: the profile's whole detectors (``load_detectors``: tiling, thresholds, NMS of the
  default site config) on committed frames (the vtest frame and a portrait) resized to the
  profile's working size as capture does, int8 and fp32 counts and how many fp32 boxes int8
  matches (IoU >= 0.5).

Usage: python scripts/bench_precision.py measure [--rounds 5] > result.json
       python scripts/bench_precision.py table x86.json aarch64.json   # exit 1 if the counts differ
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

REPO = Path(__file__).resolve().parent.parent
FRAME = REPO / "tests" / "data" / "vtest_frame300.jpg"
# Faces on vtest are too small for the face model: the portrait gives it a face to find.
AGREEMENT_FRAMES = (FRAME, REPO / "tests" / "data" / "face_portrait_small.jpg")
PROFILES = ("rpi4", "rpi5")
PRECISIONS = ("int8", "fp32")


@dataclass
class Latency:
    model: str  # the family, e.g. "centerface"
    input: str  # "WxH"
    profiles: List[str]
    int8_ms: float
    fp32_ms: float
    ratio: float  # int8 / fp32 (< 1: int8 is faster)
    int8_runs_ms: List[float]  # every timed run, in order, to see the spread
    fp32_runs_ms: List[float]


@dataclass
class Agreement:
    frame: str
    profile: str
    task: str
    int8: int
    fp32: int
    matched: int  # fp32 boxes int8 also finds, IoU >= 0.5


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _family(name: str) -> str:
    for suffix in ("-int8", "-fp32"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    raise SystemExit(f"model {name} has no -int8/-fp32 suffix")


def _runners(frame: Any, threads: int) -> Dict[Tuple[str, str], Tuple[List[str], Dict[str, Callable[[], None]]]]:
    """(family, "WxH") -> (profiles using it, {precision: one model-only inference})."""
    import cv2

    from appliance.capture import to_working_size
    from appliance.config.loader import load_board_profile
    from appliance.models import open_face_detector, open_person_detector

    cv2.setNumThreads(1)
    cases: Dict[Tuple[str, str], Tuple[List[str], Dict[str, Callable[[], None]]]] = {}
    for name in PROFILES:
        prof = load_board_profile(name)
        image = to_working_size(frame, (prof.working_width, prof.working_height))
        face_size = (prof.face_input_width, prof.face_input_height)
        person_size = prof.person_input_size
        for family, size in (
            (_family(prof.models.face), f"{face_size[0]}x{face_size[1]}"),
            (_family(prof.models.person), f"{person_size}x{person_size}"),
        ):
            if (family, size) in cases:
                cases[(family, size)][0].append(name)
                continue
            runs: Dict[str, Callable[[], None]] = {}
            for precision in PRECISIONS:
                model = f"{family}-{precision}"
                if family == _family(prof.models.face):
                    det: Any = open_face_detector(model, threads=threads, input_size=face_size)
                else:
                    det = open_person_detector(model, threads=threads, input_size=person_size)
                blob = det.preprocess(image).copy()  # the detector reuses its buffer
                feed = {det.session.get_inputs()[0].name: blob}
                runs[precision] = lambda s=det.session, f=feed: s.run(None, f)
            cases[(family, size)] = ([name], runs)
    return cases


def measure_latency(frame: Any, rounds: int, threads: int) -> List[Latency]:
    cases = _runners(frame, threads)
    times: Dict[Tuple[str, str, str], List[float]] = {}
    for (family, size), (_, runs) in cases.items():
        for precision, run in runs.items():
            run()  # the first inference allocates
            times[(family, size, precision)] = []
    for r in range(rounds):
        progress(f"latency round {r + 1}/{rounds}")
        order = PRECISIONS if r % 2 == 0 else PRECISIONS[::-1]
        for (family, size), (_, runs) in cases.items():
            for precision in order:
                start = time.perf_counter()
                runs[precision]()
                times[(family, size, precision)].append((time.perf_counter() - start) * 1000)
    out = []
    for (family, size), (profiles, _) in cases.items():
        i8 = statistics.median(times[(family, size, "int8")])
        f32 = statistics.median(times[(family, size, "fp32")])
        runs = [[round(t, 1) for t in times[(family, size, p)]] for p in PRECISIONS]
        out.append(Latency(family, size, profiles, round(i8, 2), round(f32, 2), round(i8 / f32, 3), *runs))
    return out


def measure_agreement(frames: List[Path]) -> List[Agreement]:
    import cv2

    from appliance.capture import to_working_size
    from appliance.config.loader import load_board_profile
    from appliance.config.schema import AnonymizeConfig, DetectionConfig
    from appliance.models import load_detectors
    from appliance.models.nms import match_detections

    out = []
    for name in PROFILES:
        prof = load_board_profile(name)
        found: Dict[str, Dict[str, Any]] = {}
        for precision in PRECISIONS:
            models = prof.models.model_copy(
                update={
                    "face": f"{_family(prof.models.face)}-{precision}",
                    "person": f"{_family(prof.models.person)}-{precision}",
                }
            )
            board = prof.model_copy(update={"models": models})
            face, person = load_detectors(board, AnonymizeConfig(), DetectionConfig())
            for path in frames:
                frame = cv2.imread(str(path))
                if frame is None:
                    raise SystemExit(f"{path}: cannot read the frame")
                image = to_working_size(frame, (prof.working_width, prof.working_height))
                found[f"{path.name} face {precision}"] = face.detect(image).boxes
                found[f"{path.name} person {precision}"] = person.detect(image).boxes
        for path in frames:
            for task in ("face", "person"):
                i8, f32 = found[f"{path.name} {task} int8"], found[f"{path.name} {task} fp32"]
                matched = len(match_detections(f32, i8, 0.5))
                out.append(Agreement(path.name, name, task, len(i8), len(f32), matched))
    return out


def cmd_measure(args: argparse.Namespace) -> int:
    import cv2
    import onnxruntime

    frame = cv2.imread(str(args.frame))
    if frame is None:
        print(f"{args.frame}: cannot read the frame", file=sys.stderr)
        return 2
    progress(f"{platform.machine()}: agreement on {', '.join(p.name for p in AGREEMENT_FRAMES)}")
    agreement = measure_agreement(list(AGREEMENT_FRAMES))
    progress(f"{platform.machine()}: latency, {args.rounds} rounds, {args.threads} thread(s)")
    latency = measure_latency(frame, args.rounds, args.threads)
    result = {
        "label": args.label or platform.machine(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "frame": str(args.frame.relative_to(REPO) if args.frame.is_relative_to(REPO) else args.frame),
        "rounds": args.rounds,
        "intra_op_threads": args.threads,
        "latency": [asdict(x) for x in latency],
        "agreement": [asdict(x) for x in agreement],
    }
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    results = []
    for path in args.results:
        data = json.loads(Path(path).read_text())
        results.append((data["label"], data))
    print("| model | input | profiles | " + " | ".join(
        f"{label} int8 / fp32 ms | {label} int8/fp32" for label, _ in results) + " |")
    print("| --- | --- | --- | " + " | ".join("--- | ---" for _ in results) + " |")
    for i, row in enumerate(results[0][1]["latency"]):
        cells = []
        for _, data in results:
            x = data["latency"][i]
            cells.append(f"{x['int8_ms']:.0f} / {x['fp32_ms']:.0f} | **{x['ratio']:.2f}**")
        print(f"| {row['model']} | {row['input']} | {', '.join(row['profiles'])} | " + " | ".join(cells) + " |")
    print()
    heads = " | ".join(f"{label} int8 / fp32 (matched)" for label, _ in results)
    print(f"| frame | profile | detector | {heads} |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in results) + " |")
    for i, row in enumerate(results[0][1]["agreement"]):
        cells = [
            f"{d['agreement'][i]['int8']} / {d['agreement'][i]['fp32']} ({d['agreement'][i]['matched']})"
            for _, d in results
        ]
        print(f"| {row['frame']} | {row['profile']} | {row['task']} | " + " | ".join(cells) + " |")
    # The detections must not depend on the machine: every result's agreement rows equal the first's.
    differ = [label for label, data in results[1:] if data["agreement"] != results[0][1]["agreement"]]
    if differ:
        print(f"\ndetection counts differ from {results[0][0]}: {', '.join(differ)}", file=sys.stderr)
        return 1
    return 0


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="measure here; JSON on stdout, progress on stderr")
    m.add_argument("--frame", type=Path, default=FRAME, help="a committed BGR frame (default %(default)s)")
    m.add_argument("--rounds", type=int, default=5, help="timed runs per model and precision (default %(default)s)")
    m.add_argument("--threads", type=int, default=1, help="intra-op threads per session (default %(default)s)")
    m.add_argument("--label", default="", help="names this run in the tables (default: the machine)")
    t = sub.add_parser("table", help="markdown tables from measure results; exit 1 if their detections differ")
    t.add_argument("results", nargs="+", help="JSON files written by measure (optional 'label' key)")
    args = parser.parse_args(argv)
    if args.command == "measure":
        args.frame = args.frame.resolve()
        return cmd_measure(args)
    return cmd_table(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
