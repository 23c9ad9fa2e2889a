"""The record's risk table and its necessity-and-proportionality questions, with the device's facts.

Likelihood and severity follow the CNIL PIA scale (negligible, limited, significant, maximum); the
residual risk is what remains with the mitigation the device enforces or the operator must provide.
Where a rating depends on the site, the row says which setting moves it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, NamedTuple

from appliance.transparency.notice_model import Notice

if TYPE_CHECKING:
    from appliance.config import ApplianceConfig


def blank(what: str) -> str:
    return f"**[OPERATOR: {what}]**"


class Risk(NamedTuple):
    risk: str
    likelihood: str
    severity: str
    mitigation: str
    residual: str


def risks(cfg: ApplianceConfig, n: Notice) -> List[Risk]:
    k = cfg.privacy.min_count
    abnormal = "abnormal_motion" in n.flags
    worst_px = max((z.px_per_m for z in n.detail_level.zones), default=None)
    from appliance.detail_level import RECOGNISE_PX_PER_M

    sharp = worst_px is None or worst_px >= RECOGNISE_PX_PER_M
    return [
        Risk("Images of people leave the device", "negligible", "maximum",
             "no message class can hold an image or a box; the egress policy re-validates every payload against "
             "the message classes and a size cap before it is queued", "low"),
        Risk("A face is seen unblurred by analysis or written to disk", "negligible", "significant",
             "frames are anonymized before anything else sees them; a failing or slow face stage destroys the "
             "frame (fail closed); `blur` and `preview` write anonymized images only", "low"),
        Risk("A person both detectors miss could be recognised in device memory", "limited", "limited",
             f"head blur {'on' if cfg.anonymize.head_blur else 'OFF'}; detail level {n.detail_level.text}; the "
             "frame never leaves memory",
             "medium: configure analytics.ground_plane and anonymize.max_detail_px_per_m" if sharp else "low"),
        Risk("A single person is singled out from small counts", "limited" if k else "significant", "limited",
             n.small_counts, "low" if k else "medium: set privacy.min_count"),
        Risk("Chilling effect: people avoid the place, an assembly or a demonstration because a camera watches",
             "significant", "significant",
             "the sign and the public page say that nobody is recorded or identified and what leaves; the "
             f"covered area is limited to the configured zones; {blank('limit operation to the events that need it')}",
             "medium"),
        Risk("Function creep into policing: counts or flags used to watch protests or to find individuals",
             "limited", "maximum",
             "the device cannot identify anyone (no template, embedding or stored image); any config change is in "
             "the audit log and changes the published config and notice hashes; a police use needs the LED branch "
             f"and a new assessment; {blank('written purpose limitation and who may change the config')}",
             "medium"),
        Risk("Children, wheelchair users or people with an atypical gait raise 'abnormal motion'",
             "limited" if abnormal else "negligible", "limited",
             "the flag concerns a zone's crowd speed against its learned baseline, never a person, and carries no "
             f"image; {blank('staff instructed that a flag is not about a person')}"
             if abnormal else "abnormal_motion is disabled in this config",
             "low"),
        Risk("Interventions on false alarms: stewards, police or medics sent because of a wrong flag",
             "limited", "significant",
             "flags are alerts for people, never automatic actions; measured false alarms are in A.5b; "
             f"{blank('procedure: who checks a flag before acting')}", "medium"),
        Risk("Counting is less accurate for some groups of people", "limited", "limited",
             "performance across demographic groups was not measured by the project (A.5b); counts are per area, "
             "so an error affects a figure, not a person", "low"),
        Risk("The audit log or the published heads are rewritten", "negligible", "significant",
             "hash-chained audit log whose head is published in every health message; `appliance audit verify`",
             "low"),
        Risk("Other risks at this site", blank("likelihood"), blank("severity"), blank("mitigation"),
             blank("residual risk")),
    ]


def risk_table(cfg: ApplianceConfig, n: Notice) -> List[str]:
    out = ["| risk | likelihood | severity | mitigation | residual risk |", "|---|---|---|---|---|"]
    out += [f"| {r.risk} | {r.likelihood} | {r.severity} | {r.mitigation} | {r.residual} |" for r in risks(cfg, n)]
    return out


def necessity(cfg: ApplianceConfig, n: Notice) -> List[str]:
    """Guiding questions, each with what the device already answers and what the operator must."""
    area = ", ".join(n.on_device.zones) or "the whole view (no zone configured)"
    r = n.retention
    return [
        "| question | the device's facts | the operator's answer |",
        "|---|---|---|",
        f"| What pressing need does the processing meet? | purpose: {n.purpose.text} | "
        f"{blank('the incidents or obligations that make it necessary')} |",
        "| Could a less intrusive means meet it (stewards counting, ticket or gate counts, a radar or thermal "
        "counter)? | the device already reduces video to counts inside itself: no image leaves | "
        f"{blank('alternatives considered and why they do not suffice')} |",
        f"| Is the data limited to what the purpose needs? | only aggregates leave; flags: "
        f"{', '.join(n.flags) or 'none'}; small counts: {n.small_counts} | {blank('could fewer flags do?')} |",
        f"| Is the area limited? | zones: {area} | {blank('why this area, and not less')} |",
        f"| Is the time limited? | runs while the service runs; a window every {cfg.publish.interval_s:g} s | "
        f"{blank('hours or events of operation')} |",
        f"| Is retention limited? | frames: never stored; tracks: {r.track_lifetime_s:g} s after last seen; "
        f"on the device: at most {r.outbox_max_age_s / 86400:g} days until delivered | "
        + (f"centrally: {r.central_days} days" if r.central_days else blank("central retention"))
        + " |",
        "| Are the people affected informed? | the sign and the public page (generated) | "
        f"{blank('where the signs are posted')} |",
    ]
