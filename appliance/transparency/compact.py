"""A compact, human-readable form of the notice: what the sign's QR code holds when no public URL is set.

It has to fit a QR code that still scans from a printed page (a few hundred bytes), so it keeps the
first layer (who, why, contact, what leaves) and pins the full notice by its hash.
"""

from __future__ import annotations

from appliance.transparency.notice import Notice, notice_hash


def compact_notice(notice: Notice) -> str:
    c = notice.controller
    contact = ", ".join(x for x in (c.email, c.phone, c.url) if x) or "-"
    sent = []
    for t in notice.topics:
        every = f" every {t.interval_s:g} s" if t.interval_s else ""
        sent.append(f"{t.kind}{every}")
    models = ", ".join(f"{m.name} {m.sha256[:12]}" for m in notice.models)
    lines = [
        f"crowd-appliance notice v{notice.v}",
        f"device: {notice.device_id}",
        f"operator: {c.name or '-'}",
        f"contact: {contact}",
        f"purpose: {notice.purpose.code}",
        "faces blurred on device; no images stored or sent; only counts leave",
        f"topic: {notice.topics[0].topic.rsplit('/', 1)[0]}/",
        f"sends: {'; '.join(sent)}",
        f"models: {models}",
        f"software {notice.software_version}, config {notice.config_hash}",
        f"notice sha256: {notice_hash(notice)}",
    ]
    return "\n".join(lines)


def qr_content(notice: Notice) -> str:
    """What the sign's QR code encodes: the public URL when configured, else the compact notice."""
    return notice.public_url or compact_notice(notice)
