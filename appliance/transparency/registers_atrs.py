"""A UK Algorithmic Transparency Recording Standard record (template v3.0: metadata, Tier 1 and the
five Tier 2 sections), grouped by the template's sections because some attribute names repeat.

Fields the register assigns on publication (id, dates) are null; fields only the operator knows say
so in words, so a reader never mistakes a gap for an answer.
"""

from __future__ import annotations

from typing import Any, Dict, List

from appliance.transparency.notice import notice_hash
from appliance.transparency.notice_model import ModelNotice, Notice

ATRS_VERSION = "3.0"
OPERATOR = "To be completed by the operator."


def _model(m: ModelNotice) -> Dict[str, Any]:
    detects = "faces (to blur them)" if m.task == "face" else "people (to count them)"
    return {
        "model_name": m.name,
        "model_version": f"{m.source_package} {m.source_version}, sha256 {m.sha256}",
        "model_task": f"Detects {detects} in video frames.",
        "model_input": "A video frame; for the person model, a frame whose faces are already blurred.",
        "model_output": "Boxes with a confidence score; never stored or sent.",
        "model_architecture": f"Convolutional object detector, {m.precision} ONNX ({m.licence}).",
        "model_performance": "See the accountability record (appliance notice record), part A.5b.",
        "datasets": m.training_data,
        "dataset_purposes": "Training by the model's publisher. " + " ".join(m.training_data_terms),
    }


def atrs(n: Notice) -> Dict[str, Any]:
    lang = n.languages[0]
    c = n.controller
    flags = ", ".join(n.flags) or "none"
    r = n.retention
    recipients = "; ".join(x.get(lang, "") for x in n.recipients) or OPERATOR
    area = n.covered_area.get(lang) or ", ".join(n.on_device.zones) or "the whole view"
    description = (
        f"{n.purpose.text}. A camera counts people in an area and raises alerts ({flags}). Faces are blurred "
        "inside the device; no image is stored or sent; only counts and alerts leave."
    )
    data: List[Dict[str, Any]] = [{
        "source_data_name": "Live video of the covered area",
        "data_modality": "Image (video frames)",
        "data_description": "Frames are held in memory only while processed; faces and heads are blurred first.",
        "data_quantities": "A few frames per second, none kept.",
        "sensitive_attributes": "Images of people; no attribute is inferred and nobody is identified.",
        "data_completeness_and_representativeness": "Not applicable: no data set is built.",
        "source_data_url": n.public_url or "",
        "data_collection": "The operator's camera at the site.",
        "data_cleaning": "None.",
        "data_sharing_agreements": OPERATOR,
        "data_access_and_storage": f"Counts go to: {recipients}. Tracks in memory up to {r.track_lifetime_s:g} s "
        f"after last seen; counts kept centrally {r.central_days or 'as the operator states'} days.",
    }]
    return {
        "metadata": {
            "id": None,
            "standard_version": ATRS_VERSION,
            "organisation_type": OPERATOR,
            "function": "Public safety",
            "capability": "Computer vision",
            "task": "Crowd counting and crowd-safety alerts",
            "tags": "crowd safety, camera, counting, privacy",
            "date_of_completion": None,
            "date_updated": None,
            "date_archived": None,
        },
        "title_information": {
            "title": f"Crowd counting camera {n.device_id}",
            "organisation_name": c.name or OPERATOR,
            "phase": "Production",
            "region": n.legal.authority.country if n.legal.authority else OPERATOR,
            "one_sentence_description": "Counts people in an area and warns of dangerous crowding; no image leaves.",
        },
        "tier_1_information": {
            "name": f"Crowd counting camera {n.device_id}",
            "description": description,
            "website_url": n.public_url or "",
            "contact_email": c.email or "",
        },
        "tier_2_owner_and_responsibility": {
            "organisation_or_department": c.name or OPERATOR,
            "team": OPERATOR,
            "senior_responsible_owner": OPERATOR,
            "external_supplier_involvement": OPERATOR,
            "external_supplier": "",
            "companies_house_number": "",
            "external_supplier_role": "",
            "procurement_procedure_type": "",
            "data_access_terms": "",
        },
        "tier_2_description_and_rationale": {
            "detailed_description": description + f" Notice sha256 {notice_hash(n)}, config hash {n.config_hash}.",
            "scope": f"The covered area only ({area}).",
            "benefit": "Early warning of dangerous crowding without recording anyone.",
            "previous_process": OPERATOR,
            "alternatives_considered": OPERATOR,
        },
        "tier_2_decision_making_process": {
            "process_integration": "Alerts go to people in the control room, who decide what to do.",
            "provided_information": "Counts per window and area, crowd alerts, device health.",
            "frequency_and_scale_of_usage": "Continuous while running; one counts message per window.",
            "human_decisions_and_review": "Every alert is read by a person; the device decides nothing about anyone.",
            "required_training": OPERATOR,
            "appeals_and_review": "Questions and complaints: " + ", ".join(x for x in (c.email, c.dpo) if x),
        },
        "tier_2_tool_specification": {
            "system_architecture": "Edge device: capture, blur faces, analyse, publish aggregates over MQTT. "
            f"Software {n.software_version}.",
            "phase": "Production",
            "maintenance": "Model files are checked against their sha256 before loading; the config hash and "
            "the audit-log head are published.",
            "models": ", ".join(m.name for m in n.models),
        },
        "tier_2_model_specification": [_model(m) for m in n.models],
        "tier_2_data_specification": data,
        "tier_2_risks_mitigations_and_impact_assessments": {
            "impact_assessment": f"DPIA: {n.purpose.dpia_reference or 'generated with appliance notice record'}.",
            "risks_and_mitigations": "Chilling effect on assembly; function creep into policing; false alarms, "
            "including from children or disabled people moving differently. Mitigations: no image leaves, "
            "nobody is identified, alerts only, config changes audited and published.",
        },
    }
