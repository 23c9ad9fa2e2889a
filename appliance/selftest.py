"""``appliance selftest``: the green/red check a technician runs on site after installing a device.

Each check is independent and says in one line what it found and, when it is not a pass, one
line of advice. The verdict:

* ``RED``: at least one check failed (exit code 1);
* ``GREEN: ready to deploy``: every check passed (a ``WARN``, such as a device certificate
  expiring within 30 days, is still ready, with the warning repeated in the verdict);
* ``GREEN`` with a note: nothing failed but some check could not be made (``SKIP``, e.g. the clock
  state is unknowable in this environment, or ``--skip``): confirm those by hand.

A demo setup is never "ready to deploy": no site config, the demo device id, a notice that names
no operator or contact, the bundled sample clip (or any file) as the camera, or no broker each
fail their check.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable, Collection, List, Literal, Optional

import cv2
import numpy as np

from appliance.config import ApplianceConfig
from appliance.config.schema import SiteConfig
from appliance.redaction import redact_url
from appliance.resources import data_file

if TYPE_CHECKING:
    from appliance.capture import RawFrame

Status = Literal["pass", "warn", "fail", "skip"]

# Checks ``--skip`` may leave out (for a lab bench or CI without a camera or NTP); the others
# (config, notice, models, anonymizer) are never skipped.
SKIPPABLE = ("camera", "time", "outbox", "broker")

CAMERA_FRAMES = 8  # frames looked at for black / uniform / frozen
CAMERA_MIN_SPAN_S = 2.0  # ...spread over at least this much source time, when the source allows
BLACK_MEAN_LEVEL = 12.0  # grey level: a capped lens or a dead sensor
UNIFORM_STD = 2.0  # grey-level spread: no picture at all (one colour)
OUTBOX_FREE_FACTOR = 2  # SQLite needs room for the queue plus its journal
CERT_WARN_DAYS = 30  # time to get a renewed certificate onto a pole before the broker refuses it
CAMERA_ADVICE = "set capture.source to this pole's camera (/dev/video0, rtsp://..., libcamera:0, argus:0)"


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    duration_ms: float = 0.0
    advice: str = ""  # one line: what to do when it is not a pass


@dataclass
class SelftestReport:
    checks: List[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    @property
    def ready_to_deploy(self) -> bool:
        return all(c.status in ("pass", "warn") for c in self.checks)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "result": "green" if self.ok else "red",
            "ready_to_deploy": self.ready_to_deploy,
            "checks": [asdict(c) for c in self.checks],
        }

    def verdict(self) -> str:
        if not self.ok:
            return "RED: fix the FAIL lines above before deploying"
        if self.ready_to_deploy:
            warned = sum(c.status == "warn" for c in self.checks)
            return f"GREEN: ready to deploy, but see the {warned} WARN line(s)" if warned else "GREEN: ready to deploy"
        skipped = sum(c.status == "skip" for c in self.checks)
        return f"GREEN, but {skipped} check(s) could not be made: confirm the SKIP lines by hand before deploying"

    def text(self) -> str:
        marks = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "skip": "SKIP"}
        lines = []
        for c in self.checks:
            lines.append(f"[{marks[c.status]}] {c.name:<12} {c.detail}")
            if c.advice and c.status != "pass":
                lines.append(f"{'':20}-> {c.advice}")
        lines.append(self.verdict())
        return "\n".join(lines)


class CheckFailed(Exception):
    """A failed check: what was found, and what to do about it."""

    def __init__(self, detail: str, advice: str = "") -> None:
        super().__init__(detail)
        self.advice = advice


class SkipCheck(CheckFailed):
    pass


class CheckWarning(CheckFailed):
    """Nothing is wrong yet, but will be soon without action (still ready to deploy)."""


def _run(report: SelftestReport, name: str, fn: Callable[[], str], advice: str = "") -> bool:
    """Run one check; it returns a detail line, or raises to fail (``advice``: the default advice)."""
    start = time.monotonic()
    status: Status = "pass"
    hint = ""
    try:
        detail = fn()
    except SkipCheck as skip:
        status, detail, hint = "skip", str(skip), skip.advice
    except CheckWarning as warning:
        status, detail, hint = "warn", str(warning), warning.advice
    except CheckFailed as failed:
        status, detail, hint = "fail", str(failed), failed.advice or advice
    except Exception as exc:  # every failure becomes one red line, never a traceback
        status, detail, hint = "fail", f"{type(exc).__name__}: {exc}".splitlines()[0], advice
    # Whatever a check found, a password in a URL (a camera's, a broker's) is not printed.
    detail, hint = redact_url(detail), redact_url(hint)
    report.checks.append(Check(name, status, detail, round((time.monotonic() - start) * 1000, 1), hint))
    return status == "pass"


# --------------------------------------------------------------------------- the checks


def check_config(cfg: ApplianceConfig, config_path: Optional[str]) -> str:
    if config_path is None:
        raise CheckFailed(
            "no site config given: running on built-in demo defaults",
            "pass the site file: appliance selftest --config /etc/crowd-appliance/site.yaml",
        )
    if cfg.device_id == SiteConfig.model_fields["device_id"].default:
        raise CheckFailed(
            f"{config_path}: device_id is the demo default {cfg.device_id!r} (empty or unfinished config)",
            "set device_id to the name the control room knows this pole by (docs/technician.md, step 3)",
        )
    return f"{config_path}: device {cfg.device_id}, board {cfg.profile.name}"


def check_notice(cfg: ApplianceConfig) -> str:
    """The public notice (the sign, the retained notice topic) names who runs the device and how to
    reach them: without both, people in view cannot learn who counts them."""
    t = cfg.transparency
    contact = t.contact_email or t.contact_url or t.contact_phone
    missing = [what for what, given in (("who runs it", t.operator_name), ("how to reach them", contact)) if not given]
    if missing:
        raise CheckFailed(
            f"the public notice does not say {' or '.join(missing)}",
            "set transparency.operator_name and contact_email, contact_url or contact_phone "
            "(docs/transparency.md); with provision: --transparency FILE",
        )
    return f"operator {t.operator_name}; contact {contact}; purpose {t.purpose}"


def judge_frames(frames: List[np.ndarray]) -> str:
    """Black, uniform or frozen frames raise :class:`CheckFailed`; otherwise a short description."""
    greys = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) if f.ndim == 3 else f for f in frames]
    means = [float(g.mean()) for g in greys]
    stds = [float(g.std()) for g in greys]
    if max(means) < BLACK_MEAN_LEVEL:
        raise CheckFailed(
            f"frames are black (mean grey level {max(means):.1f})",
            "lens cap on, camera covered, or no light at night without IR",
        )
    if max(stds) < UNIFORM_STD:
        raise CheckFailed(
            f"frames are one uniform colour (grey-level spread {max(stds):.1f})",
            "no picture: check the camera's signal, focus and exposure",
        )
    if len(greys) > 1 and all(np.array_equal(a, b) for a, b in zip(greys, greys[1:])):
        raise CheckFailed(
            f"frozen: {len(greys)} frames are identical",
            "the camera or stream repeats one still image: power-cycle the camera, check the stream",
        )
    return f"{len(greys)} frames, mean grey {sum(means) / len(means):.0f}, changing"


def read_camera_frames(cfg: ApplianceConfig, timeout_s: float) -> tuple[List[RawFrame], bool]:
    from appliance.app import working_size
    from appliance.capture import open_source

    capture = cfg.capture.model_copy(update={"read_timeout_s": timeout_s, "loop": False})
    source = open_source(cfg.capture.source, capture, working_size(cfg.profile))
    frames: List[RawFrame] = []
    try:
        while len(frames) < CAMERA_FRAMES or (
            frames[-1].timestamp_s - frames[0].timestamp_s < CAMERA_MIN_SPAN_S and len(frames) < 10 * CAMERA_FRAMES
        ):
            raw = source.read()
            if raw is None:
                break
            frames.append(raw)
    finally:
        source.close()
    return frames, source.live


def check_camera(cfg: ApplianceConfig, timeout_s: float) -> str:
    from appliance.capture import parse_source

    spec = parse_source(cfg.capture.source).shown  # a stream's password never reaches the output
    frames, live = read_camera_frames(cfg, timeout_s)
    if not frames:
        raise CheckFailed(
            f"no frame from {spec} within {timeout_s:.0f} s",
            "cable, camera power, capture.source, and the service user in group 'video'",
        )
    h, w = frames[0].image.shape[:2]
    found = judge_frames([f.image for f in frames])
    if cfg.capture.source == "sample":
        raise CheckFailed(
            "capture.source is the bundled sample clip, not a camera",
            CAMERA_ADVICE,
        )
    if not live:
        raise CheckFailed(
            f"capture.source {spec} is a file, not a camera",
            CAMERA_ADVICE,
        )
    return f"{spec}: {w}x{h}, {found}"


def check_time() -> str:
    from appliance.health.clock import clock_state

    state = clock_state()
    if state.synced is None:
        raise SkipCheck(state.detail, "check by hand that the clock is NTP-synchronised: timedatectl status")
    if not state.synced:
        raise CheckFailed(
            state.detail,
            "enable NTP (sudo timedatectl set-ntp true) and allow UDP 123 to the site's time server; "
            "counts windows carry timestamps",
        )
    return state.detail


def check_outbox(cfg: ApplianceConfig) -> str:
    if not cfg.mqtt.url:
        raise SkipCheck("not used: no broker configured", "")
    from appliance.publish import outbox_path

    parent = outbox_path(cfg.outbox, cfg.device_id).parent
    parent.mkdir(parents=True, exist_ok=True)
    probe = parent / f".selftest-write-{os.getpid()}"
    probe.write_bytes(b"ok")
    probe.unlink()
    free = shutil.disk_usage(parent).free
    need = OUTBOX_FREE_FACTOR * cfg.outbox.max_bytes
    mib = 1024 * 1024
    if free < need:
        raise CheckFailed(
            f"{parent}: {free / mib:.0f} MiB free, the outbox needs {need / mib:.0f} MiB "
            f"({OUTBOX_FREE_FACTOR} x outbox.max_bytes)",
            "free space on the SD card, or lower outbox.max_bytes",
        )
    return f"{parent} is writable, {free / mib:.0f} MiB free (needs {need / mib:.0f} MiB)"


def check_broker(cfg: ApplianceConfig, timeout_s: float) -> str:
    if not cfg.mqtt.url:
        raise CheckFailed(
            "no broker configured (mqtt.url): counts would only be printed on stdout",
            "set mqtt.url and the TLS files your integrator provisioned (docs/integrator.md)",
        )
    from appliance.publish import check_broker as publish_probe

    # Connect with this device's identity, publish one test message on its own topic, await the PUBACK.
    return publish_probe(cfg.mqtt, cfg.device_id, timeout_s=timeout_s)


def check_certificate(cfg: ApplianceConfig) -> str:
    """Days left of the client certificate the device logs in to the broker with."""
    if not cfg.mqtt.url:
        raise SkipCheck("not used: no broker configured", "")
    path = cfg.mqtt.tls.cert_file
    if not path:
        return "no client certificate (mqtt.tls.cert_file): nothing of the broker login expires here"
    from appliance.publish.certificate import days_left, load_certificate, not_valid_after

    cert = load_certificate(path)
    left, until = days_left(cert), not_valid_after(cert).strftime("%Y-%m-%d")
    renew = "ask the integrator for a renewed certificate (appliance provision rotate <id>) and install it"
    if left < 0:
        raise CheckFailed(f"{path}: expired on {until}: the broker refuses this device", renew)
    found = f"{path}: {left} days left (valid until {until})"
    if left < CERT_WARN_DAYS:
        raise CheckWarning(found, renew)
    return found


# --------------------------------------------------------------------------- the run


def run_selftest(
    cfg: ApplianceConfig,
    source_timeout_s: float = 10.0,
    *,
    config_path: Optional[str] = None,
    skip: Collection[str] = (),
) -> SelftestReport:
    """``config_path``: the site file given (None: built-in defaults). ``skip``: names from ``SKIPPABLE``."""
    from appliance.anonymize import Anonymizer
    from appliance.capture import RawFrame
    from appliance.models import load_detectors
    from appliance.models.verify import verify_models

    unknown = set(skip) - set(SKIPPABLE)
    if unknown:
        raise ValueError(f"cannot skip {', '.join(sorted(unknown))}; skippable: {', '.join(SKIPPABLE)}")

    report = SelftestReport()
    _run(report, "config", lambda: check_config(cfg, config_path))
    _run(report, "notice", lambda: check_notice(cfg))

    def models() -> str:
        result = verify_models()
        if not result.ok:
            raise RuntimeError("; ".join(line for line in result.lines() if not line.startswith("ok")))
        return result.lines()[-1]

    if not _run(report, "models", models, "reinstall the appliance; never copy model files by hand"):
        return report

    def anonymizer() -> str:
        face_detector, person_detector = load_detectors(cfg.profile, cfg.anonymize, cfg.detection)
        image = cv2.imread(str(data_file("selftest_face.jpg")), cv2.IMREAD_COLOR)
        if image is None:
            raise RuntimeError("reference image selftest_face.jpg is missing")
        before = len(face_detector.detect(image))
        if before == 0:
            raise RuntimeError("face detector found no face in the reference image")
        frame = Anonymizer(face_detector, person_detector, cfg.anonymize).process(RawFrame(0, 0.0, image))
        after = len(face_detector.detect(frame.image))
        if after:
            raise RuntimeError(f"{after} face(s) still detectable after anonymizing")
        return f"reference face found ({before}) and no longer detectable after blurring"

    _run(report, "anonymizer", anonymizer, "do not deploy: the device must not run without a working anonymizer")

    def skipped(name: str) -> Callable[[], str]:
        def fn() -> str:
            raise SkipCheck(f"skipped on request (--skip {name})", f"confirm the {name} check by hand")

        return fn

    checks: List[tuple[str, Callable[[], str], str]] = [
        ("camera", lambda: check_camera(cfg, source_timeout_s), ""),
        ("time", check_time, ""),
        ("outbox", lambda: check_outbox(cfg), "disk full or read-only SD card"),
        ("broker", lambda: check_broker(cfg, source_timeout_s), "URL, CA file, device certificate, broker ACL"),
        ("certificate", lambda: check_certificate(cfg), "mqtt.tls.cert_file: the PEM file from the bundle"),
    ]
    for name, fn, advice in checks:
        _run(report, name, skipped(name) if name in skip else fn, advice)
    return report
