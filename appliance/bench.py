"""``appliance bench``: per-stage latency and end-to-end fps on a clip, for the configured board profile.

Figures are for comparing within one run (int8 vs fp32 with ``--compare-precision``, one board profile vs
another on the same machine); absolute milliseconds depend on the machine and its load.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set

import numpy as np

from appliance.analyze import Analyzer
from appliance.anonymize import Anonymizer, FrameDropped
from appliance.capture import open_source
from appliance.config import ApplianceConfig
from appliance.models import load_detectors
from appliance.models.detections import Detections
from appliance.models.manifest import load_manifest

STAGES = ("capture", "face_detect", "blur", "person_detect", "analyze")


class _Timed:
    """Wraps a detector and records how long each call took."""

    def __init__(self, inner: object, sink: List[float]) -> None:
        self._inner = inner
        self._sink = sink

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        start = time.perf_counter()
        try:
            return self._inner.detect(frame_bgr)  # type: ignore[attr-defined]
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


def _one_run(cfg: ApplianceConfig, label: str, frames: int) -> BenchRun:
    stage_ms: Dict[str, List[float]] = {s: [] for s in STAGES}
    face, person = load_detectors(cfg)
    timed_face, timed_person = _Timed(face, stage_ms["face_detect"]), _Timed(person, stage_ms["person_detect"])
    anonymizer = Anonymizer(timed_face, timed_person, cfg.anonymize)
    size = (cfg.profile.working_width, cfg.profile.working_height)
    source = open_source(cfg.capture.source, cfg.capture.model_copy(update={"loop": True}), size)
    analyzer = Analyzer(cfg, frame_size=size)
    people: List[int] = []
    dropped = 0
    # The first inference allocates and is not representative.
    anonymizer.warm_up(*size)
    for values in stage_ms.values():
        values.clear()
    start = time.perf_counter()
    done = 0
    try:
        while done < frames:
            t0 = time.perf_counter()
            raw = source.read()
            if raw is None:
                break
            t1 = time.perf_counter()
            stage_ms["capture"].append((t1 - t0) * 1000)
            n_face, n_person = len(stage_ms["face_detect"]), len(stage_ms["person_detect"])
            try:
                frame = anonymizer.process(raw)
            except FrameDropped:
                dropped += 1
                done += 1
                continue
            t2 = time.perf_counter()
            detect_ms = sum(stage_ms["face_detect"][n_face:]) + sum(stage_ms["person_detect"][n_person:])
            stage_ms["blur"].append(max((t2 - t1) * 1000 - detect_ms, 0.0))
            analysis = analyzer.process(frame)
            stage_ms["analyze"].append((time.perf_counter() - t2) * 1000)
            people.append(analysis.count)
            done += 1
    finally:
        source.close()
    wall = time.perf_counter() - start
    return BenchRun(
        label=label,
        models={"face": cfg.profile.models.face, "person": cfg.profile.models.person},
        frames=done,
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


def run_bench(cfg: ApplianceConfig, frames: int = 100, compare_precision: bool = False) -> BenchResult:
    """Bench the configured models; with ``compare_precision`` also their int8/fp32 counterparts,
    int8 first, so ``ratios()`` reads fp32 time / int8 time."""
    runs = [_one_run(cfg, _precision(cfg), frames)]
    if compare_precision:
        available = {m.name for m in load_manifest().models}
        selection = cfg.profile.models
        face = _other_precision(selection.face, available) or selection.face
        person = _other_precision(selection.person, available) or selection.person
        if (face, person) != (selection.face, selection.person):
            models = selection.model_copy(update={"face": face, "person": person})
            other = cfg.model_copy(update={"profile": cfg.profile.model_copy(update={"models": models})})
            runs.append(_one_run(other, _precision(other), frames))
            runs.sort(key=lambda r: 0 if r.label == "int8" else 1)
    return BenchResult(
        board=cfg.profile.name,
        threads=cfg.profile.runtime.intra_op_threads,
        working_size=f"{cfg.profile.working_width}x{cfg.profile.working_height}",
        runs=runs,
    )
