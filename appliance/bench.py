"""``appliance bench``: per-stage latency and end-to-end fps on a clip, for the configured board profile.

Figures are for comparing within one run (int8 vs fp32 with ``--compare-precision``, one board profile vs
another on the same machine); absolute milliseconds depend on the machine and its load.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set

import numpy as np

from appliance.anonymize import Anonymizer
from appliance.anonymize.anonymizer import Detector
from appliance.app import build_analyzer, working_size
from appliance.capture import open_source
from appliance.config import ApplianceConfig
from appliance.frames import Dropped, FrameLoop, Lost
from appliance.models import load_detectors
from appliance.models.detections import Detections
from appliance.models.manifest import load_manifest
from appliance.progress import Progress

# The two detectors run side by side inside anonymize: their times overlap, and "anonymize" is the
# wall time of both plus the blur.
STAGES = ("capture", "face_detect", "person_detect", "anonymize", "analyze")


class _Timed:
    """Wraps a detector and records how long each call took."""

    def __init__(self, inner: Detector, sink: List[float]) -> None:
        self._inner = inner
        self._sink = sink

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        start = time.perf_counter()
        try:
            return self._inner.detect(frame_bgr)
        finally:
            self._sink.append((time.perf_counter() - start) * 1000)


@dataclass
class BenchRun:
    label: str
    models: Dict[str, str]
    frames: int
    dropped: int
    wall_s: float
    stage_ms: Dict[str, List[float]] = field(default_factory=dict)
    mean_people: float = 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s else 0.0

    def summary(self) -> dict:
        stages = {
            s: {"p50_ms": round(float(np.percentile(v, 50)), 2), "p95_ms": round(float(np.percentile(v, 95)), 2)}
            for s, v in self.stage_ms.items()
            if v
        }
        return {
            "label": self.label,
            "models": self.models,
            "frames": self.frames,
            "dropped": self.dropped,
            "end_to_end_fps": round(self.fps, 2),
            "mean_people_per_frame": round(self.mean_people, 2),
            "stages": stages,
        }


@dataclass
class BenchResult:
    board: str
    threads: int
    working_size: str
    runs: List[BenchRun]

    def ratios(self) -> Dict[str, float]:
        """fp32 time / int8 time per stage and for the whole frame (>1: int8 is faster)."""
        if len(self.runs) < 2 or self.runs[0].label != "int8" or self.runs[1].label != "fp32":
            return {}
        base, other = self.runs[0], self.runs[1]
        out = {}
        for stage in ("face_detect", "person_detect"):
            a, b = base.stage_ms.get(stage), other.stage_ms.get(stage)
            if a and b:
                out[f"{stage}_speedup"] = round(float(np.median(b) / np.median(a)), 2)
        if base.fps and other.fps:
            out["end_to_end_speedup"] = round(base.fps / other.fps, 2)
        return out

    def to_dict(self) -> dict:
        return {
            "board": self.board,
            "intra_op_threads": self.threads,
            "working_size": self.working_size,
            "runs": [r.summary() for r in self.runs],
            "ratios": self.ratios(),
        }

    def table(self) -> str:
        lines = [f"board {self.board}, {self.working_size}, {self.threads} thread(s) per model"]
        for run in self.runs:
            s = run.summary()
            lines.append("")
            lines.append(f"{run.label}: {run.models['face']} + {run.models['person']}")
            lines.append(f"  {'stage':<14}{'p50 ms':>10}{'p95 ms':>10}")
            for stage, v in s["stages"].items():
                lines.append(f"  {stage:<14}{v['p50_ms']:>10.2f}{v['p95_ms']:>10.2f}")
            lines.append(f"  end-to-end {s['end_to_end_fps']:.2f} fps over {run.frames} frames, {run.dropped} dropped")
        for name, value in self.ratios().items():
            lines.append(f"{name}: {value:.2f}x (fp32 time / int8 time)")
        return "\n".join(lines)


def _one_run(cfg: ApplianceConfig, label: str, frames: int, progress: Optional[Progress] = None) -> BenchRun:
    stage_ms: Dict[str, List[float]] = {s: [] for s in STAGES}
    face, person = load_detectors(cfg.profile, cfg.anonymize, cfg.detection)
    timed_face, timed_person = _Timed(face, stage_ms["face_detect"]), _Timed(person, stage_ms["person_detect"])
    anonymizer = Anonymizer(timed_face, timed_person, cfg.anonymize)
    size = working_size(cfg.profile)
    source = open_source(cfg.capture.source, cfg.capture.model_copy(update={"loop": True}), size)
    people: List[int] = []
    dropped = 0
    # The first inference allocates and is not representative.
    anonymizer.warm_up(*size)
    for values in stage_ms.values():
        values.clear()
    loop = FrameLoop(source, anonymizer, build_analyzer(cfg), max_frames=frames, progress=progress, label=label)
    start = time.perf_counter()
    try:
        for result in loop:
            if isinstance(result, Lost):
                break
            stage_ms["capture"].append(result.times.capture_ms)
            if isinstance(result, Dropped):
                dropped += 1
                continue
            stage_ms["anonymize"].append(result.times.anonymize_ms)
            stage_ms["analyze"].append(result.times.analyze_ms)
            if result.analysis is not None:
                people.append(result.analysis.count)
    finally:
        source.close()
        anonymizer.close()
    wall = time.perf_counter() - start
    return BenchRun(
        label=label,
        models={"face": cfg.profile.models.face, "person": cfg.profile.models.person},
        frames=loop.frames_read,
        dropped=dropped,
        wall_s=wall,
        stage_ms=stage_ms,
        mean_people=float(np.mean(people)) if people else 0.0,
    )


def _other_precision(name: str, available: Set[str]) -> Optional[str]:
    """``x-int8`` <-> ``x-fp32`` when the manifest has the other one."""
    for a, b in (("-int8", "-fp32"), ("-fp32", "-int8")):
        if name.endswith(a) and name[: -len(a)] + b in available:
            return name[: -len(a)] + b
    return None


def _precision(cfg: ApplianceConfig) -> str:
    """'int8' or 'fp32' when both models share that suffix, else 'mixed'."""
    suffixes = {name.rsplit("-", 1)[-1] for name in (cfg.profile.models.face, cfg.profile.models.person)}
    return suffixes.pop() if len(suffixes) == 1 and suffixes <= {"int8", "fp32"} else "mixed"


def run_bench(
    cfg: ApplianceConfig, frames: int = 100, compare_precision: bool = False, progress: Optional[Progress] = None
) -> BenchResult:
    """Bench the configured models; with ``compare_precision`` also their int8/fp32 counterparts,
    int8 first, so ``ratios()`` reads fp32 time / int8 time."""
    runs = [_one_run(cfg, _precision(cfg), frames, progress)]
    if compare_precision:
        available = {m.name for m in load_manifest().models}
        selection = cfg.profile.models
        face = _other_precision(selection.face, available) or selection.face
        person = _other_precision(selection.person, available) or selection.person
        if (face, person) != (selection.face, selection.person):
            models = selection.model_copy(update={"face": face, "person": person})
            other = cfg.model_copy(update={"profile": cfg.profile.model_copy(update={"models": models})})
            runs.append(_one_run(other, _precision(other), frames, progress))
            runs.sort(key=lambda r: 0 if r.label == "int8" else 1)
    return BenchResult(
        board=cfg.profile.name,
        threads=cfg.profile.runtime.intra_op_threads,
        working_size=f"{cfg.profile.working_width}x{cfg.profile.working_height}",
        runs=runs,
    )
