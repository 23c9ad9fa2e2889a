"""Config sections of what the device promises the public: small-count privacy and transparency."""

from __future__ import annotations

import re
from typing import List, Literal, Optional

from pydantic import Field, field_validator

from appliance.config.base import Strict


class PrivacyConfig(Strict):
    """Small-count protection of what is published, so one person at 3 a.m. cannot be singled out."""

    min_count: int = Field(
        0,
        ge=0,
        le=1000,
        description="k: a zone that held fewer than k people, a line direction crossed by fewer than k, and dwell "
        "statistics of fewer than k visits are published as suppressed in that window (0: off). The frame total "
        "stays exact",
    )
    protect_total: bool = Field(
        False,
        description="Also suppress the frame total of a window that saw fewer than min_count people (it is exact "
        "by default: the control room needs the real crowd size)",
    )
    noise_epsilon: Optional[float] = Field(
        None,
        gt=0,
        le=10,
        description="Add Laplace noise of scale 1/epsilon to each published zone count and line crossing count "
        "(differential privacy per released value); none: exact counts",
    )


# --------------------------------------------------------------------------- transparency

SignLanguage = Literal["en", "fr", "nb"]  # one translation file each in appliance/transparency/translations/
Purpose = Literal["crowd_safety", "capacity_management", "footfall_statistics"]


class TransparencyConfig(Strict):
    """Who runs the device and why: printed on the public sign, published in the notice, kept in the record.

    Texts are at most 200 characters and may not hold an unbroken run of 80 letters/digits: the notice
    is published, and the egress policy refuses longer strings and anything that looks like encoded data.
    """

    operator_name: Optional[str] = Field(
        None, min_length=1, max_length=200, description="The controller (who decides why the camera is there)"
    )
    contact_email: Optional[str] = Field(
        None, pattern=r"^[^@\s]+@[^@\s]+$", max_length=200, description="Where the public can ask or object"
    )
    contact_phone: Optional[str] = Field(
        None, pattern=r"^[0-9 +()./-]{3,40}$", description="Phone number printed on the sign"
    )
    contact_url: Optional[str] = Field(
        None, pattern=r"^https?://\S+$", max_length=200, description="Contact page (privacy or DPO page)"
    )
    purpose: Purpose = Field("crowd_safety", description="Why the device counts people (one of a fixed set)")
    purpose_details: str = Field("", max_length=200, description="Free-text detail of the purpose, in plain words")
    legal_basis: Optional[str] = Field(
        None, max_length=200, description="Legal basis of the processing, e.g. 'GDPR Art. 6(1)(e), public task'"
    )
    dpia_reference: Optional[str] = Field(
        None, max_length=200, description="Reference of the operator's data-protection impact assessment"
    )
    public_url: Optional[str] = Field(
        None,
        pattern=r"^https?://\S+$",
        max_length=200,
        description="Public page with the full notice; the sign's QR code points here (none: a compact notice)",
    )
    sign_languages: List[SignLanguage] = Field(
        default_factory=lambda: list[SignLanguage](["en"]),
        min_length=1,
        description="Languages of the printed sign, one page each; the first is the default",
    )
    central_retention_days: Optional[int] = Field(
        None, ge=1, description="How long the operator promises to keep the aggregates centrally (days)"
    )
    audit_log_path: Optional[str] = Field(
        None,
        description="Append-only, hash-chained audit log (JSON lines); {device_id} and {state_dir} are replaced "
        "as in outbox.path. "
        "None: audit.jsonl beside the outbox",
    )

    @field_validator(
        "operator_name", "contact_email", "contact_url", "purpose_details", "legal_basis", "dpia_reference",
        "public_url",
    )
    @classmethod
    def _publishable(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and re.search(r"[A-Za-z0-9+/_-]{80,}", v):
            raise ValueError("has an unbroken run of 80+ letters/digits, which egress refuses as encoded data")
        return v


class AuditConfig(Strict):
    """Rotation of the audit log (``transparency.audit_log_path``): the chain runs on across files
    and ``appliance audit verify`` checks them all."""

    max_bytes: Optional[int] = Field(
        16 * 1024 * 1024,
        ge=4096,
        description="Rotate the active file once it holds this many bytes (renamed audit.jsonl.000001, ...); "
        "null: never by size",
    )
    retention_days: Optional[int] = Field(
        None,
        ge=1,
        description="Rotate the active file once its first entry is this old, and delete rotated files whose "
        "newest entry is older (a 'pruned' entry records which entries went); null: keep every file",
    )
