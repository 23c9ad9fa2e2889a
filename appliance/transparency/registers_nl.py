"""Dutch register entries: the national Algoritmeregister (publication standard v1.0) and the WeCity
sensor register. Fixed wording is Dutch (the registers' language, ``lang: nld``); facts come from
the notice; the operator's own free text is quoted in the sign's first language.
"""

from __future__ import annotations

import uuid
from typing import Any, Dict

from appliance.errors import InputError
from appliance.transparency.notice import notice_hash
from appliance.transparency.notice_model import Notice

ALGORITMEREGISTER_CATEGORY = "Openbare orde en veiligheid"
PURPOSE_NL = {
    "crowd_safety": "Veiligheid van mensenmassa's: overvolle plekken en gevaarlijke bewegingen vroeg zien.",
    "capacity_management": "Capaciteitsbeheer: weten hoeveel mensen er in dit gebied zijn.",
    "footfall_statistics": "Bezoekersstatistiek: tellen hoeveel mensen er langskomen, voor planning.",
}
FLAGS_NL = {
    "overcrowding": "te veel mensen in een gebied",
    "rapid_change": "een plotselinge verandering in het aantal mensen",
    "abnormal_motion": "ongewone beweging van de menigte, zoals rennen",
    "counterflow": "mensen die tegen de stroom in lopen",
    "camera_tamper": "camera afgedekt of verplaatst",
}


def _fit(value: str, limit: int, field: str) -> str:
    if len(value) > limit:
        raise InputError(f"{len(value)} characters; the register allows {limit}", field=field)
    return value


def _hashes(n: Notice) -> str:
    return f"Notice sha256 {notice_hash(n)}; configuratie-hash {n.config_hash}; software {n.software_version}."


def _flags(n: Notice) -> str:
    return "; ".join(FLAGS_NL[f] for f in n.flags) or "geen"


def algoritmeregister(n: Notice, project_url: str) -> Dict[str, Any]:
    """Every field of the Algoritmeregister publication standard v1.0 (``backend/app/schemas/config/v1_0.json``)."""
    lang = n.languages[0]
    c = n.controller
    if not c.name or not c.email:
        raise InputError("the Algoritmeregister needs operator_name and contact_email", field="transparency")
    models = "".join(
        f"<li>{m.name}: {m.task}-detector ({m.precision}), sha256 {m.sha256}, uit {m.source_package} "
        f"{m.source_version} ({m.licence}), getraind op {m.training_data}.</li>"
        for m in n.models
    )
    details = n.purpose.details.get(lang, "")
    r = n.retention
    return {
        "name": _fit(f"Drukte meten met camera {n.device_id}", 100, "device_id"),
        "description_short": "Een camera telt hoeveel mensen er in een gebied zijn en waarschuwt bij gevaarlijke "
        "drukte. Gezichten worden in het apparaat zelf onherkenbaar gemaakt; er worden geen beelden opgeslagen of "
        "verstuurd, alleen aantallen en waarschuwingen.",
        "organization": _fit(c.name, 100, "transparency.operator_name"),
        "category": [ALGORITMEREGISTER_CATEGORY],
        "status": "In gebruik",
        "begin_date": "",
        "end_date": "",
        "contact_email": _fit(c.email, 500, "transparency.contact_email"),
        "website": n.public_url or "",
        "publication_category": "Overige algoritmes",
        "url": "",
        "goal": f"<p>{PURPOSE_NL[n.purpose.code]}</p>" + (f"<p>{details}</p>" if details else ""),
        "proportionality": "<p>Alleen aantallen per gebied en waarschuwingen verlaten het apparaat. Beelden bestaan "
        f"alleen in het geheugen tijdens verwerking; een persoonsspoor wordt {r.track_lifetime_s:g} s na de laatste "
        "waarneming gewist. Niemand wordt geïdentificeerd.</p>",
        "human_intervention": "<p>Waarschuwingen gaan naar mensen in de controlekamer; zij beslissen wat er gebeurt. "
        "Het apparaat neemt geen besluit over personen.</p>",
        "risks": "<ul><li>Afschrikeffect op bijeenkomsten en demonstraties.</li><li>Gebruik voor andere doelen, "
        "zoals politietoezicht.</li><li>Valse waarschuwingen, ook door kinderen of mensen met een beperking die "
        "anders bewegen.</li><li>Een niet-gedetecteerd gezicht is in het geheugen herkenbaar.</li></ul>",
        "lawful_basis": f"<p>{n.purpose.legal_basis.get(lang, '')}</p>",
        "lawful_basis_grouping": [],
        "process_index_url": "",
        "impacttoetsen_grouping": [{"title": "Data Protection Impact Assessment (DPIA)"}],
        "impacttoetsen": f"<p>DPIA: {n.purpose.dpia_reference or 'opgesteld met appliance notice record'}.</p>",
        "source_data": "<p>Camerabeelden van het gebied, alleen in het geheugen van het apparaat. Waarschuwingen "
        f"die het apparaat kan versturen: {_flags(n)}.</p>",
        "source_data_grouping": [],
        "methods_and_models": f"<ul>{models}</ul><p>{_hashes(n)}</p>",
        "provider": "",
        "publiccode": project_url,
        "lang": "nld",
        "standard_version": "1.0",
        "source_id": _fit(n.device_id, 100, "device_id"),
        "tags": "drukte, crowd safety, camera, tellen, privacy",
        "lars": "",
        "publication_dt": "",
    }


def sensorregister(n: Notice) -> Dict[str, Any]:
    """A WeCity sensor-register entry (``sensoren/wecity/sensorregister-publicatiestandaard.schema.json``).

    Location and validity dates are not in the config, so they are left out (the schema requires only
    ``naam``); ``thema`` has no value for crowd safety (its enum is traffic safety, environment, car).
    """
    lang = n.languages[0]
    c = n.controller
    entry: Dict[str, Any] = {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"crowd-appliance:{c.name}:{n.device_id}")),
        "naam": f"Drukte-camera {n.device_id}",
        "doel": PURPOSE_NL[n.purpose.code],
        "type": "camera/optisch",
        "referentie": f"{n.public_url or n.device_id}. {_hashes(n)}",
        "verwerkt persoonsgegevens": True,  # images of people, in memory only, before they are blurred
        "mobiele sensor": False,
        "organisatie": c.name or "",
        "contactpersoon": c.dpo or c.name or "",
        "e-mail": c.email or "",
        "wettelijke grondslag": n.purpose.legal_basis.get(lang, ""),
    }
    return {k: v for k, v in entry.items() if v != ""}
