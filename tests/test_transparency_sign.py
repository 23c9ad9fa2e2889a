"""The printed sign, checked as a person sees it: the PDF rendered by poppler, the QR code read back
by OpenCV's decoder (independent of segno, which encoded it), the text layer read by pdftotext."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Tuple

import cv2
import pytest
import yaml

from appliance.cli import main
from appliance.config import load_config
from appliance.config.schema import SignLanguage
from appliance.transparency import build_notice
from appliance.transparency.i18n import LANGUAGES, TRANSLATIONS_DIR, load_texts
from appliance.transparency.qr import MIN_MODULE_MM, module_mm_on_a4
from appliance.transparency.sign import render_sign_pdf

ROOT = Path(__file__).resolve().parent.parent
URL = "https://example.org/cameras/square-01"
LONG_NAME = (
    "Communauté urbaine de Grand Exemple \u2013 Direction de la sécurité publique, de la prévention des risques "
    "et de la tranquillité des espaces publics"
)

pytestmark = pytest.mark.skipif(
    shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None,
    reason="needs poppler-utils (scripts/setup.sh installs it)",
)


def _site(tmp_path: Path, **transparency: Any) -> Path:
    data: Dict[str, Any] = yaml.safe_load((ROOT / "examples" / "site.yaml").read_text())
    data["transparency"] = {"operator_name": LONG_NAME, "contact_email": "dpo@example.org",
                            "contact_phone": "+33 1 23 45 67 89", "public_url": URL, **transparency}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def _render_png(pdf: Path, page: int, dpi: int = 150) -> Path:
    stem = pdf.with_name(f"{pdf.stem}-p{page}")
    subprocess.run(["pdftoppm", "-png", "-r", str(dpi), "-f", str(page), "-l", str(page), "-singlefile",
                    str(pdf), str(stem)], check=True)
    return stem.with_suffix(".png")


def _decode_qr(png: Path) -> str:
    text, points, _ = cv2.QRCodeDetectorAruco().detectAndDecode(cv2.imread(str(png)))
    assert points is not None and text, f"no QR code decoded from {png}"
    return str(text)


def _text(pdf: Path, page: int) -> str:
    out = subprocess.run(["pdftotext", "-f", str(page), "-l", str(page), "-layout", str(pdf), "-"],
                         check=True, capture_output=True, text=True).stdout
    return " ".join(out.split())


def _word_boxes(pdf: Path) -> Tuple[float, List[Tuple[str, float, float]]]:
    html = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], check=True, capture_output=True, text=True).stdout
    width = float(re.search(r'<page width="([\d.]+)"', html).group(1))  # type: ignore[union-attr]
    words = [(w, float(x0), float(x1)) for x0, x1, w in re.findall(r'xMin="([\d.]+)" yMin="[\d.]+" xMax="([\d.]+)" '
                                                                    r'yMax="[\d.]+">([^<]*)</word>', html)]
    return width, words


def test_every_language_file_has_the_same_texts_as_english() -> None:
    assert {p.stem for p in TRANSLATIONS_DIR.glob("*.yaml")} == set(LANGUAGES)
    english = load_texts("en")
    for language in LANGUAGES:
        texts = load_texts(language)
        assert set(texts) == set(english), language
        assert all(v.strip() for v in texts.values()), language
    assert LANGUAGES == ("en", "fr", "nb") == SignLanguage.__args__  # type: ignore[attr-defined]


def test_sign_pdf_has_one_page_per_language_with_operator_purpose_and_a_qr_of_the_url(tmp_path: Path) -> None:
    site = _site(tmp_path, sign_languages=["en", "fr"], purpose="capacity_management")
    out = tmp_path / "sign.pdf"
    assert main(["notice", "sign", "--config", str(site), "-o", str(out)]) == 0
    for page, language in ((1, "en"), (2, "fr")):
        text = _text(out, page)
        assert LONG_NAME in text, "the full operator name is printed (wrapped, not cut)"
        assert load_texts(language)["purpose_capacity_management"] in text
        assert load_texts(language)["promise"] in text
        assert "dpo@example.org" in text
        assert _decode_qr(_render_png(out, page)) == URL
    with pytest.raises(subprocess.CalledProcessError):
        _render_png(out, 3)  # no third page


def test_the_first_layer_is_complete_in_each_language_with_free_texts_in_that_language(tmp_path: Path) -> None:
    site = _site(
        tmp_path, sign_languages=["fr", "nb"], country="FR", dpo_contact="DPO, dpo@ville.example",
        purpose_details={"fr": "Alerte les agents quand la place est trop pleine.",
                         "nb": "Varsler vaktene når plassen er for full."},
        legal_basis={"fr": "RGPD art. 6(1)(e), mission d'intérêt public", "nb": "GDPR art. 6 nr. 1 e"},
        recipients=[{"fr": "Le poste de contrôle", "nb": "Kontrollrommet"}],
        covered_area={"fr": "La place du marché", "nb": "Torget"},
        central_retention_days=30,
    )
    out = tmp_path / "sign.pdf"
    assert main(["notice", "sign", "--config", str(site), "-o", str(out)]) == 0
    for page, language, details, area, recipient in (
        (1, "fr", "Alerte les agents quand la place est trop pleine.", "La place du marché", "Le poste de contrôle"),
        (2, "nb", "Varsler vaktene når plassen er for full.", "Torget", "Kontrollrommet"),
    ):
        t = load_texts(language)
        text = _text(out, page)
        for expected in (details, area, recipient, "DPO, dpo@ville.example", t["covered_area"], t["recipients"],
                         t["legal_basis_gdpr"], t["retention"].format(days=30), t["rights_gdpr"],
                         "Commission nationale de l'informatique et des libertés (CNIL)", "https://www.cnil.fr",
                         t["icons_credit"]):
            assert " ".join(expected.split()) in text, (language, expected)
        # One plain line names every flag that can leave (the example enables all of them).
        for flag in ("flag_overcrowding", "flag_abnormal_motion", "flag_counterflow", "flag_camera_tamper"):
            assert t[flag] in text, (language, flag)
        assert "access" in load_texts("en")["rights_gdpr"] and "erasure" in load_texts("en")["rights_gdpr"]


def test_the_authority_follows_the_country_not_the_language_and_the_regime_changes_the_wording(
    tmp_path: Path,
) -> None:
    site = _site(tmp_path, sign_languages=["fr"], country="BE", legal_regime="led")
    out = tmp_path / "sign.pdf"
    assert main(["notice", "sign", "--config", str(site), "-o", str(out)]) == 0
    text, t = _text(out, 1), load_texts("fr")
    assert "Autorité de protection des données" in text and "CNIL" not in text
    assert t["legal_basis_led"].split()[0] in text and " ".join(t["rights_led"].split()) in text


def test_the_qr_decodes_from_an_a4_sign_rendered_at_72_dpi_up_to_the_longest_accepted_url(tmp_path: Path) -> None:
    longest = "https://example.org/cameras.html?" + "site.square." * 12 + "x" * 3  # 180 characters: 1.06 mm
    assert len(longest) == 180 and module_mm_on_a4(longest) >= MIN_MODULE_MM
    for url in (URL, longest):
        out = tmp_path / "sign.pdf"
        assert main(["notice", "sign", "--config", str(_site(tmp_path, public_url=url)), "-o", str(out)]) == 0
        assert _decode_qr(_render_png(out, 1, dpi=72)) == url


def test_a_url_too_long_for_1_mm_modules_or_no_url_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    too_long = "https://example.org/cameras.html?" + "site.square." * 12 + "x" * 5  # 182 characters
    assert module_mm_on_a4(too_long) < MIN_MODULE_MM
    site = _site(tmp_path, public_url=too_long)
    assert main(["notice", "sign", "--config", str(site), "-o", str(tmp_path / "s.pdf")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{site}: transparency.public_url:" in err and "mm" in err
    data = yaml.safe_load(site.read_text())
    del data["transparency"]["public_url"]
    site.write_text(yaml.safe_dump(data, allow_unicode=True))
    assert main(["notice", "sign", "--config", str(site), "-o", str(tmp_path / "s.pdf")]) == 2
    assert f"{site}: transparency.public_url: required" in capsys.readouterr().err
    assert not (tmp_path / "s.pdf").exists()


def test_a_sign_language_without_its_free_text_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = _site(tmp_path, sign_languages=["en", "nb"], purpose_details={"en": "Warns the staff."})
    assert main(["notice", "sign", "--config", str(site), "-o", str(tmp_path / "s.pdf")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(site) in err and "purpose_details" in err and "nb" in err
    site = _site(tmp_path, sign_languages=["en", "nb"], legal_basis="GDPR Art. 6(1)(e)")
    assert main(["config", "validate", str(site)]) == 2
    assert "legal_basis" in capsys.readouterr().err


def test_an_unknown_country_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = _site(tmp_path, country="US")
    assert main(["config", "validate", str(site)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "transparency.country" in err and "'US'" in err


def test_long_operator_names_wrap_inside_the_page_on_a4_and_a3(tmp_path: Path) -> None:
    # 200 characters, the field's limit, ending in a word longer than a line (it must break, not overflow).
    name = LONG_NAME + " " + "Verwaltungsgemeinschaftsdirektionsausschussvorsitzendenstellvertretungsbüro"
    name = name[:200]
    notice = build_notice(load_config(_site(tmp_path, operator_name=name, sign_languages=["fr"])))
    for size in ("A4", "A3"):
        pdf = tmp_path / f"sign-{size}.pdf"
        pdf.write_bytes(render_sign_pdf(notice, ["fr"], size))  # type: ignore[arg-type]
        width, words = _word_boxes(pdf)
        assert len(words) > 50
        overflowing = [w for w, x0, x1 in words if x0 < 0 or x1 > width]
        assert not overflowing, f"{size}: text runs off the page: {overflowing}"
        assert LONG_NAME in _text(pdf, 1)


def test_a_sign_without_an_operator_or_contact_is_refused_with_exit_2_naming_the_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["notice", "sign", "-o", str(tmp_path / "s.pdf")]) == 2
    assert "appliance: error: <defaults>: transparency.operator_name: required" in capsys.readouterr().err
    site = tmp_path / "site.yaml"
    site.write_text("device_id: pole-1\n")
    assert main(["notice", "sign", "--config", str(site), "-o", str(tmp_path / "s.pdf")]) == 2
    assert f"appliance: error: {site}: transparency.operator_name: required" in capsys.readouterr().err
    site.write_text("transparency: {operator_name: City}\n")
    assert main(["notice", "sign", "--config", str(site), "-o", str(tmp_path / "s.pdf")]) == 2
    assert f"appliance: error: {site}: transparency.contact_email: " in capsys.readouterr().err
    assert main(["notice", "sign", "--config", str(site), "-o", str(tmp_path / "s.svg")]) == 2
    assert not (tmp_path / "s.pdf").exists()


def test_the_committed_example_sign_decodes_to_the_example_public_url() -> None:
    example = ROOT / "docs" / "img" / "sign-example.png"
    cfg = load_config(ROOT / "examples" / "site.yaml")
    assert cfg.transparency.public_url, "examples/site.yaml sets transparency.public_url for the example sign"
    assert _decode_qr(example) == cfg.transparency.public_url


def test_dtpr_icons_stand_in_the_left_column_beside_their_items(tmp_path: Path) -> None:
    out = tmp_path / "sign.pdf"
    assert main(["notice", "sign", "--config", str(_site(tmp_path)), "-o", str(out)]) == 0
    image = cv2.imread(str(_render_png(out, 1, dpi=100)))  # BGR
    px_per_mm = 100 / 25.4
    column = image[:, int(14 * px_per_mm):int(23 * px_per_mm)]
    # DTPR's light blue (#36B2E6) of the person-detection and de-identified-video icons.
    blue = (abs(column[:, :, 0].astype(int) - 0xE6) < 30) & (abs(column[:, :, 1].astype(int) - 0xB2) < 30) & (
        abs(column[:, :, 2].astype(int) - 0x36) < 30)
    rows = {int(r / px_per_mm) for r in blue.nonzero()[0]}  # mm from the top with icon pixels
    assert len(rows) >= 2 * 8, "two filled DTPR icons (about 9 mm each) in the icon column"
    text = _text(out, 1)
    assert text.index(load_texts("en")["purpose"]) < text.index(load_texts("en")["covered_area"])
