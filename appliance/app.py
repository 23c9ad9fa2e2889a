"""Composition root: builds the stages from a config and runs them for each CLI command.

Everything here goes through the same ``Anonymizer`` the live pipeline uses, so ``blur``,
``count`` and ``preview`` can never show or write a frame the appliance would not have blurred.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import cv2
import numpy as np

from appliance.analyze import Analyzer, FrameAnalysis
from appliance.anonymize import AnonymizedFrame, Anonymizer, FrameDropped
from appliance.capture import FrameSource, RawFrame, open_source
from appliance.capture.sources import IMAGE_SUFFIXES
from appliance.config import ApplianceConfig
from appliance.config.loader import config_hash
from appliance.errors import InputError
from appliance.models import load_detectors
from appliance.models.manifest import load_manifest
from appliance.pipeline import Pipeline
from appliance.publish import ModelInfo, Publisher, make_birth, make_publisher


def working_size(cfg: ApplianceConfig) -> Tuple[int, int]:
    return cfg.profile.working_width, cfg.profile.working_height


def model_infos(cfg: ApplianceConfig) -> List[ModelInfo]:
    manifest = load_manifest()
    names = (cfg.profile.models.face, cfg.profile.models.person)
    return [ModelInfo(name=n, sha256=manifest.get(n).sha256) for n in names]


def build_anonymizer(cfg: ApplianceConfig, *, live: bool = False) -> Anonymizer:
    face, person = load_detectors(cfg)
    anonymizer = Anonymizer(face, person, cfg.anonymize, live=live)
    if live:
        anonymizer.warm_up(*working_size(cfg))
    return anonymizer


def build_pipeline(
    cfg: ApplianceConfig, source: Optional[FrameSource] = None, publisher: Optional[Publisher] = None
) -> Pipeline:
    """Everything ``appliance run`` needs. Source and models are opened before the broker, so a
    bad camera or model fails fast with a clear error instead of a birth followed by silence."""
    source = source or open_source(cfg.capture.source, cfg.capture, working_size(cfg))
    anonymizer = build_anonymizer(cfg, live=source.live)
    models = model_infos(cfg)
    publisher = publisher or make_publisher(
        device_id=cfg.device_id,
        mqtt=cfg.mqtt,
        publish=cfg.publish,
        outbox=cfg.outbox,
        birth=make_birth(config_hash=config_hash(cfg), board=cfg.profile.name, models=models),
    )
    analyzer = Analyzer(cfg, frame_size=working_size(cfg))
    return Pipeline(cfg, source, anonymizer, analyzer, publisher, models)


# --------------------------------------------------------------------------- blur


@dataclass
class BlurReport:
    frames: int = 0
    faces: int = 0
    heads: int = 0
    dropped: int = 0


def blur_file(cfg: ApplianceConfig, src: Path, dst: Path) -> BlurReport:
    """Anonymize an image or a video file at its own size. A frame the anonymizer cannot vouch
    for is written black (videos) or not written at all (images): never raw."""
    if not src.exists():
        raise InputError("no such file", path=str(src))
    anonymizer = build_anonymizer(cfg)
    report = BlurReport()
    if src.suffix.lower() in IMAGE_SUFFIXES:
        image = cv2.imread(str(src), cv2.IMREAD_COLOR)
        if image is None:
            raise InputError("cannot read as an image", path=str(src))
        if dst.suffix.lower() not in IMAGE_SUFFIXES:
            raise InputError(f"output of an image must end in one of {', '.join(IMAGE_SUFFIXES)}", path=str(dst))
        frame = _anonymize_or_none(anonymizer, RawFrame(0, 0.0, image), report)
        if frame is not None and not cv2.imwrite(str(dst), frame.image):
            raise InputError("cannot write", path=str(dst))
        return report

    source = open_source(str(src), cfg.capture.model_copy(update={"loop": False}), size=None)
    writer: Optional[cv2.VideoWriter] = None
    try:
        while (raw := source.read()) is not None:
            if writer is None:
                h, w = raw.image.shape[:2]
                fps = getattr(source, "fps", 10.0)
                writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                if not writer.isOpened():
                    raise InputError("cannot open for writing as video (use .mp4 or .avi)", path=str(dst))
            frame = _anonymize_or_none(anonymizer, raw, report)
            # A dropped frame's pixels were zeroed by the anonymizer: writing it keeps the timing.
            writer.write(frame.image if frame is not None else raw.image)
    finally:
        source.close()
        if writer is not None:
            writer.release()
    return report


def _anonymize_or_none(anonymizer: Anonymizer, raw: RawFrame, report: BlurReport) -> Optional[AnonymizedFrame]:
    report.frames += 1
    try:
        frame = anonymizer.process(raw)
    except FrameDropped:
        report.dropped += 1
        return None
    report.faces += frame.faces_blurred
    report.heads += frame.heads_blurred
    return frame


# --------------------------------------------------------------------------- count


def count_file(cfg: ApplianceConfig, src: Path) -> Iterator[dict]:
    """One row per processed frame: ``{"frame": i, "count": n, "zones": {...}}`` (zones when configured)."""
    if not src.exists():
        raise InputError("no such file or folder", path=str(src))
    anonymizer = build_anonymizer(cfg)
    source = open_source(str(src), cfg.capture.model_copy(update={"loop": False}), working_size(cfg))
    analyzer = Analyzer(cfg, frame_size=working_size(cfg))
    try:
        while (raw := source.read()) is not None:
            try:
                frame = anonymizer.process(raw)
            except FrameDropped as drop:
                yield {"frame": raw.index, "count": None, "dropped": drop.reason}
                continue
            analysis = analyzer.process(frame)
            row: dict = {"frame": analysis.index, "count": analysis.count}
            if analysis.zone_counts:
                row["zones"] = dict(analysis.zone_counts)
            if analysis.crossings:
                row["lines"] = {k: {"in": v[0], "out": v[1]} for k, v in analysis.crossings.items()}
            yield row
    finally:
        source.close()


# --------------------------------------------------------------------------- preview


def draw_overlay(frame: AnonymizedFrame, analysis: FrameAnalysis, cfg: ApplianceConfig) -> np.ndarray:
    """Zones, lines, person anchors and counts drawn on a copy of an anonymized frame."""
    img = frame.image.copy()
    h, w = img.shape[:2]

    def px(points: List[Tuple[float, float]]) -> np.ndarray:
        return np.array([[round(x * w), round(y * h)] for x, y in points], np.int32)

    for zone in cfg.zones:
        poly = px(zone.polygon)
        cv2.polylines(img, [poly], True, (0, 200, 255), 2)
        label = f"{zone.name}: {analysis.zone_counts.get(zone.name, 0)}"
        cv2.putText(img, label, tuple(int(v) for v in poly[0]), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 200, 255), 2)
    for line in cfg.lines:
        a, b = px([line.start, line.end])
        cv2.arrowedLine(img, tuple(int(v) for v in a), tuple(int(v) for v in b), (255, 80, 0), 2, tipLength=0.03)
        cv2.putText(img, line.name, tuple(int(v) for v in a), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 80, 0), 2)
    for x1, y1, x2, y2 in analysis.boxes.astype(int):
        cv2.rectangle(img, (x1, y1), (x2, y2), (0, 255, 0), 1)
    for x, y in analysis.anchors.astype(int):
        cv2.circle(img, (int(x), int(y)), 3, (0, 255, 0), -1)
    banner = f"{analysis.count} people | faces {frame.faces_blurred} | heads {frame.heads_blurred} blurred"
    cv2.rectangle(img, (0, 0), (w, 26), (0, 0, 0), -1)
    cv2.putText(img, banner, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1)
    return img


def write_preview(cfg: ApplianceConfig, dst: Path, skip_frames: int = 0) -> str:
    """Write one anonymized frame with the site's zones and lines drawn on it, for aiming the camera.

    The file stays on the device (the technician copies it off over their own link)."""
    anonymizer = build_anonymizer(cfg)
    source = open_source(cfg.capture.source, cfg.capture.model_copy(update={"loop": False}), working_size(cfg))
    analyzer = Analyzer(cfg, frame_size=working_size(cfg))
    try:
        frame: Optional[AnonymizedFrame] = None
        analysis: Optional[FrameAnalysis] = None
        for i in range(skip_frames + 1):
            raw = source.read()
            if raw is None:
                if frame is not None:
                    break
                raise InputError(f"source gave no frame (state {source.state})", path=cfg.capture.source)
            try:
                frame = anonymizer.process(raw)
            except FrameDropped as drop:
                if i == skip_frames:
                    raise InputError(f"anonymizer dropped the frame ({drop}); nothing written") from None
                continue
            analysis = analyzer.process(frame)
        assert frame is not None and analysis is not None
    finally:
        source.close()
    if not cv2.imwrite(str(dst), draw_overlay(frame, analysis, cfg)):
        raise InputError("cannot write", path=str(dst))
    return f"{analysis.count} people, {len(cfg.zones)} zone(s), {len(cfg.lines)} line(s)"
