#!/usr/bin/env python3
"""The appliance against deface 1.5.0 on the same frames, whole processes, side by side.

deface (https://github.com/ORB-HD/deface) is the common "blur the faces in a video" tool; it blurs
faces only. Four commands run in turns (A, B, C, D, A, B, ...), medians of ``--repeats``, on the
same ``--frames`` frames of a clip, each a whole process with its start-up:

* ``deface``            deface's defaults (CenterFace at the clip's own size, blur, write a video),
                        with onnxruntime installed beside it, which deface's ``--backend auto`` then takes
                        (deface's own advice for speed)
* ``deface 640x480``    ``deface --scale 640x480`` (network input downscaled as the appliance does)
* ``deface opencv``     ``deface --backend opencv``: what a bare ``pip install deface`` runs
* ``appliance blur``    the anonymizer alone (face *and* person detector, for head blur), writes a video
* ``appliance run``     the whole pipeline: blur, detection, tracking, zones, lines, anomalies and the
                        counts messages (no broker: stdout, sent to /dev/null)
* ``appliance run 2x1`` the same with 2x1 person tiles instead of the default perspective tiles

Then one more round of all four while two busy-loop processes load both cores (the appliance
shares a board with other work). Reported: frames/s, wall and CPU time (the process and the
children it waited for, e.g. deface's ffmpeg) and the ratios against deface. Only ratios from one
run mean anything on a shared machine.

deface is installed into a throwaway venv (``--deface-venv``, made with pip from PyPI if it is
missing, with onnx and onnxruntime for its faster backend); it is never a dependency of the project.

Usage: .venv/bin/python scripts/bench_vs_deface.py --clip /work/shared/data/vtest.avi
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

REPO = Path(__file__).resolve().parent.parent
DEFACE_VERSION = "1.5.0"
err = Console(stderr=True)


@dataclass(frozen=True)
class Timing:
    wall_s: float
    cpu_s: float


def ensure_deface(venv: Path) -> Path:
    exe = venv / "bin" / "deface"
    if exe.exists():
        return exe
    err.print(f"installing deface=={DEFACE_VERSION} into {venv} (throwaway venv)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"deface=={DEFACE_VERSION}", "onnx", "onnxruntime"],
                   check=True)
    return exe


def deface_backend(venv: Path) -> str:
    """deface's ``--backend auto`` takes onnxruntime when importable, else OpenCV's dnn module."""
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import onnx, onnxruntime"], capture_output=True)
    return "onnxruntime" if probe.returncode == 0 else "opencv dnn"


def cut_clip(source: Path, frames: int, dest: Path) -> None:
    """The first ``frames`` frames, re-encoded once as MJPG so that both tools decode the same file."""
    import cv2

    cap = cv2.VideoCapture(str(source))
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    writer = None
    n = 0
    while n < frames:
        ok, frame = cap.read()
        if not ok:
            break
        if writer is None:
            h, w = frame.shape[:2]
            writer = cv2.VideoWriter(str(dest), cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h))
        writer.write(frame)
        n += 1
    cap.release()
    if writer is not None:
        writer.release()
    if n < frames:
        raise SystemExit(f"{source}: only {n} frames, {frames} asked for")


def timed(cmd: Sequence[str]) -> Timing:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(list(cmd), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}): {tail}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(wall, cpu)


def commands(deface: Path, appliance: Path, clip: Path, out: Path) -> Dict[str, List[str]]:
    return {
        "deface": [str(deface), str(clip), "-o", str(out / "deface.mp4")],
        "deface 640x480": [str(deface), str(clip), "--scale", "640x480", "-o", str(out / "deface-640.mp4")],
        "deface opencv": [str(deface), str(clip), "--backend", "opencv", "-o", str(out / "deface-opencv.mp4")],
        "appliance blur": [str(appliance), "blur", str(clip), "-o", str(out / "blur.avi")],
        "appliance run": [str(appliance), "run", "--config", "examples/site.yaml", "--source", str(clip)],
        # The same with the earlier 2x1 tiles (3 person windows a frame instead of perspective's 6):
        # what the count accuracy (docs/analytics.md) costs in speed.
        "appliance run 2x1": [str(appliance), "run", "--config", str(site_with_tiling(out, "2x1")),
                              "--source", str(clip)],
    }


def site_with_tiling(out: Path, tiling: str) -> Path:
    """The example site with the board profile's ``person_tiling`` overridden."""
    import yaml

    site = yaml.safe_load((REPO / "examples" / "site.yaml").read_text(encoding="utf-8"))
    site.setdefault("board_overrides", {})["person_tiling"] = tiling
    path = out / f"site-{tiling}.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False), encoding="utf-8")
    return path


def run_rounds(cmds: Dict[str, List[str]], repeats: int, bar: Progress, label: str) -> Dict[str, List[Timing]]:
    task = bar.add_task(label, total=repeats * len(cmds))
    results: Dict[str, List[Timing]] = {k: [] for k in cmds}
    for r in range(repeats):
        for name, cmd in cmds.items():
            bar.update(task, description=f"{label}: round {r + 1}/{repeats}, {name}")
            results[name].append(timed(cmd))
            bar.advance(task)
    return results


def busy_loops(n: int) -> List[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def report(title: str, results: Dict[str, List[Timing]], frames: int) -> None:
    med = {k: Timing(statistics.median(t.wall_s for t in v), statistics.median(t.cpu_s for t in v))
           for k, v in results.items()}
    n = len(next(iter(results.values())))
    print(f"\n{title} ({frames} frames, whole process with start-up, medians of {n})")
    refs = [k for k in med if k.startswith("deface")]
    heads = "".join(f"  {'fps / ' + r:>20s}" for r in refs)
    print(f"{'command':16s} {'frames/s':>9s} {'wall s':>8s} {'CPU s':>8s}{heads}")
    for name, t in med.items():
        ratios = "".join(f"  {med[r].wall_s / t.wall_s:19.2f}x" for r in refs)
        print(f"{name:16s} {frames / t.wall_s:9.1f} {t.wall_s:8.1f} {t.cpu_s:8.1f}{ratios}")
    base640 = med["deface 640x480"]
    blur = med["appliance blur"]
    print(f"appliance blur vs deface 640x480: wall {blur.wall_s / base640.wall_s:.2f}x, "
          f"CPU {blur.cpu_s / base640.cpu_s:.2f}x (above 1: ours slower)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=Path, default=Path("/work/shared/data/vtest.avi"))
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--loaded-repeats", type=int, default=1, help="rounds with both cores busy (0: none)")
    ap.add_argument("--busy", type=int, default=2, help="busy-loop processes for the loaded rounds")
    ap.add_argument("--deface-venv", type=Path, default=Path(tempfile.gettempdir()) / "deface-venv")
    args = ap.parse_args()
    # A kill (SIGTERM) must still reach the finally below, or the busy loops outlive the benchmark.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    deface = ensure_deface(args.deface_venv)
    appliance = Path(sys.executable).with_name("appliance")
    work = Path(tempfile.mkdtemp(prefix="bench-vs-deface-"))
    clip = work / f"clip-{args.frames}.avi"
    cut_clip(args.clip, args.frames, clip)
    cmds = commands(deface, appliance, clip, work)
    print(f"clip: {args.frames} frames of {args.clip} (MJPG, {clip}); deface {DEFACE_VERSION}, default backend "
          f"{deface_backend(args.deface_venv)}; {os.cpu_count()} cores")
    for name, cmd in cmds.items():
        print(f"  {name:16s} {' '.join(cmd)}")

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        quiet = run_rounds(cmds, args.repeats, bar, "quiet")
        loaded = None
        if args.loaded_repeats > 0:
            hogs = busy_loops(args.busy)
            try:
                loaded = run_rounds(cmds, args.loaded_repeats, bar, f"{args.busy} busy loops")
            finally:
                for h in hogs:
                    h.kill()
                    h.wait()
    report("Machine as it is", quiet, args.frames)
    if loaded is not None:
        report(f"With {args.busy} busy-loop processes loading the cores", loaded, args.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
