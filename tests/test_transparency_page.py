"""The public page (``appliance notice page``): everything GDPR/LED Art. 13 asks for, from the config,
static and self-contained; and, in real headless Chromium, no request leaves the folder, nothing
scrolls sideways on a phone, and axe-core finds no accessibility violation."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from datetime import datetime, timedelta, timezone
from html import unescape
from pathlib import Path
from typing import Any, Dict

import page_browser
import pytest
import yaml

from appliance.cli import main
from appliance.config import load_config
from appliance.publish.messages import CountsMessage, CountStats
from appliance.transparency import build_notice, notice_hash
from appliance.transparency.i18n import load_texts

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "site.yaml"
needs_poppler = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="needs poppler-utils")


def _site(tmp_path: Path, **transparency: Any) -> Path:
    data: Dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    data["transparency"].update(transparency)
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def _history(path: Path, windows: int = 30) -> Path:
    start = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
    lines = []
    for i in range(windows):
        end = start + timedelta(seconds=10 * (i + 1))
        counts = CountsMessage(window_start=end - timedelta(seconds=10), window_end=end, frames_analyzed=100,
                               total=CountStats(min=i % 3, mean=2.5 + (i % 7), max=4 + (i % 7), last=3))
        stamped = counts.stamp(device_id="campus-square-01", boot_id=1, seq=i + 1, sent_at=end)
        payload = json.loads(stamped.to_json_bytes())
        lines.append(json.dumps({"topic": "crowdmon/campus-square-01/counts", "payload": payload}))
    lines.append(json.dumps({"topic": "crowdmon/campus-square-01/health", "payload": {"state": "ok"}}))
    path.write_text("\n".join(lines) + "\n")
    return path


def _text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("page")
    history = _history(out.parent / "history.jsonl")
    assert main(["notice", "page", "--config", str(EXAMPLE), "-o", str(out), "--history", str(history)]) == 0
    return out


@pytest.fixture(scope="module")
def police_site_in_three_languages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every sign language, the LED regime and a French authority: the other branch of every text."""
    out = tmp_path_factory.mktemp("page-led")
    data: Dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    three = {"en": "Crowd safety at the market.", "fr": "Sécurité de la foule au marché.", "nb": "Sikkerhet på torget."}
    data["transparency"].update(
        sign_languages=["fr", "en", "nb"], legal_regime="led", country="FR", purpose_details=three,
        legal_basis=three, covered_area=three, recipients=[three],
    )
    site = out.parent / "led.yaml"
    site.write_text(yaml.safe_dump(data, allow_unicode=True))
    history = _history(out.parent / "history-led.jsonl")
    assert main(["notice", "page", "--config", str(site), "-o", str(out), "--history", str(history)]) == 0
    return out


@needs_poppler
def test_the_folder_holds_one_page_per_sign_language_the_notice_json_and_the_sign(example_site: Path) -> None:
    names = {p.name for p in example_site.iterdir()}
    assert {"index.html", "index.nb.html", "notice.json", "sign.pdf"} <= names
    notice = build_notice(load_config(EXAMPLE))
    # notice.json is the retained payload byte for byte: its sha256 is the notice hash the page prints.
    digest = hashlib.sha256((example_site / "notice.json").read_bytes()).hexdigest()
    assert digest == notice_hash(notice)
    for page in ("index.html", "index.nb.html"):
        assert digest in (example_site / page).read_text()
    assert '<html lang="nb">' in (example_site / "index.nb.html").read_text()


@needs_poppler
def test_each_page_states_what_article_13_requires_in_its_own_language(example_site: Path) -> None:
    cfg = load_config(EXAMPLE)
    t_cfg = cfg.transparency
    for page, lang in (("index.html", "en"), ("index.nb.html", "nb")):
        text, t = _text((example_site / page).read_text()), load_texts(lang)
        expected = [
            t_cfg.operator_name, t_cfg.contact_email, t_cfg.dpo_contact,             # who, and the DPO
            t[f"purpose_{t_cfg.purpose}"], t_cfg.purpose_details[lang],              # type: ignore[index]
            t["legal_basis_gdpr"], t_cfg.legal_basis[lang],                          # type: ignore[index]
            t_cfg.recipients[0][lang], t_cfg.covered_area[lang],                     # type: ignore[index]
            t["ret_tracks_value"].format(seconds=f"{cfg.analytics.tracker.max_age_s:g}"),
            t["ret_central_value"].format(days=t_cfg.central_retention_days),
            t["ret_audit_value"].format(days=t_cfg.audit_log_retention_days),
            t["right_access"], t["right_erasure"], t["right_object"], t["rights_nothing"],
            "Datatilsynet", "https://www.datatilsynet.no",                           # the authority of country NO
            t["never_3"], "WIDER FACE", "restrict commercial use", t["icons_credit"],
        ]
        expected += [t[f"flag_{kind}"] for kind in build_notice(cfg).flags]     # every flag that leaves, in words
        for item in expected:
            assert " ".join(str(item).split()) in text, (page, item)


def test_every_field_of_every_topic_is_listed_with_its_meaning(example_site: Path) -> None:
    html = (example_site / "index.html").read_text()
    for topic in build_notice(load_config(EXAMPLE)).topics:
        assert topic.topic in html
        for path, field in topic.fields.items():
            assert f"<code>{path.replace('<', '&lt;').replace('>', '&gt;')}</code>" in html, path
            assert field.description, f"{topic.kind}.{path} has no description"


def test_the_page_is_self_contained_without_script_or_outside_resources(example_site: Path) -> None:
    for page in ("index.html", "index.nb.html"):
        html = (example_site / page).read_text().lower()
        assert "<script" not in html and "<link" not in html and "@import" not in html and "url(" not in html
        sources = re.findall(r'\ssrc="([^"]*)"', html)
        assert sources and all(s.startswith("data:") for s in sources)


def test_the_history_is_a_described_chart_with_a_table_as_its_text_alternative(example_site: Path) -> None:
    html = (example_site / "index.html").read_text()
    assert re.search(r'<svg class="chart"[^>]*role="img" aria-labelledby="hist-title hist-desc"', html)
    assert "<desc id=\"hist-desc\">" in html and "<polyline" in html
    table = html[html.index("<caption>Counts per window</caption>"):]
    assert table.count("<tr><td>2026-11-23 12:0") == 24  # the latest 24 of the 30 windows, one row each


@needs_poppler
def test_a_police_operator_gets_the_law_enforcement_wording(tmp_path: Path) -> None:
    site = _site(tmp_path, legal_regime="led", sign_languages=["en"], purpose_details="Police crowd safety.",
                 legal_basis="LED Art. 8; national police act", recipients=["Police operations centre"],
                 covered_area="Market square")
    assert main(["notice", "page", "--config", str(site), "-o", str(tmp_path / "out")]) == 0
    text, t = _text((tmp_path / "out" / "index.html").read_text()), load_texts("en")
    assert t["legal_basis_led"] in text and t["rights_led_note"] in text
    assert t["right_object"] not in text  # GDPR Art. 21 has no LED counterpart


def test_without_a_public_url_the_page_is_refused_in_one_line_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data: Dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    del data["transparency"]["public_url"]
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(data, allow_unicode=True))
    assert main(["notice", "page", "--config", str(site), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{site}: transparency.public_url: required" in err
    assert not (tmp_path / "out").exists()


def test_a_bad_history_file_is_one_line_naming_it_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "history.jsonl"
    bad.write_text('{"payload": {"window_end": "2026-11-23T12:00:00Z", "total": {}}}\n')
    out = tmp_path / "out"
    assert main(["notice", "page", "--config", str(EXAMPLE), "-o", str(out), "--history", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "line 1" in err
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.skipif(page_browser.missing() is not None, reason=str(page_browser.missing()))
def test_in_chromium_no_outside_request_no_sideways_scroll_and_no_axe_violation(
    example_site: Path, police_site_in_three_languages: Path
) -> None:
    pages = [example_site / "index.html", example_site / "index.nb.html"]
    pages += [police_site_in_three_languages / name for name in ("index.html", "index.en.html", "index.nb.html")]
    assert '<html lang="fr">' in pages[2].read_text()
    with page_browser.chromium() as browser:
        for page in pages:
            for width in (375, 1280):
                browser.open(page, width)
                requests = browser.requests()
                assert requests and all(u.startswith(("file://", "data:")) for u in requests), requests
                assert browser.overflow_px() == 0, f"{page} scrolls sideways at {width} px"
                violations = browser.axe()
                assert violations == [], [(v["id"], v["help"], v["nodes"][0]["target"]) for v in violations]


def test_the_committed_screenshots_are_of_the_example_page_at_phone_and_desktop_width() -> None:
    for width in (375, 1280):
        png = (ROOT / "docs" / "img" / f"page-{width}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(png[16:20], "big") == width  # IHDR width
