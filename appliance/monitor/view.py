"""Rendering of the fleet state: a rich table for people, JSON lines for scripts.

The table fits an 80-column terminal: each device takes a few lines (boot and last message under
its id, fps under its health, zones under its people count). Everything colour says is also said
in words (``OFFLINE``, ``FAILED``, ``CRIT``/``WARN``/``info``, ``missing 3``), so a monochrome
terminal or a screenshot in a report loses nothing. On an OFFLINE row every figure is the last one
received: the status says ``stale`` with its age, the figures are dimmed and anomaly timers stop
at the last message (the device can no longer clear them; its next birth will).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from typing import List, Optional

from rich import box
from rich.table import Table
from rich.text import Text

from appliance.monitor.state import DeviceSnapshot

MAX_CAPTION_GROUPS = 3
# Anomaly types as the table names them, to leave room for the zone and timer in 80 columns.
SHORT_TYPE = {
    "overcrowding": "crowd",
    "counterflow": "cflow",
    "rapid_change": "rapid",
    "abnormal_motion": "motion",
    "camera_tamper": "tamper",
}
SEVERITY_WORD = {"critical": ("CRIT", "bold red"), "warning": ("WARN", "yellow"), "info": ("info", "cyan")}


def _ago(now: datetime, t: Optional[datetime]) -> str:
    if t is None:
        return "-"
    return _duration((now - t).total_seconds()) + " ago"


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _stale(s: DeviceSnapshot) -> bool:
    """The row's figures are the last ones an offline device sent."""
    return s.online is False


def _status(s: DeviceSnapshot, now: datetime) -> Text:
    if s.online is None:
        text = Text("?", style="yellow")
    else:
        text = Text("online", style="green") if s.online else Text("OFFLINE", style="bold red")
    if _stale(s):
        # Its age when the monitor heard it live; a monitor started later has only the retained state.
        age = "" if s.last_seen is None else " " + _duration((now - s.last_seen).total_seconds())
        text.append(f"\nstale{age}", style="bold yellow")
    if s.notice is not None:
        # The notice hash as the printed sign shows it (12 hex digits), so it can be compared on site.
        if s.notice_matches_birth is False:
            text.append("\nnotice≠birth", style="bold red")
        else:
            text.append("\n" + s.notice.sha256[:12], style="dim")
    return text


def _notices_caption(snapshots: List[DeviceSnapshot]) -> Optional[Text]:
    """Who runs the devices and why, from their notices: one entry per (operator, purpose)."""
    groups = Counter(
        (s.notice.operator or "operator not configured", s.notice.purpose) for s in snapshots if s.notice is not None
    )
    if not groups:
        return None
    # Most devices first; a mixed fleet must not push the table off the screen.
    ranked = sorted(groups.items(), key=lambda g: (-g[1], g[0]))
    parts = [f"{op} ({purpose}): {n} device{'s' if n > 1 else ''}" for (op, purpose), n in ranked[:MAX_CAPTION_GROUPS]]
    if len(ranked) > MAX_CAPTION_GROUPS:
        parts.append(f"{len(ranked) - MAX_CAPTION_GROUPS} more (see --json)")
    # Text, not a str: an operator's name is the operator's text, never rich markup.
    return Text("; ".join(parts))


def _health(s: DeviceSnapshot) -> Text:
    if s.health is None:
        return Text("-")
    style = "dim" if _stale(s) else {"ok": "green", "degraded": "yellow", "failed": "bold red"}[s.health]
    word = "FAILED" if s.health == "failed" else s.health
    fps = "" if s.fps is None else f"\n{s.fps:.1f}fps"
    text = Text(word + fps, style=style)
    if s.audit is not None:
        for flag in s.audit.flags:  # evidence trouble stays on screen: it is what the control room acts on
            text.append("\n" + flag, style="bold red")
        if s.audit.problem:
            text.append("\naudit: " + s.audit.problem, style="yellow")
    return text


def _people(s: DeviceSnapshot) -> Text:
    people = "-" if s.total is None else str(s.total)
    if s.camera_ok is False:
        people += " blind"
    zones = [f"{name}={'<k' if n is None else n}" for name, n in sorted(s.zones.items())]
    return Text("\n".join([people, *zones]), style="dim" if _stale(s) else "")


def _anomalies(s: DeviceSnapshot, now: datetime) -> Text:
    if not s.anomalies:
        return Text("-")
    # An offline device's flags are as of its last message: their timers stop there.
    at = s.last_seen if _stale(s) and s.last_seen is not None else now
    text = Text()
    for i, a in enumerate(s.anomalies):
        word, style = SEVERITY_WORD.get(a.severity, (a.severity, "bold red"))
        where = f"@{a.zone}" if a.zone else ""
        line = f"{word} {SHORT_TYPE.get(a.type, a.type)}{where} {_duration(a.raised_for_s(at))}"
        text.append(("\n" if i else "") + line, style="dim" if _stale(s) else style)
    return text


def _legend(snapshots: List[DeviceSnapshot]) -> Optional[str]:
    shown = sorted({a.type for s in snapshots for a in s.anomalies if a.type in SHORT_TYPE})
    return " ".join(f"{SHORT_TYPE[t]}={t}" for t in shown) or None


def _seq(s: DeviceSnapshot) -> Text:
    q = s.seq
    counters = (
        ("miss", q.missing), ("gaps", q.gaps), ("late", q.late),
        ("dup", q.duplicates), ("recon", q.reconnects), ("reset", q.resets),
    )
    parts = [f"{label} {n}" for label, n in counters if n]
    style = "red" if q.missing else ("yellow" if parts else "green")
    return Text("\n".join(parts) or "ok", style=style)


def _device(s: DeviceSnapshot, now: datetime) -> Text:
    text = Text(s.device_id, style="bold")
    parts = ([f"boot {s.boot_id}"] if s.boot_id else []) + ([_ago(now, s.last_seen)] if s.last_seen else [])
    if parts:
        text.append("\n" + ", ".join(parts), style="dim")
    return text


def fleet_table(snapshots: List[DeviceSnapshot], now: datetime, title: str = "") -> Table:
    """A few lines per device, 80 columns wide at most (narrower columns fold).

    Under the status, the device's notice hash (red ``notice≠birth`` when the birth names another);
    the caption says who runs the devices and for what purpose, from their notices, and what the
    short anomaly names stand for."""
    caption = _notices_caption(snapshots)
    legend = _legend(snapshots)
    if legend is not None:
        caption = Text(legend) if caption is None else Text.assemble(caption, "\n", legend)
    table = Table(
        title=title or None,
        caption=caption,
        expand=False,
        show_lines=True,
        pad_edge=False,
        collapse_padding=True,
        box=box.SIMPLE_HEAD,
        padding=(0, 0),
        show_edge=False,
    )
    table.add_column("device", overflow="fold", max_width=16)
    table.add_column("status", no_wrap=True)
    table.add_column("health", overflow="fold", max_width=12)
    table.add_column("people", no_wrap=True, overflow="ellipsis", max_width=14)
    table.add_column("anomalies", overflow="fold", min_width=12)
    table.add_column("seq", no_wrap=True)
    for s in snapshots:
        table.add_row(_device(s, now), _status(s, now), _health(s), _people(s), _anomalies(s, now), _seq(s))
    return table


def json_line(snapshot: DeviceSnapshot, now: datetime) -> str:
    """One device as one JSON line (``appliance monitor --json``)."""
    at = now.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps({"at": at, **snapshot.to_dict(now)}, separators=(",", ":"))
