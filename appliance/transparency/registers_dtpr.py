"""DTPR (Digital Trust for Places & Routines) datachains for the device: the device chain (dtpr.v1
taxonomy) and the AI chain (``ai@2026-08-12-beta``), element ids taken from DTPR's taxonomy.

Each element is chosen from a fact of the notice (what leaves, what is kept, which privacy measures
are on), so switching a measure off removes its element.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from appliance.transparency.notice import notice_hash
from appliance.transparency.notice_model import Notice

AI_CHAIN_VERSION = "ai@2026-08-12-beta"
DTPR_URL = "https://github.com/Helpful-Places/dtpr"


def _el(category: str, element_id: str, context: Optional[str] = None) -> Dict[str, Any]:
    out: Dict[str, Any] = {"category": category, "element_id": element_id}
    if context is not None:
        out["context_type_id"] = context
    return out


def device_chain(n: Notice, k_anonymity: bool, noise: bool) -> List[Dict[str, Any]]:
    out = [
        _el("accountable", "organization"),
        _el("purpose", "safety_security"),
        _el("tech", "video_camera"),
        _el("tech", "de_identified_video"),
        _el("tech", "person_detection"),
        _el("data", "pixel_based_image"),
        _el("process", "computer_vision"),
        _el("process", "de_identified"),
        _el("process", "aggregated"),
    ]
    if k_anonymity:
        out.append(_el("process", "k_anonymity"))
    if noise:
        out.append(_el("process", "differential_privacy"))
    out.append(_el("access", "available_to_the_accountable_organization"))
    out.append(_el("retention", "data_retained" if n.retention.central_days else "no_data_retained"))
    out.append(_el("storage", "stored_locally"))
    return out


def ai_chain(n: Notice) -> List[Dict[str, Any]]:
    rights = {"access": "right_access", "erasure": "right_be_forgotten", "rectification": "right_correction",
              "object": "right_object", "information": "right_to_notice"}
    out = [
        _el("purpose", "safety_security"),
        _el("accountable", "organization", "deployer"),
        _el("affected", "people", "bystander"),
        _el("functional_modes", "perceptive_mode", "human_decides"),
        _el("input_dataset", "input_about_a_place", "identifiable"),
        _el("processing", "computer_vision"),
        _el("processing", "privacy_transformation"),
    ]
    if n.flags:
        out.append(_el("processing", "anomaly_detection"))
    out += [
        _el("output_dataset", "output_about_a_measurement", "de_identified"),
        _el("access", "available_to_the_accountable_organization"),
        _el("retention", "data_retained" if n.retention.central_days else "no_data_retained"),
        _el("storage", "stored_locally"),
        _el("risks_mitigation", "civil_liberties_harm"),
        _el("risks_mitigation", "societal_cultural_harm"),
    ]
    out += [_el("rights", rights[r]) for r in n.legal.rights if r in rights]
    out.append(_el("rights", "right_purpose_limitation"))
    return out


def dtpr(n: Notice, k_anonymity: bool, noise: bool) -> Dict[str, Any]:
    return {
        "taxonomy": DTPR_URL,
        "device_id": n.device_id,
        "notice_sha256": notice_hash(n),
        "config_hash": n.config_hash,
        "accountable_organization": n.controller.name,
        "device_chain": {"taxonomy": "dtpr.v1", "elements": device_chain(n, k_anonymity, noise)},
        "ai_chain": {"datachain_type": "ai", "version": AI_CHAIN_VERSION, "elements": ai_chain(n)},
    }
