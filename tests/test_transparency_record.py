"""The accountability record: pre-filled from config, models and shipped measurements, with marked blanks."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict

import pytest
import yaml

from appliance.cli import main
from appliance.config import config_hash, load_config
from appliance.transparency import build_notice, notice_hash
from appliance.transparency.record import build_record

ROOT = Path(__file__).resolve().parent.parent


def _site(tmp_path: Path, **sections: Any) -> Path:
    data: Dict[str, Any] = yaml.safe_load((ROOT / "examples" / "site.yaml").read_text())
    data.update(sections)
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def test_the_record_is_prefilled_from_the_config_and_the_shipped_measurements() -> None:
    cfg = load_config(ROOT / "examples" / "site.yaml")
    text = build_record(cfg)
    assert cfg.transparency.operator_name and cfg.transparency.operator_name in text
    assert config_hash(cfg) in text and notice_hash(build_notice(cfg)) in text
    for part in ("## Part A", "## Part B", "## Part C", "biometric"):
        assert part in text
    # The count error is the shipped evaluation row for this very setting (int8, 300 px, perspective, 0.4).
    rows = json.loads((ROOT / "eval" / "vtest_results_int8.json").read_text())["detector_settings"]
    row = next(r for r in rows if (r["input_size"], r["tiling"], r["threshold"]) == (300, "perspective", 0.4))
    assert f"| count mean absolute error (people per frame) | {row['count_mae']} |" in text
    assert "| camera_tamper | 9/9 |" in text
    assert "WIDER FACE" in text and "restrict commercial use" in text
    assert "crowdmon/campus-square-01/counts" in text


def test_what_only_the_operator_knows_is_a_marked_blank() -> None:
    text = build_record(load_config())  # defaults: no operator, no legal basis, no retention promise
    blanks = re.findall(r"\*\*\[OPERATOR: [^]]+\]\*\*", text)
    assert len(blanks) >= 10
    assert "**[OPERATOR: name of the controller]**" in text
    assert "**[OPERATOR: legal basis" in text
    assert "**[OPERATOR: how long the aggregates are kept centrally]**" in text


def test_a_setting_without_a_shipped_measurement_says_so_instead_of_borrowing_one(tmp_path: Path) -> None:
    text = build_record(load_config(_site(tmp_path, detection={"person_score_threshold": 0.35})))
    assert "No shipped measurement for this setting" in text
    assert "count mean absolute error" not in text


def test_the_face_size_limit_follows_the_board_resolution() -> None:
    # x86-generic: 768x576 working frame, CenterFace input 640x480 -> 10 px there is 12 px here.
    assert "about 12 px tall in the 768x576 working frame" in build_record(load_config())


def test_every_artefact_follows_a_config_change(tmp_path: Path) -> None:
    before = load_config(ROOT / "examples" / "site.yaml")
    after = load_config(_site(
        tmp_path,
        transparency={"operator_name": "Kommune Testby", "contact_email": "post@testby.example"},
        zones=[{"name": "plassen", "polygon": [[0, 0], [1, 0], [1, 1]]}],
        publish={"interval_s": 30},
    ))
    n_before, n_after = build_notice(before), build_notice(after)
    r_before, r_after = build_record(before), build_record(after)
    assert n_after.controller.name == "Kommune Testby" and n_after.on_device.zones == ["plassen"]
    assert "Kommune Testby" in r_after and "Kommune Testby" not in r_before
    assert "zones: plassen;" in r_after and "zones: walkway;" in r_before
    assert "| every 30 s |" in r_after and "| every 10 s |" in r_before
    assert notice_hash(n_before) != notice_hash(n_after)


def test_notice_record_cli_writes_markdown_and_refuses_other_suffixes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "record.md"
    assert main(["notice", "record", "--config", str(ROOT / "examples" / "site.yaml"), "-o", str(out)]) == 0
    assert out.read_text().startswith("# Accountability record: device `campus-square-01`")
    assert main(["notice", "record", "-o", str(tmp_path / "record.pdf")]) == 2
    assert "record.pdf" in capsys.readouterr().err


def test_the_record_has_a_risk_table_with_the_societal_risks_and_operator_rows() -> None:
    text = build_record(load_config(ROOT / "examples" / "site.yaml"))
    assert "| risk | likelihood | severity | mitigation | residual risk |" in text
    table = text[text.index("### A.7"):text.index("### A.8")]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| risk")]
    assert len(rows) >= 10 and all(line.count(" | ") == 4 for line in rows)
    for societal in ("Chilling effect", "Function creep into policing", "wheelchair users",
                     "Interventions on false alarms"):
        assert societal in table, societal
    for rating in re.findall(r"^\| [^|]+ \| ([^|]+) \| ([^|]+) \|", table, re.M)[1:-1]:
        assert set(r.strip() for r in rating) <= {"negligible", "limited", "significant", "maximum"}, rating


def test_a_risk_rating_follows_the_config(tmp_path: Path) -> None:
    def row(text: str, risk: str) -> str:
        return next(line for line in text.splitlines() if line.startswith(f"| {risk}"))

    plain = build_record(load_config(ROOT / "examples" / "site.yaml"))
    protected = build_record(load_config(_site(tmp_path, privacy={"min_count": 3})))
    assert row(plain, "A single person").endswith("| medium: set privacy.min_count |")
    assert row(protected, "A single person").endswith("| low |")


def test_necessity_and_proportionality_are_guiding_questions_with_the_devices_facts() -> None:
    cfg = load_config(ROOT / "examples" / "site.yaml")
    text = build_record(cfg)
    part = text[text.index("### A.2b"):text.index("### A.3")]
    assert "| question | the device's facts | the operator's answer |" in part
    assert "less intrusive" in part and "walkway" in part and "counterflow" in part
    assert f"centrally: {cfg.transparency.central_retention_days} days" in part


def test_ai_act_articles_are_each_answered_and_art_50_is_stated_as_not_applying() -> None:
    text = build_record(load_config(ROOT / "examples" / "site.yaml"))
    for letter in "abcdefgh":
        assert re.search(rf"^\| \({letter}\) [^|]+ \| no", text, re.M), f"Art. 5(1)({letter})"
    for point in ("1(a)", "2 safety component", "4 employment", "5(d) evaluating emergency calls", "6(a)-(e)",
                  "7 migration", "8(b)"):
        assert f"| {point}" in text, point
    assert "Art. 50 does **not** apply" in text and "Reassess when" in text
    assert "Provider (Art. 3(3))" in text and "Deployer (Art. 3(4))" in text
    for letter in "abcdef":
        assert f"- ({letter}) " in text[text.index("### B.6"):], f"Art. 27({letter})"


def test_the_law_enforcement_branch_changes_the_legal_assessment(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "examples" / "site.yaml").read_text())
    data["transparency"]["legal_regime"] = "led"
    gdpr = build_record(load_config(ROOT / "examples" / "site.yaml"))
    led = build_record(load_config(_site(tmp_path, transparency=data["transparency"])))
    assert "Regime: **GDPR**" in gdpr and "Law Enforcement Directive" not in gdpr.split("Regime:")[1][:200]
    assert "Regime: **Law Enforcement Directive**" in led and "LED Art. 25" in led
    assert "Operated by a law-enforcement authority" in led


def test_audit_retention_and_track_lifetime_are_the_configs_one_figure_everywhere(tmp_path: Path) -> None:
    site = _site(tmp_path, analytics={"tracker": {"max_age_s": 2.5}})
    cfg = load_config(site)
    notice, text = build_notice(cfg), build_record(cfg)
    assert notice.retention.track_lifetime_s == 2.5
    assert "at most 2.5 s after" in " ".join(notice.on_device.analytics)
    assert "tracks up to 2.5 s after last seen" in text and "tracks: 2.5 s after last seen" in text
    assert "a few seconds" not in text and "a few seconds" not in " ".join(notice.on_device.analytics)
    assert f"| {cfg.transparency.audit_log_retention_days} days (operator's promise" in text
