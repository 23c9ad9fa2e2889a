"""The record's legal assessment: the LED branch, the EU AI Act (Regulation (EU) 2024/1689) check
article by article, and a voluntary fundamental-rights impact assessment following Art. 27 (a)-(f).

Each answer is reasoned from what the device does (the notice), so it changes when the config does;
what only the operator knows stays a marked blank.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List

from appliance.transparency.notice_model import Notice
from appliance.transparency.record_risks import blank

if TYPE_CHECKING:
    from appliance.config import ApplianceConfig

PER_AREA = "the device outputs counts per area and flags per zone, never anything about a person"
NO_PERSON = f"no: {PER_AREA}"


def legal_regime(n: Notice) -> List[str]:
    if n.legal.regime == "gdpr":
        return [
            "Regime: **GDPR** (Regulation (EU) 2016/679). Legal basis under Art. 6(1), typically (e) public task "
            "or (f) legitimate interests; the rights of Arts. 13-21 apply, and Art. 35 asks for this DPIA where "
            "a publicly accessible area is monitored systematically. A police force processing for "
            "law-enforcement purposes sets `transparency.legal_regime: led` instead.",
        ]
    return [
        "Regime: **Law Enforcement Directive** (Directive (EU) 2016/680) as transposed into national law: a "
        "competent authority processes for the prevention, investigation, detection or prosecution of criminal "
        "offences or the safeguarding against threats to public security.",
        f"- Legal basis (LED Art. 8): a task laid down in Union or national law: {blank('the national provision')}",
        "- Information (LED Art. 13): the sign and the public page give the controller, the DPO, the purposes, "
        "the right to complain and the rights of access, rectification, erasure and restriction.",
        "- Rights (LED Arts. 14-17): may be restricted by law (Art. 15); the person can then ask the supervisory "
        "authority to check (Art. 17). The device stores nothing about a person, so access and erasure return "
        "nothing in any case.",
        "- Logging (LED Art. 25): the hash-chained audit log records every start, stop, config change and flag.",
        f"- DPIA and prior consultation (LED Arts. 27-28): {blank('is prior consultation of the authority needed?')}",
        "- AI Act: use by or on behalf of a law-enforcement authority brings Annex III point 6 into view (below).",
    ]


def _art5() -> List[str]:
    rows = [
        ("(a) subliminal, manipulative or deceptive techniques", "no: the device does not interact with or "
         "address people; its outputs go to the operator"),
        ("(b) exploiting vulnerabilities of age, disability or social situation", "no: nothing is directed at "
         "a person; see the risk table for how 'abnormal motion' could affect such groups"),
        ("(c) social scoring", NO_PERSON),
        ("(d) predicting criminal offences of a person from profiling", NO_PERSON),
        ("(e) untargeted scraping of facial images for recognition databases", "no: no image is stored or sent"),
        ("(f) emotion recognition at the workplace or in education", "no: no emotion or attribute is inferred"),
        ("(g) biometric categorisation to infer race, opinions, beliefs, sex life or orientation", "no: no "
         "attribute of a person is inferred; faces are only located to be blurred (A.8)"),
        ("(h) real-time remote biometric identification in public spaces for law enforcement", "no: nobody is "
         "identified; no template or reference exists (A.8)"),
    ]
    return ["| Art. 5(1) prohibited practice | answer |", "|---|---|"] + [f"| {q} | {a} |" for q, a in rows]


def _annex3(cfg: ApplianceConfig, n: Notice) -> List[str]:
    police = n.legal.regime == "led"
    rows = [
        ("1(a) remote biometric identification", "no (A.8)"),
        ("1(b) biometric categorisation by sensitive attributes", "no: no attribute is inferred"),
        ("1(c) emotion recognition", "no"),
        ("2 safety component of critical infrastructure (digital, road traffic, water, gas, heating, "
         "electricity)", "no: it raises alerts for people and operates no infrastructure; "
         + blank("is it wired into the safety management of such infrastructure?")),
        ("3 education and vocational training", "no"),
        ("4 employment and workers management", "no: it evaluates no worker; "
         + blank("does the covered area include workplaces?")),
        ("5(a)-(c) public benefits, creditworthiness, insurance pricing", "no"),
        ("5(d) evaluating emergency calls or dispatching, or prioritising the dispatch of, emergency first "
         "response (police, fire, medical aid)", "no as configured: a flag is an alert a person in the control "
         "room reads and decides on; the device evaluates no call and dispatches or ranks nothing. If flags are "
         "wired into automatic dispatch or a dispatch priority queue, it falls under 5(d): reassess"),
        ("6(a)-(e) law enforcement: victim risk, polygraphs, evidence reliability, offending risk, profiling",
         f"no: each concerns an assessment of a person, and {PER_AREA}"
         + (". Operated by a law-enforcement authority (LED): keep the use to crowd safety" if police else "")),
        ("7 migration, asylum and border control", "no"),
        ("8(a) administration of justice", "no"),
        ("8(b) influencing elections or voting behaviour", "no: counts influence nobody; "
         + blank("is it used at polling stations or political assemblies?")),
    ]
    return ["| Annex III point | answer |", "|---|---|"] + [f"| {q} | {a} |" for q, a in rows]


def ai_act(cfg: ApplianceConfig, n: Notice) -> List[str]:
    authority = n.legal.authority.name if n.legal.authority else "the supervisory authority"
    return [
        "## Part B. EU AI Act (Regulation (EU) 2024/1689) self-assessment",
        "",
        "### B.1 Is it an AI system, and who is who",
        "",
        "- AI system (Art. 3(1)): yes: machine-learned detectors (A.5) infer boxes, and from them counts and "
        "flags, from video.",
        "- Provider (Art. 3(3)): whoever places the appliance on the market or puts it into service under its own "
        "name: the integrator who builds and delivers it, or the operator itself when it builds it from this "
        "open-source project for its own use. The project publishes free and open-source software (Art. 2(12)). "
        + blank("name the provider"),
        f"- Deployer (Art. 3(4)): the operator, {n.controller.name or blank('name of the operator')}.",
        "",
        "### B.2 Prohibited practices (Art. 5)",
        "",
        *_art5(),
        "",
        "### B.3 High-risk (Art. 6 and Annex III), point by point",
        "",
        *_annex3(cfg, n),
        "",
        "Reasoning: the system is not a safety component of a product under Annex I, and its intended purpose "
        "is none of the Annex III uses: it outputs counts per area and flags per zone to people who decide. It "
        "is therefore not high-risk. Reassess when: flags feed an automatic action or a dispatch system; a "
        "law-enforcement authority uses it for anything but crowd safety; a model that infers attributes or "
        "identity is added; the purpose, the fields that leave or the covered area change; at least yearly.",
        "",
        "### B.4 Transparency obligations (Art. 50)",
        "",
        "Art. 50 does **not** apply: the system does not interact with people (50(1)), generates no synthetic "
        "audio, image, video or text (50(2), 50(4)), and is neither emotion recognition nor biometric "
        "categorisation (50(3)). People are informed anyway, under GDPR Art. 13 (or LED Art. 13): the sign and "
        "the public page.",
        "",
        "### B.5 Logging and human oversight",
        "",
        "- Logging: hash-chained audit log on the device; config, model and notice hashes published.",
        "- Human oversight: anomaly flags are alerts for people in the control room; the device takes no decision "
        f"about any individual. Who reacts and how: {blank('procedure')}",
        "",
        "### B.6 Voluntary fundamental-rights impact assessment (following Art. 27 (a)-(f))",
        "",
        "Art. 27 binds deployers of high-risk systems; this one is not high-risk, so this assessment is "
        "voluntary, and recommended for a public body watching a public space.",
        "",
        f"- (a) Processes in which it is used, in line with its purpose: {n.purpose.text}; flags raised: "
        f"{', '.join(n.flags) or 'none'}; received by: "
        + ("; ".join(r.get(n.languages[0], "") for r in n.recipients) or blank("recipients"))
        + f". {blank('the control-room process a flag enters')}",
        f"- (b) Period and frequency of use: continuously while the service runs; a counts window every "
        f"{cfg.publish.interval_s:g} s. {blank('hours, days or events of operation')}",
        "- (c) People and groups likely affected: everyone passing the covered area ("
        + (n.covered_area.get(n.languages[0]) or ", ".join(n.on_device.zones) or "the whole view")
        + "), including children, people with disabilities, and people exercising their freedom of assembly. "
        + blank("site-specific groups"),
        "- (d) Specific risks of harm to them: the societal rows of the risk table (A.7): chilling effect on "
        "assembly, function creep into policing, 'abnormal motion' raised by children or disabled people, "
        "interventions on false alarms.",
        f"- (e) Human oversight: flags are alerts only; nobody is acted upon by the device. {blank('who checks')}",
        "- (f) If risks materialise: the operator stops the service (`systemctl stop appliance`); complaints go "
        f"to the contact and DPO on the sign, or to {authority}; "
        f"the audit log shows what ran when. {blank('internal governance and escalation')}",
        "",
    ]
