"""Recent aggregates on the public page: counts messages (JSON lines) as an inline SVG chart with a
text alternative. Lines are what ``appliance run`` prints without a broker (``{"topic", "payload"}``)
or bare counts payloads, as a control room would log them; other message kinds are skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Dict, List

from appliance.errors import InputError

MAX_WINDOWS = 288  # a day of 5-minute windows, or 48 min of 10 s ones: what a chart can still show
TABLE_ROWS = 24
_W, _H, _PAD_L, _PAD_B, _PAD_T = 640, 240, 44, 28, 10


@dataclass(frozen=True)
class Window:
    end: datetime
    mean: float
    max: int


def read_history(path: Path) -> List[Window]:
    """The counts windows in ``path``, oldest first, the last :data:`MAX_WINDOWS` of them."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read: {e}", path=str(path)) from None
    out: List[Window] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            payload = doc.get("payload", doc) if isinstance(doc, dict) else None
            if not isinstance(payload, dict) or "window_end" not in payload:
                continue  # status, health, anomalies: not part of the chart
            total = payload["total"]
            end = datetime.fromisoformat(str(payload["window_end"]).replace("Z", "+00:00"))
            out.append(Window(end=end, mean=float(total["mean"]), max=int(total["max"])))
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"line {number} is not a counts message ({e})", path=str(path)) from None
    if not out:
        raise InputError("holds no counts messages", path=str(path))
    out.sort(key=lambda w: w.end)
    return out[-MAX_WINDOWS:]


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M")


def history_html(windows: List[Window], t: Dict[str, str]) -> str:
    """A ``<figure>`` with the chart (described for screen readers) and a table of the latest windows."""
    top = max(1, max(w.max for w in windows))
    n = len(windows)
    plot_w, plot_h = _W - _PAD_L - 8, _H - _PAD_B - _PAD_T

    def xy(i: int, v: float) -> str:
        x = _PAD_L + (plot_w * i / max(1, n - 1))
        y = _PAD_T + plot_h * (1 - v / top)
        return f"{x:.1f},{y:.1f}"

    mean_pts = " ".join(xy(i, w.mean) for i, w in enumerate(windows))
    max_pts = " ".join(xy(i, w.max) for i, w in enumerate(windows))
    caption = t["history_caption"].format(start=_when(windows[0].end), end=_when(windows[-1].end))
    peak = max(windows, key=lambda w: w.max)
    summary = (
        f"{caption}. {t['people_max']}: {peak.max} ({_when(peak.end)}); "
        f"{t['people_mean']}: {sum(w.mean for w in windows) / n:.1f}."
    )
    axis = (
        f'<line x1="{_PAD_L}" y1="{_PAD_T + plot_h}" x2="{_W - 8}" y2="{_PAD_T + plot_h}" stroke="#444"/>'
        f'<line x1="{_PAD_L}" y1="{_PAD_T}" x2="{_PAD_L}" y2="{_PAD_T + plot_h}" stroke="#444"/>'
        f'<text x="{_PAD_L - 6}" y="{_PAD_T + 10}" text-anchor="end" font-size="12" fill="#111">{top}</text>'
        f'<text x="{_PAD_L - 6}" y="{_PAD_T + plot_h}" text-anchor="end" font-size="12" fill="#111">0</text>'
        f'<text x="{_PAD_L}" y="{_H - 8}" font-size="12" fill="#111">{escape(_when(windows[0].end))}</text>'
        f'<text x="{_W - 8}" y="{_H - 8}" text-anchor="end" font-size="12" fill="#111">'
        f"{escape(_when(windows[-1].end))}</text>"
    )
    svg = (
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" aria-labelledby="hist-title hist-desc" '
        f'xmlns="http://www.w3.org/2000/svg"><title id="hist-title">{escape(t["history_alt"])}</title>'
        f'<desc id="hist-desc">{escape(summary)}</desc>{axis}'
        f'<polyline points="{max_pts}" fill="none" stroke="#8a5a00" stroke-width="1.5" stroke-dasharray="4 3"/>'
        f'<polyline points="{mean_pts}" fill="none" stroke="#142d5a" stroke-width="2.5"/></svg>'
    )
    rows = "".join(
        f"<tr><td>{escape(_when(w.end))}</td><td>{w.mean:.1f}</td><td>{w.max}</td></tr>"
        for w in windows[-TABLE_ROWS:]
    )
    return (
        f'<figure>{svg}<figcaption>{escape(summary)} '
        f'<span class="key key-mean">{escape(t["people_mean"])}</span> '
        f'<span class="key key-max">{escape(t["people_max"])}</span></figcaption></figure>'
        f'<table><caption>{escape(t["history_alt"])}</caption><thead><tr><th scope="col">'
        f'{escape(t["window_end"])}</th><th scope="col">{escape(t["people_mean"])}</th><th scope="col">'
        f'{escape(t["people_max"])}</th></tr></thead><tbody>{rows}</tbody></table>'
    )
