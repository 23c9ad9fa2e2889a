"""The first layer's sentences in one language, shared by the printed sign and the public page.

Fixed wording comes from ``translations/{language}.yaml``; facts come from the notice, so the sign and
the page cannot say different things.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

from appliance.transparency.notice_model import Notice

DTPR_DIR = Path(__file__).resolve().parent / "dtpr"
# DTPR element id -> the item it stands for on the sign and the page.
ICONS = {
    "area": "de_identified_video",
    "purpose": "person_detection",
    "leaves": "aggregated",
    "flags": "anomaly_detection",
    "retention": "no_data_retained",
    "recipients": "available_to_the_accountable_organization",
}


def icon_path(item: str) -> Path:
    return DTPR_DIR / f"{ICONS[item]}.svg"


def flags_line(notice: Notice, t: Dict[str, str]) -> str:
    """One plain line naming every anomaly flag that can leave the device."""
    if not notice.flags:
        return t["no_flags"]
    return t["flags_leave"].format(flags="; ".join(t[f"flag_{kind}"] for kind in notice.flags))


def purpose_text(notice: Notice, t: Dict[str, str], language: str) -> str:
    text = t[f"purpose_{notice.purpose.code}"]
    details = notice.purpose.details.get(language)
    return f"{text} {details}" if details else text


def legal_basis_label(notice: Notice, t: Dict[str, str]) -> str:
    return t[f"legal_basis_{notice.legal.regime}"]


def legal_basis(notice: Notice, t: Dict[str, str], language: str) -> str:
    return notice.purpose.legal_basis.get(language) or t["not_set"]


def rights_text(notice: Notice, t: Dict[str, str]) -> str:
    return t[f"rights_{notice.legal.regime}"]


def authority_line(notice: Notice, t: Dict[str, str]) -> str:
    a = notice.legal.authority
    return f"{t['complain']}: {a.name}, {a.url}" if a else f"{t['complain']}: {t['complain_generic']}."


def retention_lines(notice: Notice, t: Dict[str, str]) -> List[str]:
    out = [t["retention_device"].format(seconds=f"{notice.retention.track_lifetime_s:g}")]
    if notice.retention.central_days:
        out.append(t["retention"].format(days=notice.retention.central_days))
    return out


def covered_area(notice: Notice, language: str) -> str:
    """The operator's words for the area, else the configured zone names."""
    return notice.covered_area.get(language) or ", ".join(notice.on_device.zones)


def recipients(notice: Notice, language: str) -> List[str]:
    return [r[language] for r in notice.recipients if r.get(language)]
