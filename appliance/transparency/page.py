"""The public page: the second layer the sign's QR code leads to (GDPR Art. 13, or LED Art. 13).

Static and self-contained: one HTML file per sign language (``index.html`` in the first, then
``index.<language>.html``), the notice JSON, the sign PDF and the register files beside them. No
script, no font, style or image from elsewhere (icons are inlined as data URIs), and a layout that
wraps on a phone. Everything on it comes from the notice, the translations and the config.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import Dict, List, Optional

import appliance
from appliance.transparency import first_layer as fl
from appliance.transparency.i18n import load_texts
from appliance.transparency.notice import notice_hash
from appliance.transparency.notice_model import Notice, TopicNotice
from appliance.transparency.page_history import Window, history_html

_CSS = """
*{box-sizing:border-box}
html{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;line-height:1.5;color:#111;
background:#fff}
body{margin:0}
header{background:#142d5a;color:#fff;padding:1rem}
header p{margin:.25rem 0 0}
main,footer{max-width:48rem;margin:0 auto;padding:0 1rem}
h1{font-size:1.6rem;margin:0}
h2{color:#142d5a;font-size:1.25rem;margin:1.75rem 0 .5rem;border-bottom:2px solid #142d5a}
h3{font-size:1.05rem;margin:1.25rem 0 .25rem}
.promise{background:#ffd600;color:#000;font-weight:bold;font-size:1.15rem;padding:.75rem 1rem;margin:1rem 0}
.item{display:flex;gap:.75rem;align-items:flex-start}
.item img{width:2.5rem;height:2.5rem;flex:none}
.item div{min-width:0}
.item p:first-child{margin-top:.3rem}
dt{font-weight:bold}
dd{margin:0 0 .5rem}
a{color:#0b4fa8}
p,li,td,th,dd,figcaption{overflow-wrap:anywhere}
code{font-size:.9em;overflow-wrap:anywhere;word-break:break-all}
table{border-collapse:collapse;width:100%;table-layout:fixed;margin:.5rem 0}
caption{text-align:left;font-weight:bold;padding:.25rem 0}
th,td{border:1px solid #888;padding:.3rem .4rem;text-align:left;vertical-align:top}
th{background:#e8edf5}
.fields td:first-child{width:40%}
.chart{width:100%;height:auto;border:1px solid #888}
.key-mean::before{content:"";display:inline-block;width:1.5rem;border-top:3px solid #142d5a;margin-right:.3rem;
vertical-align:middle}
.key-max::before{content:"";display:inline-block;width:1.5rem;border-top:2px dashed #8a5a00;margin-right:.3rem;
vertical-align:middle}
nav ul{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:1rem}
footer{font-size:.9rem;color:#333;border-top:1px solid #888;margin-top:2rem;padding-bottom:2rem}
"""


def page_name(notice: Notice, language: str) -> str:
    return "index.html" if language == notice.languages[0] else f"index.{language}.html"


def _icon(item: str) -> str:
    data = base64.b64encode(fl.icon_path(item).read_bytes()).decode("ascii")
    return f'<img src="data:image/svg+xml;base64,{data}" alt="">'


def _item(item: str, inner: str) -> str:
    return f'<div class="item">{_icon(item)}<div>{inner}</div></div>'


def _p(text: str, lang: Optional[str] = None) -> str:
    attr = f' lang="{lang}"' if lang else ""
    return f"<p{attr}>{escape(text)}</p>"


def _file_label(key: str, t: Dict[str, str]) -> str:
    if key.startswith("register:"):
        return f"{t['file_registers']}: {key.split(':', 1)[1]}"
    return t[key]


def _link(url: str) -> str:
    return f'<a href="{escape(url)}">{escape(url)}</a>'


class _Page:
    def __init__(self, notice: Notice, language: str, files: Dict[str, str]) -> None:
        self.n, self.lang, self.t, self.files = notice, language, load_texts(language), files
        # Texts generated in English (field descriptions, analytics) are marked as such on other pages.
        self.en = None if language == "en" else "en"

    def h2(self, key: str, anchor: str) -> str:
        return f'<h2 id="{anchor}">{escape(self.t[key])}</h2>'

    def who(self) -> List[str]:
        t, c = self.t, self.n.controller
        rows = [(t["operated_by"], escape(c.name or t["not_set"]))]
        contact = [escape(c.email or ""), escape(c.phone or "")] + ([_link(c.url)] if c.url else [])
        rows.append((t["contact"], ", ".join(x for x in contact if x) or escape(t["not_set"])))
        rows.append((t["dpo"], escape(c.dpo or t["not_set"])))
        body = "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in rows)
        return [self.h2("h_who", "who"), f"<dl>{body}</dl>"]

    def why(self) -> List[str]:
        n, t = self.n, self.t
        inner = _p(fl.purpose_text(n, t, self.lang)) + _p(
            f"{fl.legal_basis_label(n, t)}: {fl.legal_basis(n, t, self.lang)}"
        )
        return [self.h2("h_why", "why"), _item("purpose", inner)]

    def where(self) -> List[str]:
        n, t = self.n, self.t
        out = [self.h2("h_where", "where")]
        if fl.covered_area(n, self.lang):
            out.append(_item("area", _p(fl.covered_area(n, self.lang))))
        d = n.detail_level
        out.append(f"<h3>{escape(t['detail_level'])}</h3>" + _p(d.text, self.en))
        if d.zones:
            rows = "".join(
                f"<tr><td>{escape(z.zone)}</td><td>{z.px_per_m:g}</td><td>{escape(z.level)}</td></tr>" for z in d.zones
            )
            out.append(
                f'<table><thead><tr><th scope="col">{escape(t["zone"])}</th><th scope="col">{escape(t["px_per_m"])}'
                f'</th><th scope="col">{escape(t["level"])}</th></tr></thead><tbody>{rows}</tbody></table>'
            )
        out.append(_p(d.scale, self.en))
        return out

    def processing(self) -> List[str]:
        n, t, en = self.n, self.t, self.en
        on = n.on_device
        items = [on.frames, on.fail_closed, *on.analytics, n.small_counts]
        never = "".join(f"<li>{escape(t[f'never_{i}'])}</li>" for i in range(1, 5))
        return [
            self.h2("h_processing", "processing"),
            f'<ul lang="{en}">' if en else "<ul>",
            *[f"<li>{escape(x)}</li>" for x in items],
            "</ul>",
            f"<h3>{escape(t['h_never'])}</h3><ul>{never}</ul>",
        ]

    def _topic(self, topic: TopicNotice) -> str:
        t = self.t
        when = f"{topic.interval_s:g} s" if topic.interval_s else topic.sent
        rows = "".join(
            f"<tr><td><code>{escape(path)}</code></td><td>{escape(f.description or f.type)}</td></tr>"
            for path, f in topic.fields.items()
        )
        lang = f' lang="{self.en}"' if self.en else ""
        return (
            f"<h3><code>{escape(topic.topic)}</code></h3>"
            f'<p>{escape(t["sent"])}: <span{lang}>{escape(when)}</span></p>'
            f'<table class="fields"><thead><tr><th scope="col">{escape(t["field"])}</th>'
            f'<th scope="col">{escape(t["meaning"])}</th></tr></thead><tbody{lang}>{rows}</tbody></table>'
        )

    def leaves(self) -> List[str]:
        n, t = self.n, self.t
        out = [self.h2("h_leaves", "leaves"), _item("leaves", _p(t["promise"]) + _p(t["leaves_intro"]))]
        out.append(_item("flags", _p(fl.flags_line(n, t))))
        if self.en:
            out.append(_p(t["technical_english"]))
        out += [self._topic(topic) for topic in n.topics]
        return out

    def recipients(self) -> List[str]:
        n, t = self.n, self.t
        names = fl.recipients(n, self.lang)
        listed = "<ul>" + "".join(f"<li>{escape(r)}</li>" for r in names) + "</ul>" if names else _p(
            t["recipients_none"]
        )
        return [
            self.h2("h_recipients", "recipients"),
            _item("recipients", listed + _p(t[f"destination_{n.destination}"])),
        ]

    def retention(self) -> List[str]:
        n, t = self.n, self.t
        r = n.retention
        rows = [
            (t["ret_frames"], t["ret_frames_value"]),
            (t["ret_tracks"], t["ret_tracks_value"].format(seconds=f"{r.track_lifetime_s:g}")),
            (t["ret_outbox"], t["ret_outbox_value"].format(days=f"{r.outbox_max_age_s / 86400:g}")),
            (t["ret_central"], t["ret_central_value"].format(days=r.central_days) if r.central_days else t["not_set"]),
            (t["ret_audit"], t["ret_audit_value"].format(days=r.audit_log_days) if r.audit_log_days else t["not_set"]),
        ]
        body = "".join(f'<tr><th scope="row">{escape(k)}</th><td>{escape(v)}</td></tr>' for k, v in rows)
        return [self.h2("h_retention", "retention"), _item("retention", f"<table><tbody>{body}</tbody></table>")]

    def rights(self) -> List[str]:
        n, t = self.n, self.t
        items = "".join(f"<li>{escape(t['right_' + right])}</li>" for right in n.legal.rights)
        out = [self.h2("h_rights", "rights"), f"<ul>{items}</ul>", _p(t["rights_how"]), _p(t["rights_nothing"])]
        if n.legal.regime == "led":
            out.append(_p(t["rights_led_note"]))
        a = n.legal.authority
        out.append(self.h2("h_complain", "complain"))
        out.append(f"<p>{escape(a.name)}: {_link(a.url)}</p>" if a else _p(t["authority_generic"]))
        return out

    def models(self) -> List[str]:
        t = self.t
        rows = "".join(
            f"<tr><td>{escape(m.name)}</td><td>{escape(m.task)}</td><td>{escape(m.licence)}</td>"
            f"<td>{escape(m.training_data)}{''.join(' ' + escape(x) for x in m.training_data_terms)}</td></tr>"
            for m in self.n.models
        )
        head = "".join(f'<th scope="col">{escape(t[k])}</th>' for k in ("model", "task", "licence", "training_data"))
        lang = f' lang="{self.en}"' if self.en else ""
        table = f"<table><thead><tr>{head}</tr></thead><tbody{lang}>{rows}</tbody></table>"
        return [self.h2("h_models", "models"), table]

    def check(self) -> List[str]:
        n, t = self.n, self.t
        rows = [
            (t["check_notice"], notice_hash(n)),
            (t["check_config"], n.config_hash),
            (t["check_software"], n.software_version),
        ]
        body = "".join(f"<dt>{escape(k)}</dt><dd><code>{escape(v)}</code></dd>" for k, v in rows)
        files = "".join(
            f'<li><a href="{escape(href)}">{escape(_file_label(key, t))}</a></li>' for key, href in self.files.items()
        )
        return [
            self.h2("h_check", "check"),
            _p(t["check_intro"]),
            f"<dl>{body}</dl>",
            _p(t["check_how"]),
            f"<h3>{escape(t['h_files'])}</h3><ul>{files}</ul>",
        ]

    def render(self, history: Optional[List[Window]]) -> str:
        n, t = self.n, self.t
        others = "".join(
            f'<li><a href="{page_name(n, lang)}" hreflang="{lang}" lang="{lang}">'
            f'{escape(load_texts(lang)["lang_name"])}</a></li>'
            for lang in n.languages
            if lang != self.lang
        )
        nav = f'<nav aria-label="{escape(t["other_languages"])}"><ul>{others}</ul></nav>' if others else ""
        sections = self.who() + self.why() + self.where() + self.processing() + self.leaves() + self.recipients()
        sections += self.retention() + self.rights() + self.models()
        if history:
            sections += [self.h2("h_history", "history"), history_html(history, t)]
        sections += self.check()
        title = f"{t['title']}: {n.device_id}"
        return (
            f'<!DOCTYPE html>\n<html lang="{self.lang}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
            f"<header><h1>{escape(title)}</h1><p>{escape(t['subtitle'])}</p></header>"
            f'<main>{nav}<p class="promise">{escape(t["promise"])}</p>{_p(t["page_lead"])}'
            + "".join(sections)
            + f"</main><footer>{_p(t['generated'].format(version=appliance.__version__))}{_p(t['icons_credit'])}"
            "</footer></body></html>\n"
        )


def render_page(notice: Notice, language: str, files: Dict[str, str], history: Optional[List[Window]] = None) -> str:
    """The page in ``language``; ``files`` maps a translation key to a file beside it (notice, sign, registers)."""
    return _Page(notice, language, files).render(history)


def write_pages(
    notice: Notice, directory: Path, files: Dict[str, str], history: Optional[List[Window]] = None
) -> List[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for language in notice.languages:
        path = directory / page_name(notice, language)
        path.write_text(render_page(notice, language, files, history), encoding="utf-8")
        out.append(path)
    return out
