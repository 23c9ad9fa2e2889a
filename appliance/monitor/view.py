"""Rendering of the fleet state: a rich table for people, JSON lines for scripts."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from typing import List, Optional

from rich.table import Table
from rich.text import Text

from appliance.monitor.state import DeviceSnapshot

MAX_CAPTION_GROUPS = 3


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


def _status(s: DeviceSnapshot) -> Text:
    if s.online is None:
        text = Text("?", style="yellow")
    else:
        text = Text("online", style="green") if s.online else Text("OFFLINE", style="bold red")
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
    style = {"ok": "green", "degraded": "yellow", "failed": "bold red"}[s.health]
    fps = "" if s.fps is None else f" {s.fps:.1f}fps"
    text = Text(s.health + fps, style=style)
    if s.audit is not None:
        for flag in s.audit.flags:  # evidence trouble stays on screen: it is what the control room acts on
            text.append("\n" + flag, style="bold red")
        if s.audit.problem:
            text.append("\naudit: " + s.audit.problem, style="yellow")
    return text


def _seq(s: DeviceSnapshot) -> Text:
    q = s.seq
    counters = (
        ("missing", q.missing), ("gaps", q.gaps), ("late", q.late),
        ("dup", q.duplicates), ("reconn", q.reconnects), ("reset", q.resets),
    )
    parts = [f"{label} {n}" for label, n in counters if n]
    style = "red" if q.missing else ("yellow" if parts else "green")
    return Text("\n".join(parts) or "ok", style=style)


def fleet_table(snapshots: List[DeviceSnapshot], now: datetime, title: str = "") -> Table:
    """One row per device. Columns fold rather than overflow, so it stays readable on a small terminal.

    Under the status, the device's notice hash (red ``notice≠birth`` when the birth names another);
    the caption says who runs the devices and for what purpose, from their notices."""
    table = Table(
        title=title or None,
        caption=_notices_caption(snapshots),
        expand=False,
        show_lines=False,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("device", no_wrap=True, style="bold")
    table.add_column("status", no_wrap=True)
    table.add_column("health", no_wrap=True)
    table.add_column("people", justify="right", no_wrap=True)
    table.add_column("zones", no_wrap=True, min_width=6)
    table.add_column("anomalies", overflow="fold", min_width=9)
    table.add_column("seq", overflow="fold", min_width=8)
    table.add_column("seen", no_wrap=True)
    for s in snapshots:
        zones = "\n".join(f"{name}={'<k' if n is None else n}" for name, n in sorted(s.zones.items())) or "-"
        anomalies = Text(
            "\n".join(
                f"{a.type}{'@' + a.zone if a.zone else ''} {_duration(a.raised_for_s(now))}" for a in s.anomalies
            )
            or "-",
            style="bold red" if s.anomalies else "",
        )
        people = "-" if s.total is None else str(s.total)
        if s.camera_ok is False:
            people += " (blind)"
        table.add_row(
            f"{s.device_id}\n[dim]boot {s.boot_id}[/dim]" if s.boot_id else s.device_id,
            _status(s),
            _health(s),
            people,
            zones,
            anomalies,
            _seq(s),
            _ago(now, s.last_seen),
        )
    return table


def json_line(snapshot: DeviceSnapshot, now: datetime) -> str:
    """One device as one JSON line (``appliance monitor --json``)."""
    at = now.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps({"at": at, **snapshot.to_dict(now)}, separators=(",", ":"))
