"""``appliance selftest``: the green/red check a technician runs after installing a device.

Each check is independent and says in one line what it found; the run is green only if every
check passes. Checks that need something the config does not use (a broker) are skipped, not failed.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, List, Literal

import cv2

from appliance.config import ApplianceConfig
from appliance.resources import data_file

Status = Literal["pass", "fail", "skip"]


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    duration_ms: float = 0.0


@dataclass
class SelftestReport:
    checks: List[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "result": "green" if self.ok else "red", "checks": [asdict(c) for c in self.checks]}

    def text(self) -> str:
        marks = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP"}
        lines = [f"[{marks[c.status]}] {c.name:<12} {c.detail}" for c in self.checks]
        lines.append("GREEN: ready to deploy" if self.ok else "RED: fix the FAIL lines above before deploying")
        return "\n".join(lines)


def _run(report: SelftestReport, name: str, fn: Callable[[], str]) -> bool:
    """Run one check; it returns a detail line, or raises to fail; a ``SkipCheck`` skips it."""
    start = time.monotonic()
    try:
        detail = fn()
        status: Status = "pass"
    except SkipCheck as skip:
        status, detail = "skip", str(skip)
    except Exception as exc:  # every failure becomes one red line, never a traceback
        status, detail = "fail", f"{type(exc).__name__}: {exc}".splitlines()[0]
    report.checks.append(Check(name, status, detail, round((time.monotonic() - start) * 1000, 1)))
    return status == "pass"


class SkipCheck(Exception):
    pass


def run_selftest(cfg: ApplianceConfig, source_timeout_s: float = 10.0) -> SelftestReport:
    from appliance.anonymize import Anonymizer
    from appliance.app import working_size
    from appliance.capture import RawFrame, open_source
    from appliance.models import load_detectors
    from appliance.models.verify import verify_models

    report = SelftestReport()
    report.checks.append(Check("config", "pass", f"device {cfg.device_id}, board {cfg.profile.name}"))

    def models() -> str:
        result = verify_models()
        if not result.ok:
            raise RuntimeError("; ".join(line for line in result.lines() if not line.startswith("ok")))
        return result.lines()[-1]

    if not _run(report, "models", models):
        return report

    def anonymizer() -> str:
        face_detector, person_detector = load_detectors(cfg.profile, cfg.anonymize, cfg.detection)
        image = cv2.imread(str(data_file("selftest_face.jpg")), cv2.IMREAD_COLOR)
        before = len(face_detector.detect(image))
        if before == 0:
            raise RuntimeError("face detector found no face in the reference image")
        frame = Anonymizer(face_detector, person_detector, cfg.anonymize).process(RawFrame(0, 0.0, image))
        after = len(face_detector.detect(frame.image))
        if after:
            raise RuntimeError(f"{after} face(s) still detectable after anonymizing")
        return f"reference face found ({before}) and no longer detectable after blurring"

    _run(report, "anonymizer", anonymizer)

    def camera() -> str:
        capture = cfg.capture.model_copy(update={"read_timeout_s": source_timeout_s})
        source = open_source(cfg.capture.source, capture, working_size(cfg.profile))
        try:
            raw = source.read()
        finally:
            source.close()
        if raw is None:
            raise RuntimeError(f"no frame from {cfg.capture.source} within {source_timeout_s:.0f} s")
        h, w = raw.image.shape[:2]
        if float(raw.image.std()) < 2.0:
            raise RuntimeError("frame is uniform (lens covered, cap on, or no signal)")
        return f"{cfg.capture.source}: frame {w}x{h}"

    _run(report, "camera", camera)

    def outbox() -> str:
        if not cfg.mqtt.url:
            raise SkipCheck("no broker configured (messages go to stdout)")
        from appliance.publish import outbox_path

        parent = outbox_path(cfg.outbox, cfg.device_id).parent
        parent.mkdir(parents=True, exist_ok=True)
        probe = parent / ".selftest-write"
        probe.write_bytes(b"ok")
        probe.unlink()
        return f"{parent} is writable"

    _run(report, "outbox", outbox)

    def broker() -> str:
        if not cfg.mqtt.url:
            raise SkipCheck("no broker configured")
        from appliance.publish import check_broker

        return check_broker(cfg.mqtt, cfg.device_id, timeout_s=source_timeout_s)

    _run(report, "broker", broker)
    return report
