"""The accountability record: a DPIA data sheet, an EU AI Act self-assessment and the technical
answers to the UNICRI/INTERPOL toolkit's risk assessment questionnaire, as Markdown.

Generated from the running config, the notice (itself from the config, the models and the message
classes) and the accuracy figures the project ships (``eval/*.json``, ``models/manifest.yaml``), so
it follows the device. What only the operator can answer is left as a marked blank: ``[OPERATOR: ...]``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

from appliance import detail_level
from appliance.transparency.notice import Notice, build_notice, notice_hash, track_lifetime_s
from appliance.transparency.record_ai_act import ai_act, legal_regime
from appliance.transparency.record_risks import blank, necessity, risk_table

if TYPE_CHECKING:
    from appliance.config import ApplianceConfig

# The shipped evaluation results live in the checkout's eval/ (not in a wheel: then the record says so).
EVAL_DIR = Path(__file__).resolve().parents[2] / "eval"
# CenterFace's documented floor (models/README.md): faces under ~10 px in its input are not found.
FACE_MIN_INPUT_PX = 10.0
# IEC 62676-4 (2014) detail levels in pixels per metre of scene (the DORI figures).
DORI_PX_PER_M = dict(detail_level.DORI_PX_PER_M)
FACE_HEIGHT_M = 0.2  # a head-on adult face, chin to hairline, roughly


def _or_blank(value: Optional[object], what: str) -> str:
    return str(value) if value not in (None, "") else blank(what)


def _eval_row(cfg: ApplianceConfig) -> tuple:
    """The shipped evaluation row for this person model, input size, tiling and threshold (or None)."""
    name = "vtest_results_int8.json" if cfg.profile.models.person.endswith("int8") else "vtest_results.json"
    path = EVAL_DIR / name
    if not path.is_file():
        return None, None, name
    data = json.loads(path.read_text(encoding="utf-8"))
    want = (cfg.profile.person_input_size, cfg.profile.person_tiling, round(cfg.detection.person_score_threshold, 2))
    for row in data.get("detector_settings", []):
        if (row["input_size"], row["tiling"], round(row["threshold"], 2)) == want:
            return row, data.get("anomalies", {}), name
    return None, data.get("anomalies", {}), name


def _accuracy(cfg: ApplianceConfig) -> List[str]:
    row, anomalies, name = _eval_row(cfg)
    p = cfg.profile
    out = ["### A.5b Measured accuracy (figures the project ships)", ""]
    setting = (
        f"person model `{p.models.person}`, input {p.person_input_size} px, tiling {p.person_tiling}, "
        f"threshold {cfg.detection.person_score_threshold:g}"
    )
    if row is None:
        out.append(
            f"No shipped measurement for this setting ({setting}) in `eval/{name}`: "
            + blank("measure with `python scripts/evaluate.py` on footage of this site")
        )
    else:
        out += [
            f"Setting: {setting}. Source: `eval/{name}`, produced by `python scripts/evaluate.py` on OpenCV's "
            "`vtest.avi` against hand labels (`eval/vtest_labels.yaml`: 20 frames with 3-9 people, 5 line "
            "crossings plus 3 hard negatives). One scene, small set: read these as indications, not guarantees.",
            "",
            "| measure | value |",
            "|---|---|",
            f"| count mean absolute error (people per frame) | {row['count_mae']} |",
            f"| count bias (negative = undercount) | {row['count_bias']} |",
            f"| line crossings in/out (truth 5/0) | {row['line_in']}/{row['line_out']} |",
            f"| line error (crossings) | {row['line_abs_error']} |",
        ]
    if anomalies:
        out += [
            "",
            "| anomaly flag | recall | median latency s | false alarms | normal footage s |",
            "|---|---|---|---|---|",
        ]
        for kind, a in anomalies.items():
            out.append(
                f"| {kind} | {a.get('recall')} | {a.get('median_latency_s')} | {a.get('false_alarms')} | "
                f"{a.get('normal_footage_s')} |"
            )
    out += [
        "",
        "Face blur checks (run by the test suite, `tests/test_anonymize.py`): an independent face detector "
        "(RetinaFace, not the CenterFace the device uses) finds no face in blurred test images at several "
        "scales and for every blur method, and does still find a face after a deliberately weak blur (so the "
        "check can fail); a failing or too slow face model destroys the frame. Model agreement int8 vs fp32 "
        "on held-out real frames (IoU >= 0.5):",
        "",
    ]
    return out


def _model_agreement(cfg: ApplianceConfig) -> List[str]:
    from appliance.models.manifest import load_manifest

    manifest = load_manifest()
    out = []
    for name in (cfg.profile.models.face, cfg.profile.models.person):
        m = manifest.get(name)
        if m.agreement_with_fp32:
            a = m.agreement_with_fp32
            out.append(
                f"- `{name}`: {a.matched}/{a.fp32_detections} fp32 detections kept "
                f"({a.matched_ratio:.1%}), mean IoU {a.mean_iou} on {a.eval_set}"
            )
        else:
            out.append(f"- `{name}`: the reference (fp32) build itself")
    return out


def _face_size_limit(cfg: ApplianceConfig) -> List[str]:
    p = cfg.profile
    min_face_px = FACE_MIN_INPUT_PX * p.working_height / p.face_input_height
    recognise_px = DORI_PX_PER_M["recognise"] * FACE_HEIGHT_M
    return [
        f"- **People the detectors miss.** A face the face model misses is still hidden when the person detector "
        f"finds the person (head blur: the top {cfg.anonymize.head_height_ratio:.0%} of each person box"
        f"{'' if cfg.anonymize.head_blur else ' - TURNED OFF in this config'}). A person missed by both keeps an "
        "unblurred head at the size it appears (seen on the sample clip: 2 of 7 people on frame 150).",
        f"- **At what size that matters.** CenterFace finds faces down to about {FACE_MIN_INPUT_PX:g} px in its "
        f"{p.face_input_width}x{p.face_input_height} input, i.e. about {min_face_px:.0f} px tall in the "
        f"{p.working_width}x{p.working_height} working frame. A face becomes recognisable to a person at about "
        f"{recognise_px:.0f} px tall ({DORI_PX_PER_M['recognise']:g} px/m, the IEC 62676-4 'recognise' level, on a "
        f"~{FACE_HEIGHT_M} m face) and identifiable at about {DORI_PX_PER_M['identify'] * FACE_HEIGHT_M:.0f} px. "
        "So the faces that could be recognised are in the size range the model is built to find; the residual "
        "risk is a missed detection (turned away, occluded, motion blur) of a person close to the camera. "
        "Mount the camera high and far so people appear small (see the technician's guide).",
        "- Counting undercounts small, far and grouped people (negative bias above).",
        "- The accuracy figures come from one public scene, not from this site.",
    ]


def _topics_table(n: Notice) -> List[str]:
    out = ["| topic | retained | sent | fields |", "|---|---|---|---|"]
    for t in n.topics:
        every = f"every {t.interval_s:g} s" if t.interval_s else t.sent
        out.append(
            f"| `{t.topic}` | {'yes' if t.retained else 'no'} | {every} | "
            + ", ".join(f"`{path}`" for path in t.fields)
            + " |"
        )
    return out


def build_record(cfg: ApplianceConfig, notice: Optional[Notice] = None) -> str:
    """The whole record as Markdown."""
    n = notice or build_notice(cfg)
    t = cfg.transparency
    lang = n.languages[0]
    c = n.controller
    retention_central = (
        f"{t.central_retention_days} days (operator's promise, published in the notice)"
        if t.central_retention_days
        else blank("how long the aggregates are kept centrally")
    )
    models_md = [
        f"- `{m.name}` ({m.task}, {m.precision}), sha256 `{m.sha256}`, from `{m.source_package}=="
        f"{m.source_version}` ({m.licence}, {m.source_url}); trained on {m.training_data}."
        + "".join(f" {term}" for term in m.training_data_terms)
        for m in n.models
    ]
    lines: List[str] = [
        f"# Accountability record: device `{n.device_id}`",
        "",
        f"Generated by `appliance notice record` from software {n.software_version}, config hash "
        f"`{n.config_hash}`, notice sha256 `{notice_hash(n)}`. Regenerate it after any config change; "
        f"the audit log records every change. Fields marked {blank('...')} are for the operator to fill in.",
        "",
        "## Part A. Data-protection impact assessment: data sheet",
        "",
        "### A.1 Controller",
        "",
        f"- Controller (operator): {_or_blank(c.name, 'name of the controller')}",
        f"- Contact: {_or_blank(', '.join(x for x in (c.email, c.phone, c.url) if x), 'contact for the public')}",
        f"- Data protection officer: {_or_blank(c.dpo, 'name and contact of the DPO')}",
        f"- DPIA reference: {_or_blank(n.purpose.dpia_reference, 'reference of this DPIA')}",
        "",
        "### A.2 Purpose and context",
        "",
        f"- Purpose: {n.purpose.text}. {n.purpose.details.get(lang, '')}".rstrip(),
        f"- Legal basis: {_or_blank(n.purpose.legal_basis.get(lang), 'legal basis, e.g. GDPR Art. 6(1)(e) or (f)')}",
        f"- Covered area: {_or_blank(n.covered_area.get(lang), 'the area in words')}; zones: "
        f"{', '.join(n.on_device.zones) or 'none'}; counting lines: {', '.join(n.on_device.lines) or 'none'}",
        f"- Place, camera position and who passes there: {blank('describe the site and the people affected')}",
        "",
        *legal_regime(n),
        "",
        "### A.2b Necessity and proportionality",
        "",
        *necessity(cfg, n),
        "",
        "### A.3 Data categories and flows",
        "",
        "| data | where | kept | leaves the device |",
        "|---|---|---|---|",
        "| camera frames (images of people) | device memory | while processed (milliseconds) | never |",
        f"| face and person boxes, person tracks | device memory | tracks up to "
        f"{track_lifetime_s(cfg):g} s after last seen | never |",
        f"| aggregates (counts, zone figures, flags, health) | SQLite outbox on the device | until acked by the "
        f"broker, at most {cfg.outbox.max_age_s / 86400:g} days | yes, to the broker (see A.4) |",
        "| audit log (starts, stops, config changes, flags, images written locally) | device | "
        + (
            f"{t.audit_log_retention_days} days (operator's promise; the device never prunes it)"
            if t.audit_log_retention_days
            else blank("how long the audit log is kept (transparency.audit_log_retention_days)")
        )
        + " | no (its head hash is published) |",
        f"| aggregates at the central side | control room | {retention_central} | - |",
        "",
        f"On device: {n.on_device.frames}. Anonymization: {n.on_device.anonymization_method} "
        f"{n.on_device.anonymization_shape} over every detected face"
        f"{' and the head of every detected person' if n.on_device.head_blur else ''}; {n.on_device.fail_closed}.",
        "",
        "Analytics: " + "; ".join(n.on_device.analytics) + ".",
        "",
        "### A.4 Recipients: every topic and field that leaves the device",
        "",
        f"Destination: {'an MQTT broker' if n.destination == 'mqtt' else 'standard output (nothing is sent)'}. "
        "Who reads the broker: "
        + ("; ".join(r.get(lang, "") for r in n.recipients) or blank("recipients at the central side, their access")),
        "",
        *_topics_table(n),
        "",
        "### A.5 Models",
        "",
        *models_md,
        "",
        *_accuracy(cfg),
        *_model_agreement(cfg),
        "",
        "### A.6 Known limits",
        "",
        *_face_size_limit(cfg),
        "",
        "### A.7 Risks: likelihood, severity, mitigation, residual risk",
        "",
        *risk_table(cfg, n),
        "",
        "### A.8 Why this is not biometric identification or categorisation",
        "",
        "The face model only locates faces so that they can be blurred; it outputs boxes and landmarks, never "
        "a template, embedding or feature vector, and no stored reference exists to compare with. Person "
        "tracks are short-lived box sequences in memory used to count line crossings; they carry no appearance "
        "features and are never stored or sent. No attribute of a person (age, sex, emotion, ethnicity) is "
        "estimated. The data that leaves the device are counts per window and area. Under the GDPR (Art. 4(14)) "
        "and the AI Act (Art. 3(34)-(40)), biometric data is data from specific technical processing that allows "
        "or confirms unique identification: the device performs no such processing.",
        "",
        "### A.9 For the operator to complete",
        "",
        f"- Consultation of the DPO and, where needed, the supervisory authority: {blank('dates and outcome')}",
        f"- Where the signs are posted (the first layer): {blank('places; `appliance notice sign` prints them')}",
        f"- Review date of this assessment: {blank('date')}",
        "",
        *ai_act(cfg, n),
        "## Part C. UNICRI/INTERPOL Toolkit for Responsible AI Innovation in Law Enforcement:",
        "## technical questions of the risk assessment questionnaire",
        "",
        "Paraphrased from the toolkit's risk assessment questionnaire (2023); the toolkit's own numbering is not "
        "reproduced. Only questions the device can answer are filled in; the organisational ones are blanks.",
        "",
        "| question | answer |",
        "|---|---|",
        "| What data was the system trained on; is it representative of the people it will see? | "
        + "; ".join(f"{m.name}: {m.training_data}" for m in n.models)
        + ". Performance across demographic groups was **not** measured by the project. "
        + blank("is the site's population represented?")
        + " |",
        "| How accurate is it, and how was that measured? | See A.5 (public footage, hand labels, one scene). |",
        "| Can its outputs be explained and traced? | Counts are numbers of detections above published thresholds "
        "in configured zones; every threshold is in the config (hash published); the models are pinned by sha256. |",
        "| Does it process personal or sensitive data, and is it minimised? | Frames only in memory, anonymized "
        "first; only aggregates leave (A.3, A.4). |",
        "| How is it secured against tampering and misuse? | Model sha256 checks, egress policy, "
        "mutual TLS to the broker when configured, hash-chained audit log (signed with the device key when mTLS "
        "is configured). |",
        "| Is there human oversight, and can it be switched off? | Alerts only; the operator stops the service "
        f"(`systemctl stop appliance`). {blank('who oversees, and escalation')} |",
        "| What happens when it fails? | Fail closed: no frame is analysed unblurred; health reports `degraded` "
        "or `failed`. |",
        f"| Has the use been assessed for necessity, proportionality and legal basis? | {blank('see Part A')} |",
        f"| Are affected communities informed and consulted? | Public sign and notice; {blank('consultation')} |",
        "",
    ]
    return "\n".join(lines)


def write_record(cfg: ApplianceConfig, output: Path) -> Path:
    if output.suffix.lower() not in (".md", ".markdown"):
        from appliance.errors import InputError

        raise InputError("the record is Markdown: the output must end in .md", path=str(output))
    output.write_text(build_record(cfg), encoding="utf-8")
    return output


__all__ = ["build_record", "write_record"]
