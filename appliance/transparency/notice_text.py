"""``appliance notice manifest`` without ``--json``: the notice as plain text for a person to read."""

from __future__ import annotations

from typing import List

from appliance.transparency.notice import Notice, notice_hash


def notice_lines(n: Notice) -> List[str]:
    c, a, lang = n.controller, n.legal.authority, n.languages[0]
    details, legal = n.purpose.details.get(lang, ""), n.purpose.legal_basis.get(lang, "")
    recipients = [r[lang] for r in n.recipients if lang in r]
    out = [
        f"Device {n.device_id}: software {n.software_version}, config {n.config_hash}, notice {notice_hash(n)}",
        f"Operator:  {c.name or '(not configured: transparency.operator_name)'}",
        f"Contact:   {', '.join(x for x in (c.email, c.phone, c.url) if x) or '(not configured)'}",
        f"DPO:       {c.dpo or '-'}",
        f"Purpose:   {n.purpose.text}" + (f" - {details}" if details else ""),
        f"Legal basis ({n.legal.regime.upper()}): {legal or '-'}   DPIA: {n.purpose.dpia_reference or '-'}",
        f"Authority: {f'{a.name}, {a.url}' if a else '-'}   Recipients: {'; '.join(recipients) or '-'}",
        f"Covered area: {n.covered_area.get(lang, '-')}   Flags that leave: {', '.join(n.flags) or 'none'}",
        f"Public notice: {n.public_url or '-'}   Central retention: "
        + (f"{n.central_retention_days} days" if n.central_retention_days else "-"),
        "",
        f"On the device: {n.on_device.frames}.",
        f"Anonymization: {n.on_device.anonymization_method} {n.on_device.anonymization_shape}, faces"
        + (" and heads" if n.on_device.head_blur else "")
        + f"; {n.on_device.fail_closed}.",
        "Analytics: " + "; ".join(n.on_device.analytics) + ".",
        "",
        f"What leaves ({n.destination}): {n.egress}.",
    ]
    for t in n.topics:
        when = f"every {t.interval_s:g} s" if t.interval_s else t.sent
        out.append(f"  {t.topic}{' (retained)' if t.retained else ''}: {when}")
        out.append("    " + ", ".join(t.fields))
    out.append("")
    out.append("Models:")
    for m in n.models:
        out.append(f"  {m.name} ({m.task}, {m.precision}) sha256 {m.sha256}")
        out.append(f"    from {m.source_package}=={m.source_version} ({m.licence}); trained on {m.training_data}")
        out += [f"    ! {term}" for term in m.training_data_terms]
    out.append("")
    out.append(f"Audit: {n.audit_log}.")
    out.append(f"Small counts: {n.small_counts}.")
    out.append(f"Detail level ({n.detail_level.scale}): {n.detail_level.text}.")
    return out
