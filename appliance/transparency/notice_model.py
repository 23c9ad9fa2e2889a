"""The notice's schema: what a device promises the public, as typed values with a description each.

Free texts the operator writes come per sign language (``{"en": ..., "nb": ...}``); the fixed texts
of the sign and the page are in ``translations/``; everything else is facts from the config.
"""

from __future__ import annotations

from typing import Dict, List, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from appliance.transparency.egress_fields import EgressField

NOTICE_VERSION: Literal[1] = 1
NOTICE_KIND = "notice"

# Operator free text keyed by sign language.
LocalTexts = Dict[str, str]
Right = Literal["information", "access", "rectification", "erasure", "restriction", "object", "complaint"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Controller(_Strict):
    name: Optional[str] = Field(description="The operator (controller); null: not configured yet")
    email: Optional[str] = Field(None, description="Where the public can ask or object")
    phone: Optional[str] = Field(None, description="Phone number of the operator")
    url: Optional[str] = Field(None, description="The operator's contact or privacy page")
    dpo: Optional[str] = Field(None, description="How to reach the data protection officer")


class PurposeNotice(_Strict):
    code: Literal["crowd_safety", "capacity_management", "footfall_statistics"] = Field(
        description="Why the device counts people (one of a fixed set)"
    )
    text: str = Field(description="The purpose in plain words")
    details: LocalTexts = Field(description="The operator's own detail, per sign language")
    legal_basis: LocalTexts = Field(description="The legal basis the operator names, per sign language")
    dpia_reference: Optional[str] = Field(None, description="Reference of the operator's impact assessment")


class AuthorityNotice(_Strict):
    country: str = Field(description="ISO 3166-1 alpha-2 code of the country the camera is in")
    name: str = Field(description="The data-protection supervisory authority of that country")
    url: str = Field(description="The authority's website, where a complaint can be lodged")


class LegalNotice(_Strict):
    regime: Literal["gdpr", "led"] = Field(
        description="gdpr: GDPR (EU 2016/679); led: Law Enforcement Directive (EU 2016/680) for a police operator"
    )
    rights: List[Right] = Field(description="The data subject's rights that apply under that regime")
    authority: Optional[AuthorityNotice] = Field(description="Where to complain; null: no country configured")


class RetentionNotice(_Strict):
    frames_s: float = Field(description="Camera frames: held in memory only while processed (0: never stored)")
    track_lifetime_s: float = Field(
        description="A person track (boxes in memory, never sent) is deleted this long after the person was "
        "last seen"
    )
    outbox_max_age_s: float = Field(description="Aggregates wait on the device at most this long for the broker")
    central_days: Optional[int] = Field(None, description="Operator's promise for the aggregates centrally (days)")
    audit_log_days: Optional[int] = Field(None, description="How long the operator keeps the audit log (days)")


class OnDeviceProcessing(_Strict):
    frames: str = Field(description="What happens to camera frames")
    anonymization_method: Literal["gaussian", "pixelate", "fill"] = Field(description="How faces are hidden")
    anonymization_shape: Literal["ellipse", "box"] = Field(description="Shape of the hidden area")
    face_blur: bool = Field(True, description="Detected faces are hidden (always)")
    head_blur: bool = Field(description="Heads of detected people are hidden too, not only detected faces")
    face_score_threshold: float = Field(description="Face detector confidence above which a face is hidden")
    fail_closed: str = Field(description="What happens when anonymization cannot be done in time or fails")
    analytics: List[str] = Field(description="What is computed from the anonymized frames")
    zones: List[str] = Field(description="Names of the configured zones")
    lines: List[str] = Field(description="Names of the configured counting lines")


class TopicNotice(_Strict):
    topic: str = Field(description="The MQTT topic")
    kind: str = Field(description="The message kind (last topic level)")
    retained: bool = Field(description="The broker keeps the last message for new subscribers")
    sent: str = Field(description="When a message is sent")
    interval_s: Optional[float] = Field(None, description="Fixed interval, when there is one")
    fields: Dict[str, EgressField] = Field(
        description="Every field of the payload by dotted path ('<name>': a configured name), from its schema"
    )


class ModelNotice(_Strict):
    name: str = Field(description="Model name in the manifest")
    task: Literal["face", "person"] = Field(description="What the model detects")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the model file, checked before loading")
    precision: Literal["fp32", "int8"] = Field(description="Numeric precision of the weights")
    source_package: str = Field(description="The package the weights come from")
    source_version: str = Field(description="That package's version")
    source_url: str = Field(description="Where the package is published")
    licence: str = Field(description="The weights' licence")
    training_data: str = Field(description="The data set the model was trained on")
    training_data_terms: List[str] = Field(description="What the training set's terms say about use")


class ZoneDetailNotice(_Strict):
    zone: str = Field(description="Zone name, or '(whole ground plane)' when no zone is configured")
    px_per_m: float = Field(description="Highest density in the zone (pixels per metre), after any cap")
    level: str = Field(description="IEC 62676-4 detail level that density reaches")


class DetailLevelNotice(_Strict):
    scale: str = Field(description="The scale the levels are named on")
    zones: List[ZoneDetailNotice] = Field(description="Per zone; empty when no ground plane is configured")
    cap_px_per_m: Optional[float] = Field(None, description="anonymize.max_detail_px_per_m, when set")
    text: str = Field(description="The detail level in plain words")


class Notice(_Strict):
    """The device's public notice (``{prefix}/{device_id}/notice``, retained)."""

    v: Literal[1] = Field(NOTICE_VERSION, description="Notice format version")
    device_id: str = Field(description="The device this notice describes")
    software_version: str = Field(description="The appliance software version it runs")
    config_hash: str = Field(description="Hash of the running configuration (also in the birth message)")
    controller: Controller = Field(description="Who runs the device and how to reach them")
    purpose: PurposeNotice = Field(description="Why, and on what legal basis")
    legal: LegalNotice = Field(description="The legal regime, the rights that apply and the authority")
    languages: List[str] = Field(description="Languages of the sign and the public page; the first is the default")
    covered_area: LocalTexts = Field(
        description="The area the camera watches, per language ({}: the zone names under on_device stand for it)"
    )
    recipients: List[LocalTexts] = Field(description="Who receives the aggregates, per language")
    public_url: Optional[str] = Field(None, description="The public page (the sign's QR code points here)")
    central_retention_days: Optional[int] = Field(None, description="Operator's promise for the aggregates")
    retention: RetentionNotice = Field(description="How long each kind of data exists")
    on_device: OnDeviceProcessing = Field(description="What happens on the device")
    egress: str = Field(description="What leaves the device, in one sentence")
    flags: List[str] = Field(description="Anomaly flags that can leave the device (see the anomalies topic)")
    destination: Literal["mqtt", "stdout"] = Field(description="mqtt: a broker; stdout: printed, nothing sent")
    topics: List[TopicNotice] = Field(description="Every topic the device publishes, with every field")
    models: List[ModelNotice] = Field(description="The machine-learned models the device runs")
    audit_log: str = Field(description="What the device records about itself")
    small_counts: str = Field(description="How figures of few people are protected before they leave")
    detail_level: DetailLevelNotice = Field(
        description="How much detail the device sees of a person at each zone (a head no detector finds "
        "is still at most this sharp)"
    )
