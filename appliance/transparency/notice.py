"""The machine-readable notice: who runs the device, why, what it processes and what leaves it.

Built only from the running configuration, the model manifest and the message classes, so it cannot
drift from what the device does. The same document is printed by ``appliance notice manifest``,
published retained on ``{prefix}/{device_id}/notice`` and its hash goes into the birth message::

    notice = build_notice(cfg)
    payload = notice_payload(notice)     # the retained MQTT payload (canonical JSON bytes)
    digest = notice_hash(notice)         # sha256 hex of exactly those bytes
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Union

import appliance
from appliance.publish.messages import MESSAGE_TYPES, message_schema
from appliance.transparency.egress_fields import schema_fields
from appliance.transparency.notice_model import (
    NOTICE_KIND,
    NOTICE_VERSION,
    AuthorityNotice,
    Controller,
    DetailLevelNotice,
    LegalNotice,
    LocalTexts,
    ModelNotice,
    Notice,
    OnDeviceProcessing,
    PurposeNotice,
    RetentionNotice,
    Right,
    TopicNotice,
    ZoneDetailNotice,
)

if TYPE_CHECKING:
    from appliance.config import ApplianceConfig
    from appliance.detail_level import DetailPlan

# What the training sets' own terms say about use, stated plainly wherever a model trained on them
# runs. Keyed by the dataset name as it appears in the manifest's ``training_data``.
TRAINING_DATA_TERMS: Dict[str, str] = {
    "WIDER FACE": "WIDER FACE is for non-commercial research: its terms restrict commercial use of data "
    "derived from it, such as this model. Assess before any commercial use.",
    "PASCAL VOC": "PASCAL VOC images come from Flickr; their use must respect Flickr's terms of use.",
}

PURPOSE_TEXT: Dict[str, str] = {
    "crowd_safety": "Crowd safety: detect overcrowding and dangerous crowd movement early",
    "capacity_management": "Capacity management: know how many people are in an area to manage access",
    "footfall_statistics": "Footfall statistics: count how many people pass, for planning",
}


def _topic_notices(cfg: ApplianceConfig) -> List[TopicNotice]:
    prefix = f"{cfg.mqtt.topic_prefix}/{cfg.device_id}"
    when: Dict[str, tuple] = {
        "status": ("on every connect (online) and on stop or loss of connection (offline)", None),
        "counts": ("once per counting window", cfg.publish.interval_s),
        "anomalies": ("when an anomaly flag is raised or cleared", None),
        "anomaly_state": ("after each anomaly flag raised or cleared, and empty at every start", None),
        "health": ("periodically", cfg.publish.health_interval_s),
    }
    out = []
    for kind, cls in MESSAGE_TYPES.items():
        if kind == NOTICE_KIND:  # should the notice become a message class itself, it is described below
            continue
        sent, interval = when.get(kind, ("when produced", None))
        out.append(
            TopicNotice(
                topic=f"{prefix}/{kind}",
                kind=kind,
                retained=cls.retain,
                sent=sent,
                interval_s=interval,
                fields=schema_fields(message_schema(cls)),
            )
        )
    out.append(
        TopicNotice(
            topic=f"{prefix}/{NOTICE_KIND}",
            kind=NOTICE_KIND,
            retained=True,
            sent="on every connect (this document; full schema: docs/schemas/notice.json)",
            interval_s=None,
            # Top level only: the full self-description would double the notice's size for nothing.
            fields=schema_fields(Notice.model_json_schema(), depth=1),
        )
    )
    return out


def _model_notices(cfg: ApplianceConfig, models_dir: Optional[Path]) -> List[ModelNotice]:
    from appliance.models.manifest import load_manifest

    manifest = load_manifest(models_dir)
    out = []
    for name in (cfg.profile.models.face, cfg.profile.models.person):
        m = manifest.get(name)
        out.append(
            ModelNotice(
                name=m.name,
                task=m.task,
                sha256=m.sha256,
                precision=m.precision,
                source_package=m.source.package,
                source_version=m.source.version,
                source_url=m.source.url,
                licence=m.source.licence,
                training_data=m.training_data,
                training_data_terms=[t for k, t in TRAINING_DATA_TERMS.items() if k in m.training_data],
            )
        )
    return out


def build_notice(
    cfg: ApplianceConfig, *, models_dir: Optional[Path] = None, detail: Optional[DetailPlan] = None
) -> Notice:
    """The notice for this configuration (deterministic: the same config and models give the same
    bytes). ``detail``: the config's detail plan, where the caller has it already."""
    from appliance.config import config_hash
    from appliance.detail_level import plan_detail

    t = cfg.transparency
    a = cfg.anonymize
    analytics = ["people count per frame, aggregated per window (min, mean, max, last)"]
    if cfg.zones:
        analytics.append("occupancy, density and dwell time per zone")
    if cfg.lines:
        analytics.append("line crossings in each direction")
    if cfg.analytics.heatmap.enabled:
        h = cfg.analytics.heatmap
        analytics.append(f"a coarse {h.rows}x{h.cols} occupancy grid of numbers (not an image)")
    enabled = [name for name, det in cfg.anomalies if getattr(det, "enabled", False)]
    if any(z.max_people is not None or z.max_density_per_m2 is not None for z in cfg.zones):
        enabled.insert(0, "overcrowding")
    if enabled:
        analytics.append("anomaly flags: " + ", ".join(enabled))
    analytics.append(track_lifetime_text(cfg))
    languages: List[str] = list(t.sign_languages)
    return Notice(
        device_id=cfg.device_id,
        software_version=appliance.__version__,
        config_hash=config_hash(cfg),
        controller=Controller(
            name=t.operator_name, email=t.contact_email, phone=t.contact_phone, url=t.contact_url, dpo=t.dpo_contact
        ),
        purpose=PurposeNotice(
            code=t.purpose,
            text=PURPOSE_TEXT[t.purpose],
            details=_per_language(t.purpose_details, languages),
            legal_basis=_per_language(t.legal_basis, languages),
            dpia_reference=t.dpia_reference,
        ),
        legal=_legal(cfg),
        languages=languages,
        covered_area=_per_language(t.covered_area, languages),
        recipients=[_per_language(r, languages) for r in t.recipients],
        public_url=t.public_url,
        central_retention_days=t.central_retention_days,
        retention=RetentionNotice(
            frames_s=0.0,
            track_lifetime_s=track_lifetime_s(cfg),
            outbox_max_age_s=cfg.outbox.max_age_s,
            central_days=t.central_retention_days,
            audit_log_days=t.audit_log_retention_days,
        ),
        on_device=OnDeviceProcessing(
            frames="camera frames are held in memory only while they are processed; never stored, never sent",
            anonymization_method=a.method,
            anonymization_shape=a.shape,
            head_blur=a.head_blur,
            face_score_threshold=a.face_score_threshold,
            fail_closed="a frame is blurred before anything else sees it; if the face stage fails or takes over "
            f"{a.max_latency_ms:g} ms the frame is dropped, never passed on unblurred",
            analytics=analytics,
            zones=[z.name for z in cfg.zones],
            lines=[ln.name for ln in cfg.lines],
        ),
        egress="only the aggregates listed under topics leave the device: numbers, configured names and short "
        "status texts; no image, no box, no track, nothing that identifies a person",
        flags=flags_that_leave(cfg),
        destination="mqtt" if cfg.mqtt.url else "stdout",
        topics=_topic_notices(cfg),
        models=_model_notices(cfg, models_dir),
        audit_log="a hash-chained log on the device of every start, stop, config change, anomaly flag, image "
        "written by a local command and model verification failure",
        small_counts=_small_counts(cfg),
        detail_level=_detail_level(detail or plan_detail(cfg)),
    )


# The rights each regime gives a person seen by the camera (GDPR Arts. 13-21 and 77; LED Arts. 13-17
# and 52). Portability (GDPR Art. 20) does not apply to processing for a public task or under the LED.
RIGHTS: Dict[str, List[Right]] = {
    "gdpr": ["information", "access", "rectification", "erasure", "restriction", "object", "complaint"],
    "led": ["information", "access", "rectification", "erasure", "restriction", "complaint"],
}


def _legal(cfg: ApplianceConfig) -> LegalNotice:
    from appliance.config.authorities import AUTHORITIES

    t = cfg.transparency
    authority = None
    if t.country is not None:
        a = AUTHORITIES[t.country]
        authority = AuthorityNotice(country=t.country, name=a.name, url=a.url)
    return LegalNotice(regime=t.legal_regime, rights=RIGHTS[t.legal_regime], authority=authority)


def _per_language(value: object, languages: List[str]) -> LocalTexts:
    """An operator free text as ``{language: text}`` for every sign language ({} when unset)."""
    from appliance.config.transparency_sections import local_text

    texts = {lang: local_text(value, lang) for lang in languages}  # type: ignore[arg-type]
    return {lang: text for lang, text in texts.items() if text}


def track_lifetime_s(cfg: ApplianceConfig) -> float:
    """The one figure for how long a person track outlives its last sighting (the tracker's own setting)."""
    return float(cfg.analytics.tracker.max_age_s)


def track_lifetime_text(cfg: ApplianceConfig) -> str:
    return (
        "person tracks (boxes, no image) exist in memory only, while the person is in view and at most "
        f"{track_lifetime_s(cfg):g} s after, and are never published"
    )


def flags_that_leave(cfg: ApplianceConfig) -> List[str]:
    """Every anomaly type this configuration can publish, in the vocabulary's order."""
    from typing import get_args

    from appliance.vocabulary import AnomalyType

    enabled = {name for name, det in cfg.anomalies if getattr(det, "enabled", False)}
    if any(z.max_people is not None or z.max_density_per_m2 is not None for z in cfg.zones):
        enabled.add("overcrowding")
    return [kind for kind in get_args(AnomalyType) if kind in enabled]


def _detail_level(plan: DetailPlan) -> DetailLevelNotice:
    from appliance.detail_level import DORI_EDITION, DORI_PX_PER_M, RECOGNISE_PX_PER_M

    scale = f"{DORI_EDITION}: " + ", ".join(f"{name} {px:g}" for name, px in DORI_PX_PER_M) + " px/m"
    cap = plan.cap_px_per_m
    if not plan.measured:
        return DetailLevelNotice(
            scale=scale,
            zones=[],
            cap_px_per_m=cap,
            text="not measured: no ground plane is configured (appliance preview estimates it from people's heights)",
        )
    zones = [ZoneDetailNotice(zone=d.zone, px_per_m=round(d.px_per_m, 1), level=d.level) for d in plan.zones]
    worst = max(zones, key=lambda z: z.px_per_m)
    text = f"at most {worst.px_per_m:g} px/m ({worst.level}, in {worst.zone})"
    if cap is not None:
        text += f"; frames are downscaled on the device so that no zone exceeds {cap:g} px/m"
    text += (
        "; faces could be recognised there"
        if worst.px_per_m >= RECOGNISE_PX_PER_M
        else f"; below the {RECOGNISE_PX_PER_M:g} px/m at which faces could be recognised"
    )
    return DetailLevelNotice(scale=scale, zones=zones, cap_px_per_m=cap, text=text)


def _small_counts(cfg: ApplianceConfig) -> str:
    k, epsilon = cfg.privacy.min_count, cfg.privacy.noise_epsilon
    text = (
        f"zone, line and dwell figures of fewer than {k} people in a window are published as suppressed"
        if k
        else "not enabled: zone and line figures are published exactly, however few people they count"
    )
    if epsilon is not None:
        text += f"; Laplace noise (epsilon {epsilon:g} per value) is added to zone and line counts"
    protected = cfg.privacy.protect_total and k
    return text + ("; the frame total is suppressed likewise" if protected else "; the frame total is exact")


def notice_payload(notice: Notice) -> bytes:
    """Canonical JSON (sorted keys, compact): the retained payload, and what :func:`notice_hash` hashes."""
    return json.dumps(notice.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode("utf-8")


def notice_hash(notice: Notice) -> str:
    """sha256 hex of :func:`notice_payload`; goes into the birth message so a change is visible."""
    return hashlib.sha256(notice_payload(notice)).hexdigest()


def notice_schema() -> Dict[str, object]:
    schema: Dict[str, object] = Notice.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://crowd-appliance.invalid/schemas/{NOTICE_KIND}.json"
    schema["title"] = f"crowd-appliance notice v{NOTICE_VERSION}"
    return schema


def export_notice_schema(directory: Union[str, Path] = "docs/schemas") -> Path:
    """Write ``notice.json`` beside the message schemas (kept in sync by tests/test_transparency_notice.py)."""
    path = Path(directory) / f"{NOTICE_KIND}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(notice_schema(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
