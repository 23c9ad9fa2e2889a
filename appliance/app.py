"""Composition root: builds the stages from a config, handing each only its own section, and runs
them for each CLI command.

Every command iterates the same ``FrameLoop`` over the same ``Anonymizer`` the live pipeline uses,
so ``blur``, ``count`` and ``preview`` can never show or write a frame the appliance would not have
blurred.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import cv2
import numpy as np

from appliance.analyze import Analyzer, FrameAnalysis
from appliance.anonymize import AnonymizedFrame, Anonymizer
from appliance.audit import AuditLog, AuditRecorder
from appliance.capture import FrameSource, open_source, parse_source
from appliance.capture.sources import IMAGE_SUFFIXES
from appliance.config import ApplianceConfig, BoardProfile
from appliance.config.loader import config_hash
from appliance.detail_level import (
    DORI_EDITION,
    RECOGNISE_PX_PER_M,
    WHOLE_GROUND,
    DetailPlan,
    ZoneDetail,
    details_from_people,
    fit_height_scale,
    plan_detail,
)
from appliance.errors import InputError
from appliance.frames import Analysed, Dropped, FrameLoop, Lost
from appliance.health.monitor import HealthMonitor
from appliance.models import load_detectors
from appliance.models.manifest import load_manifest
from appliance.outputs import (
    atomic_output,
    check_output,
    device_state_folders,
    record_image,
    video_writer,
    write_image,
)
from appliance.pipeline import Pipeline
from appliance.progress import Progress
from appliance.publish import Publisher, RetainedDocument, make_birth, make_publisher
from appliance.publish.discovery import AnnouncedTopics, discovery_messages
from appliance.publish.outbox.store import outbox_path
from appliance.report import audit_head
from appliance.schedule import Schedule
from appliance.transparency import Notice, build_notice, notice_hash, notice_payload
from appliance.vocabulary import ModelInfo

log = logging.getLogger(__name__)


def working_size(profile: BoardProfile) -> Tuple[int, int]:
    return profile.working_width, profile.working_height


def model_infos(profile: BoardProfile) -> List[ModelInfo]:
    manifest = load_manifest()
    names = (profile.models.face, profile.models.person)
    return [ModelInfo(name=n, sha256=manifest.get(n).sha256) for n in names]


def build_anonymizer(cfg: ApplianceConfig, *, live: bool = False, detail: Optional[DetailPlan] = None) -> Anonymizer:
    """The anonymizer with its models, applying ``detail`` (the config's detail plan by default)."""
    face, person = load_detectors(cfg.profile, cfg.anonymize, cfg.detection)
    anonymizer = Anonymizer(face, person, cfg.anonymize, live=live, detail=detail or plan_detail(cfg))
    if live:
        anonymizer.warm_up(*working_size(cfg.profile))
    return anonymizer


def build_analyzer(cfg: ApplianceConfig, frame_size: Optional[Tuple[int, int]] = None) -> Analyzer:
    return Analyzer(
        frame_size or working_size(cfg.profile),
        zones=cfg.zones,
        lines=cfg.lines,
        analytics=cfg.analytics,
        anomalies=cfg.anomalies,
        privacy=cfg.privacy,
    )


def open_file_source(cfg: ApplianceConfig, spec: str, size: Optional[Tuple[int, int]]) -> FrameSource:
    """A file, folder or stream for a one-off command: read once, never looped."""
    return open_source(spec, cfg.capture.model_copy(update={"loop": False}), size)


def open_audit(cfg: ApplianceConfig, *, required: bool) -> Optional[AuditRecorder]:
    """The device's audit log with this start recorded. ``required`` when publishing to a broker
    (a deployed device): a log that cannot be written is then reported in health and retried, and
    the device keeps counting (fail closed on evidence, not on counting). A local demo run goes on
    without one, saying so."""
    recorder = AuditRecorder(AuditLog.from_config(cfg), cfg.device_id)
    recorder.start(cfg)
    if recorder.problem is not None and not required:
        log.warning("going on without an audit log (a device publishing to a broker always keeps one)")
        return None
    return recorder


def retained_documents(cfg: ApplianceConfig, notice: Notice) -> List[RetainedDocument]:
    """The public notice, and Home Assistant discovery: this config's entities, and the removal of
    any announced before and gone since (a zone dropped, discovery switched off)."""
    documents = [RetainedDocument("notice", notice_payload(notice))]
    current = discovery_messages(cfg.device_id, cfg.mqtt.topic_prefix, cfg.zones, cfg.lines, cfg.home_assistant)
    if cfg.mqtt.url is None:  # printed, not published: nothing announced, nothing to remember
        return documents + [RetainedDocument("discovery", m.payload, m.topic) for m in current]
    announced = AnnouncedTopics(outbox_path(cfg.outbox, cfg.device_id).parent / "discovery-topics.json")
    prefix = cfg.home_assistant.discovery_prefix + "/"
    for m in announced.messages(current):
        if m.topic.startswith(prefix):  # topics under an earlier prefix are no longer ours to touch
            documents.append(RetainedDocument("discovery", m.payload, m.topic))
    return documents


def build_pipeline(
    cfg: ApplianceConfig,
    source: Optional[FrameSource] = None,
    publisher: Optional[Publisher] = None,
    progress: Optional[Progress] = None,
) -> Pipeline:
    """Everything ``appliance run`` needs. Source and models are opened before the broker, so a
    bad camera or model fails fast with a clear error instead of a birth followed by silence. A live
    camera that does not answer yet is retried in the background (health: ``reconnecting``)."""
    source = source or open_source(cfg.capture.source, cfg.capture, working_size(cfg.profile), keep_trying=True)
    detail = plan_detail(cfg)  # what the anonymizer applies is what the notice states
    anonymizer = build_anonymizer(cfg, live=source.live, detail=detail)
    models = model_infos(cfg.profile)
    audit = open_audit(cfg, required=cfg.mqtt.url is not None)
    notice = build_notice(cfg, detail=detail)
    if publisher is None:
        birth = make_birth(
            config_hash=config_hash(cfg),
            board=cfg.profile.name,
            models=models,
            notice_hash=notice_hash(notice),
            audit=None if audit is None else audit_head(audit.published_head()),
        )
        publisher = make_publisher(
            device_id=cfg.device_id,
            mqtt=cfg.mqtt,
            publish=cfg.publish,
            outbox=cfg.outbox,
            birth=birth,
            documents=retained_documents(cfg, notice),
            discovery_prefix=cfg.home_assistant.discovery_prefix,
        )
    return Pipeline(
        source,
        anonymizer,
        build_analyzer(cfg),
        publisher,
        schedule=Schedule(cfg.publish.interval_s, cfg.publish.health_interval_s),
        health=HealthMonitor(
            cfg.health.face_stage_max_consecutive_failures, stuck_after_s=cfg.publish.health_interval_s
        ),
        models=models,
        connect_timeout_s=cfg.mqtt.connect_timeout_s,
        watchdog_timeout_s=cfg.health.watchdog_timeout_s,
        progress=progress,
        audit=audit,
    )


def _anonymizer_after(cfg: ApplianceConfig, source: FrameSource) -> Anonymizer:
    """Built once the source is open (it refuses a bad or oversized input before models load);
    the source is closed if the models fail."""
    try:
        return build_anonymizer(cfg)
    except BaseException:
        source.close()
        raise


# --------------------------------------------------------------------------- blur


@dataclass
class BlurReport:
    frames: int = 0
    faces: int = 0
    heads: int = 0
    dropped: int = 0


def blur_file(
    cfg: ApplianceConfig, src: Path, dst: Path, progress: Optional[Progress] = None, *, overwrite: bool = False
) -> BlurReport:
    """Anonymize an image or a video file at its own size. A frame the anonymizer cannot vouch
    for is written black (videos) or not written at all (images): never raw. The output is written
    as ``appliance.outputs`` says (no link followed, nothing replaced unless ``overwrite``, atomic)."""
    if not src.exists():
        raise InputError("no such file", path=str(src))
    is_image = src.suffix.lower() in IMAGE_SUFFIXES
    if is_image and dst.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(f"output of an image must end in one of {', '.join(IMAGE_SUFFIXES)}", path=str(dst))
    check_output(dst, overwrite=overwrite, protected=device_state_folders(cfg))
    source = open_file_source(cfg, str(src), size=None)  # refuses an oversized input before the models load
    report = BlurReport()
    writer: Optional[cv2.VideoWriter] = None
    anonymizer = _anonymizer_after(cfg, source)
    try:
        with atomic_output(dst, overwrite=overwrite) as tmp:
            for result in FrameLoop(source, anonymizer, progress=progress, label=f"blur {src.name}"):
                if isinstance(result, Lost):
                    continue
                report.frames += 1
                if isinstance(result, Dropped):
                    report.dropped += 1
                    image = np.zeros((result.size[1], result.size[0], 3), np.uint8)
                else:
                    report.faces += result.frame.faces_blurred
                    report.heads += result.frame.heads_blurred
                    image = result.frame.image
                if is_image:
                    if isinstance(result, Analysed):
                        write_image(tmp, image)
                    continue
                if writer is None:
                    fps = 1.0 / source.frame_period_s if source.frame_period_s else 10.0
                    writer = video_writer(tmp, fps, image.shape[1], image.shape[0], shown_as=dst)
                writer.write(image)  # a dropped frame is written black: the video keeps its timing
            if writer is not None:
                writer.release()  # complete before it is moved into place
    finally:
        source.close()
        anonymizer.close()
        if writer is not None:
            writer.release()
    record_image(cfg, "blur", dst, report.frames - (report.dropped if is_image else 0))
    return report


# --------------------------------------------------------------------------- count


def count_file(cfg: ApplianceConfig, src: Path, progress: Optional[Progress] = None) -> Iterator[Dict[str, Any]]:
    """One row per processed frame: ``{"frame": i, "count": n, "zones": {...}}`` (zones when configured)."""
    if not src.exists():
        raise InputError("no such file or folder", path=str(src))
    source = open_file_source(cfg, str(src), working_size(cfg.profile))  # refused here before the models load
    anonymizer = _anonymizer_after(cfg, source)
    loop = FrameLoop(source, anonymizer, build_analyzer(cfg), progress=progress, label=f"count {src.name}")
    try:
        for result in loop:
            if isinstance(result, Dropped):
                yield {"frame": result.index, "count": None, "dropped": result.reason}
            elif isinstance(result, Analysed) and result.analysis is not None:
                analysis = result.analysis
                row: Dict[str, Any] = {"frame": analysis.index, "count": analysis.count}
                if analysis.zone_counts:
                    row["zones"] = dict(analysis.zone_counts)
                if analysis.crossings:
                    row["lines"] = {k: c.model_dump(by_alias=True) for k, c in analysis.crossings.items()}
                yield row
    finally:
        source.close()
        anonymizer.close()


# --------------------------------------------------------------------------- preview


@dataclass(frozen=True)
class PreviewDetail:
    """The detail level per zone shown on a preview: from the ground plane, or estimated from the
    heights of the people seen (``estimated``), or unknown (empty) with neither."""

    zones: List[ZoneDetail]
    estimated: bool

    def warnings(self) -> List[str]:
        how = "estimated from people's heights, " if self.estimated else ""
        return [
            f"zone {d.zone} reaches {d.px_per_m:.0f} px/m ({how}{d.level} on {DORI_EDITION}): faces could be "
            f"recognised there; set anonymize.max_detail_px_per_m (e.g. {RECOGNISE_PX_PER_M / 2:g}) or aim wider"
            for d in self.zones
            if d.recognisable
        ]


def preview_detail(
    cfg: ApplianceConfig, detail: DetailPlan, people_boxes: np.ndarray, frame_size: Tuple[int, int]
) -> PreviewDetail:
    """From the detail plan (measured on the ground plane; after the cap, which is what the frame
    holds), else from a fit of the person boxes seen in frames of ``frame_size``."""
    if detail.measured:
        return PreviewDetail(detail.zones, estimated=False)
    scale = fit_height_scale(people_boxes, frame_size)
    return PreviewDetail([] if scale is None else details_from_people(cfg.zones, scale, frame_size), estimated=True)


def draw_overlay(
    frame: AnonymizedFrame, analysis: FrameAnalysis, cfg: ApplianceConfig, detail: Optional[PreviewDetail] = None
) -> np.ndarray:
    """Zones, lines, person anchors, counts and the detail level per zone drawn on a copy of an
    anonymized frame, with a red warning line where faces could be recognised."""
    img = frame.image.copy()
    h, w = img.shape[:2]
    density = {d.zone: d for d in detail.zones} if detail else {}
    approx = "~" if detail and detail.estimated else ""

    def px(points: List[Tuple[float, float]]) -> np.ndarray:
        return np.array([[round(x * w), round(y * h)] for x, y in points], np.int32)

    for zone in cfg.zones:
        poly = px(zone.polygon)
        cv2.polylines(img, [poly], True, (0, 200, 255), 2)
        label = f"{zone.name}: {analysis.zone_counts.get(zone.name, 0)}"
        x0, y0 = int(poly[0][0]), int(poly[0][1])
        cv2.putText(img, label, (x0, y0), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 200, 255), 2)
        if zone.name in density:
            d = density[zone.name]
            colour = (0, 0, 255) if d.recognisable else (0, 200, 255)
            text = f"{approx}{d.px_per_m:.0f} px/m {d.level}"
            cv2.putText(img, text, (x0, y0 + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 2)
    for line in cfg.lines:
        a, b = px([line.start, line.end])
        cv2.arrowedLine(img, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), (255, 80, 0), 2, tipLength=0.03)
        cv2.putText(img, line.name, (int(a[0]), int(a[1])), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 80, 0), 2)
    for x1, y1, x2, y2 in analysis.boxes.astype(int):
        cv2.rectangle(img, (int(x1), int(y1)), (int(x2), int(y2)), (0, 255, 0), 1)
    for x, y in analysis.anchors.astype(int):
        cv2.circle(img, (int(x), int(y)), 3, (0, 255, 0), -1)
    banner = f"{analysis.count} people | faces {frame.faces_blurred} | heads {frame.heads_blurred} blurred"
    if WHOLE_GROUND in density:
        banner += f" | {approx}{density[WHOLE_GROUND].px_per_m:.0f} px/m {density[WHOLE_GROUND].level}"
    cv2.rectangle(img, (0, 0), (w, 26), (0, 0, 0), -1)
    cv2.putText(img, banner, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1)
    recognisable = [d for d in detail.zones if d.recognisable] if detail else []
    if recognisable:
        worst = max(recognisable, key=lambda d: d.px_per_m)
        text = f"WARNING: {worst.zone} {approx}{worst.px_per_m:.0f} px/m: faces could be recognised"
        cv2.rectangle(img, (0, h - 26), (w, h), (0, 0, 200), -1)
        cv2.putText(img, text, (6, h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1)
    return img


@dataclass(frozen=True)
class PreviewSummary:
    text: str  # one line for the technician
    warnings: List[str]  # one line each, for stderr: zones where faces could be recognised


def write_preview(cfg: ApplianceConfig, dst: Path, skip_frames: int = 0, *, overwrite: bool = False) -> PreviewSummary:
    """Write one anonymized frame with the site's zones and lines, and the detail level per zone,
    drawn on it, for aiming the camera. Without a ground plane the detail level is estimated from
    the heights of the people in all the frames read (``skip_frames`` + 1).

    The file stays on the device (the technician copies it off over their own link), written as
    ``appliance.outputs`` says."""
    check_output(dst, overwrite=overwrite, protected=device_state_folders(cfg))
    plan = plan_detail(cfg)
    anonymizer = build_anonymizer(cfg, detail=plan)
    source = open_file_source(cfg, cfg.capture.source, working_size(cfg.profile))
    last: Optional[Analysed] = None
    seen: List[np.ndarray] = []
    anonymizer = _anonymizer_after(cfg, source)
    try:
        for i, result in enumerate(FrameLoop(source, anonymizer, build_analyzer(cfg), max_frames=skip_frames + 1)):
            if isinstance(result, Analysed):
                last = result
                seen.append(result.frame.people.boxes)
            elif isinstance(result, Dropped) and i == skip_frames:
                raise InputError(f"anonymizer dropped the frame ({result}); nothing written")
            elif isinstance(result, Lost):
                break  # a live camera that gave nothing within capture.read_timeout_s
    finally:
        source.close()
        anonymizer.close()
    if last is None or last.analysis is None:
        raise InputError(f"source gave no frame (state {source.state})", path=parse_source(cfg.capture.source).shown)
    h, w = last.frame.image.shape[:2]
    detail = preview_detail(cfg, plan, np.concatenate(seen), (w, h))
    with atomic_output(dst, overwrite=overwrite) as tmp:
        write_image(tmp, draw_overlay(last.frame, last.analysis, cfg, detail))
    record_image(cfg, "preview", dst, 1)
    worst = max(detail.zones, key=lambda d: d.px_per_m, default=None)
    level = "detail level unknown (no ground plane, no whole person seen)"
    if worst is not None:
        how = "estimated from people's heights" if detail.estimated else "from the ground plane"
        level = f"up to {worst.px_per_m:.0f} px/m ({worst.level}, {how})"
    text = f"{last.analysis.count} people, {len(cfg.zones)} zone(s), {len(cfg.lines)} line(s), {level}"
    return PreviewSummary(text, detail.warnings())
