"""Config sections of what the device promises the public: small-count privacy and transparency."""

from __future__ import annotations

import re
from typing import Dict, List, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from appliance.config.authorities import AUTHORITIES
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
LegalRegime = Literal["gdpr", "led"]
# Free text the operator writes: one string (a sign in one language) or one per sign language.
LocalText = Union[str, Dict[SignLanguage, str]]
_LONG_RUN = re.compile(r"[A-Za-z0-9+/_-]{80,}")
_LOCAL_TEXT_FIELDS = ("purpose_details", "legal_basis", "covered_area")


def _check_publishable(text: str) -> None:
    if len(text) > 200:
        raise ValueError("is longer than 200 characters")
    if _LONG_RUN.search(text):
        raise ValueError("has an unbroken run of 80+ letters/digits, which egress refuses as encoded data")


def local_text(value: Optional[LocalText], language: str) -> str:
    """The text of a free field in ``language`` ('' when unset); validation made sure every sign language has one."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return value.get(language, "")  # type: ignore[call-overload]


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
    purpose_details: LocalText = Field(
        "",
        description="Free-text detail of the purpose, in plain words: one text, or one per sign language "
        "({en: ..., nb: ...}; required for each sign language when there are several)",
    )
    legal_basis: Optional[LocalText] = Field(
        None,
        description="Legal basis of the processing, e.g. 'GDPR Art. 6(1)(e), public task' (per sign language "
        "like purpose_details)",
    )
    legal_regime: LegalRegime = Field(
        "gdpr",
        description="gdpr: the GDPR (EU 2016/679) applies; led: a police or other competent authority processes "
        "for law-enforcement purposes under the Law Enforcement Directive (EU 2016/680) and national law. "
        "Changes the legal-basis wording, the rights listed and the record's assessment",
    )
    country: Optional[str] = Field(
        None,
        pattern=r"^[A-Z]{2}$",
        description="ISO 3166-1 alpha-2 code of the country the camera is in (EU/EEA or GB); names the "
        "supervisory authority on the sign and the public page",
    )
    dpo_contact: Optional[str] = Field(
        None, min_length=1, max_length=200, description="How to reach the data protection officer (name, email)"
    )
    recipients: List[LocalText] = Field(
        default_factory=list,
        max_length=8,
        description="Who receives the aggregates the device sends (e.g. 'event staff control room'), each one "
        "text or one per sign language",
    )
    covered_area: Optional[LocalText] = Field(
        None,
        description="The area the camera watches, in words for the sign (none: the configured zone names)",
    )
    dpia_reference: Optional[str] = Field(
        None, max_length=200, description="Reference of the operator's data-protection impact assessment"
    )
    public_url: Optional[str] = Field(
        None,
        pattern=r"^https?://\S+$",
        max_length=200,
        description="Public page with the full notice (appliance notice page writes it); the sign's QR code "
        "carries only this URL, and a sign needs one",
    )
    sign_languages: List[SignLanguage] = Field(
        default_factory=lambda: list[SignLanguage](["en"]),
        min_length=1,
        description="Languages of the printed sign, one page each; the first is the default",
    )
    central_retention_days: Optional[int] = Field(
        None, ge=1, description="How long the operator promises to keep the aggregates centrally (days)"
    )
    audit_log_retention_days: Optional[int] = Field(
        None,
        ge=1,
        description="How long the operator keeps the audit log (days). The device never deletes it itself: "
        "dropping old entries would break the hash chain, so the operator archives it with its head",
    )
    audit_log_path: Optional[str] = Field(
        None,
        description="Append-only, hash-chained audit log (JSON lines); {device_id} and {state_dir} are replaced "
        "as in outbox.path. "
        "None: audit.jsonl beside the outbox",
    )

    @field_validator("operator_name", "contact_email", "contact_url", "dpia_reference", "public_url", "dpo_contact")
    @classmethod
    def _publishable(cls, v: Optional[str]) -> Optional[str]:
        if v is not None:
            _check_publishable(v)
        return v

    @field_validator("country")
    @classmethod
    def _known_country(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and v not in AUTHORITIES:
            raise ValueError(f"{v!r} is not an EU/EEA country or GB (known: {', '.join(sorted(AUTHORITIES))})")
        return v

    @model_validator(mode="after")
    def _texts_in_every_sign_language(self) -> TransparencyConfig:
        values = [(name, getattr(self, name)) for name in _LOCAL_TEXT_FIELDS]
        values += [(f"recipients[{i}]", r) for i, r in enumerate(self.recipients)]
        for name, value in values:
            texts = [value] if isinstance(value, str) else list((value or {}).values())
            for text in texts:
                try:
                    _check_publishable(text)
                except ValueError as e:
                    raise ValueError(f"{name}: {e}") from None
            if isinstance(value, str) and value and len(self.sign_languages) > 1:
                raise ValueError(
                    f"{name}: one text for signs in {', '.join(self.sign_languages)}; give one per language "
                    f"({{{self.sign_languages[0]}: ..., {self.sign_languages[1]}: ...}})"
                )
            if isinstance(value, dict):
                missing = [lang for lang in self.sign_languages if not value.get(lang)]
                if missing:
                    raise ValueError(f"{name}: no text in sign language {', '.join(missing)}")
        return self

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
