"""The printable public sign: the first layer of information (EDPB guidelines 3/2019, section 7).

One page per language: a camera pictogram, the one-sentence promise, who operates it and their DPO,
the purpose and legal basis, the covered area, every flag that leaves, recipients, retention, contact,
rights and where to complain, with DTPR icons beside the items they stand for, and a QR code that
carries only the public page's URL (:mod:`~appliance.transparency.qr`). PDF by fpdf2, QR matrix by
segno (drawn as vector squares, so it stays sharp at any print size); PNG output is the PDF rendered
by poppler's ``pdftoppm``.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import List, Literal, Optional, Sequence

from fpdf import FPDF
from fpdf.errors import FPDFUnicodeEncodingException

from appliance.errors import ApplianceError, InputError
from appliance.transparency import first_layer as fl
from appliance.transparency.i18n import load_texts
from appliance.transparency.notice import Notice
from appliance.transparency.qr import QR_SIDE_A4_MM, check_public_url, qr_matrix

# fontTools logs every font subsetting step at INFO; that is noise on the operator's terminal.
logging.getLogger("fontTools").setLevel(logging.WARNING)

PageSize = Literal["A4", "A3"]
_A4_WIDTH_MM = 210.0
_NAVY = (20, 45, 90)
_YELLOW = (255, 214, 0)
_MARGIN = 14.0
_ICON = 9.0  # mm on A4: a DTPR icon beside its item
_INDENT = _ICON + 3.0
# A Unicode TrueType font when the system has one (Debian's fonts-dejavu-core, installed by
# scripts/setup.sh), so any operator name prints; else the PDF core font, which is Latin-1 only.
_DEJAVU_DIR = Path("/usr/share/fonts/truetype/dejavu")
_UNICODE_FONT = "DejaVuSans"


def _setup_fonts(pdf: FPDF) -> str:
    regular, bold = _DEJAVU_DIR / "DejaVuSans.ttf", _DEJAVU_DIR / "DejaVuSans-Bold.ttf"
    if regular.is_file() and bold.is_file():
        pdf.add_font(_UNICODE_FONT, "", str(regular))
        pdf.add_font(_UNICODE_FONT, "B", str(bold))
        return _UNICODE_FONT
    return "Helvetica"


def _new_pdf(size: str) -> tuple:
    pdf = FPDF(orientation="P", unit="mm", format=size)
    pdf.set_auto_page_break(False)
    pdf.set_margins(_MARGIN, _MARGIN, _MARGIN)
    return pdf, _setup_fonts(pdf)


class _SignPage:
    """Lays out one page at ``scale`` (1.0 = A4); ``font_scale`` shrinks text when it would not fit."""

    def __init__(
        self, pdf: FPDF, family: str, notice: Notice, language: str, scale: float, font_scale: float
    ) -> None:
        self.pdf, self.family, self.notice, self.k, self.f = pdf, family, notice, scale, font_scale
        self.language, self.t = language, load_texts(language)

    def mm(self, v: float) -> float:
        return v * self.k

    def font(self, style: str, size_pt: float) -> None:
        self.pdf.set_font(self.family, style, size_pt * self.k * self.f)

    def para(self, text: str, style: str, size_pt: float, gap_after: float = 2.0, indent: float = 0.0) -> None:
        self.font(style, size_pt)
        line_h = size_pt * self.k * self.f * 0.45
        x = self.mm(_MARGIN + indent)
        self.pdf.set_x(x)
        self.pdf.multi_cell(self.pdf.w - x - self.mm(_MARGIN), line_h, text, align="L", new_x="LMARGIN", new_y="NEXT")
        self.pdf.set_y(self.pdf.get_y() + self.mm(gap_after))

    def item(self, icon: Optional[str], label: str, texts: Sequence[str], size_pt: float = 11.0) -> None:
        """A labelled block of text, with its DTPR icon in the left column."""
        top = self.pdf.get_y()
        if icon is not None:
            self.pdf.image(str(fl.icon_path(icon)), x=self.mm(_MARGIN), y=top, w=self.mm(_ICON), h=self.mm(_ICON))
        self.pdf.set_text_color(*_NAVY)
        self.para(label, "B", 10.5, 0.3, _INDENT)
        self.pdf.set_text_color(0, 0, 0)
        for text in texts:
            self.para(text, "", size_pt, 0.3, _INDENT)
        self.pdf.set_y(max(self.pdf.get_y(), top + self.mm(_ICON)) + self.mm(1.8))

    def pictogram(self, x: float, y: float, size: float) -> None:
        """A video camera on a post (the ISO 7001-style CCTV symbol, drawn, not a bitmap)."""
        p, s = self.pdf, size
        p.set_fill_color(255, 255, 255)
        p.set_draw_color(255, 255, 255)
        p.rect(x + 0.18 * s, y + 0.22 * s, 0.55 * s, 0.30 * s, style="F")  # body
        p.polygon(
            [
                (x + 0.73 * s, y + 0.27 * s),
                (x + 0.92 * s, y + 0.17 * s),
                (x + 0.92 * s, y + 0.57 * s),
                (x + 0.73 * s, y + 0.47 * s),
            ],
            style="F",
        )  # lens hood
        p.rect(x + 0.38 * s, y + 0.52 * s, 0.08 * s, 0.22 * s, style="F")  # mount
        p.rect(x + 0.22 * s, y + 0.74 * s, 0.40 * s, 0.07 * s, style="F")  # base
        p.set_fill_color(*_NAVY)
        p.ellipse(x + 0.27 * s, y + 0.29 * s, 0.16 * s, 0.16 * s, style="F")  # lens

    def qr(self, content: str, x: float, y: float, side: float) -> None:
        matrix = qr_matrix(content)
        n = len(matrix)
        module = side / n
        self.pdf.set_fill_color(0, 0, 0)
        for r, row in enumerate(matrix):
            c = 0
            while c < n:  # one rectangle per horizontal run of dark modules
                if row[c]:
                    start = c
                    while c < n and row[c]:
                        c += 1
                    self.pdf.rect(x + start * module, y + r * module, (c - start) * module, module, style="F")
                else:
                    c += 1

    def render(self) -> bool:
        """Draw the page; False when the text ran into the QR block (caller retries with smaller type)."""
        p, t, n, k = self.pdf, self.t, self.notice, self.k
        p.add_page()
        band_h = self.mm(42)
        p.set_fill_color(*_NAVY)
        p.rect(0, 0, p.w, band_h, style="F")
        self.pictogram(self.mm(_MARGIN), self.mm(5), self.mm(32))
        p.set_text_color(255, 255, 255)
        p.set_xy(self.mm(52), self.mm(9))
        self.font("B", 26)
        p.multi_cell(
            p.w - self.mm(52 + _MARGIN), self.mm(10) * self.f, t["title"], align="L", new_x="LMARGIN", new_y="NEXT"
        )
        p.set_x(self.mm(52))
        self.font("", 13)
        p.multi_cell(
            p.w - self.mm(52 + _MARGIN), self.mm(6) * self.f, t["subtitle"], align="L", new_x="LMARGIN", new_y="NEXT"
        )

        # The promise, on yellow: the one sentence a passer-by should read.
        p.set_text_color(0, 0, 0)
        p.set_y(band_h + self.mm(6))
        self.font("B", 17)
        p.set_fill_color(*_YELLOW)
        p.set_x(self.mm(_MARGIN))
        p.multi_cell(
            p.w - 2 * self.mm(_MARGIN),
            17 * k * self.f * 0.5,
            t["promise"],
            fill=True,
            padding=round(self.mm(3)),
            align="L",
            new_x="LMARGIN",
            new_y="NEXT",
        )
        p.set_y(p.get_y() + self.mm(4))

        lang = self.language
        c = n.controller
        operator = [c.name or "-"] + ([f"{t['dpo']}: {c.dpo}"] if c.dpo else [])
        self.item(None, t["operated_by"], operator, 13)
        purpose = [fl.purpose_text(n, t, lang), f"{fl.legal_basis_label(n, t)}: {fl.legal_basis(n, t, lang)}"]
        self.item("purpose", t["purpose"], purpose)
        if fl.covered_area(n, lang):
            self.item("area", t["covered_area"], [fl.covered_area(n, lang)])
        self.item("flags", t["h_leaves"], [fl.flags_line(n, t)])
        if n.recipients:
            self.item("recipients", t["recipients"], ["; ".join(fl.recipients(n, lang))])
        self.item("retention", t["h_retention"], fl.retention_lines(n, t))
        contact = [x for x in (c.email, c.phone, c.url) if x]
        self.item(None, t["contact"], contact, 12)
        self.para(fl.rights_text(n, t), "", 9.5, 0.8)
        self.para(fl.authority_line(n, t), "", 9.5, 0)
        text_bottom = p.get_y()

        # QR block at the bottom: code on the left, caption (and URL) beside it.
        side = self.mm(QR_SIDE_A4_MM)
        qr_y = p.h - self.mm(_MARGIN) - side
        url = check_public_url(n.public_url)
        self.qr(url, self.mm(_MARGIN), qr_y, side)
        cap_x = self.mm(_MARGIN) + side + self.mm(6)
        cap_w = p.w - cap_x - self.mm(_MARGIN)
        p.set_xy(cap_x, qr_y + self.mm(2))
        self.font("B", 12)
        p.multi_cell(cap_w, self.mm(5.5) * self.f, t["qr_url"], align="L", new_x="LEFT", new_y="NEXT")
        self.font("", 12)
        p.multi_cell(cap_w, self.mm(5.5) * self.f, url, align="L", new_x="LEFT", new_y="NEXT")
        p.set_y(p.get_y() + self.mm(3))
        p.set_x(cap_x)
        self.font("", 8)
        p.set_text_color(90, 90, 90)
        p.multi_cell(
            cap_w,
            self.mm(3.6) * self.f,
            f"{t['device']}: {n.device_id}  ·  notice {_short(n)}\n{t['icons_credit']}",
            align="L",
            new_x="LEFT",
            new_y="NEXT",
        )
        return text_bottom <= qr_y - self.mm(3)


def _short(notice: Notice) -> str:
    from appliance.transparency.notice import notice_hash

    return notice_hash(notice)[:12]


def render_sign_pdf(notice: Notice, languages: Sequence[str], size: PageSize = "A4") -> bytes:
    """The sign as PDF bytes, one page per language (each shrunk only as far as its text needs)."""
    pdf, family = _new_pdf(size)
    pdf.set_title("Crowd counting camera: public notice")
    pdf.set_creator("crowd-appliance")
    scale = pdf.w / _A4_WIDTH_MM
    for language in languages:
        if language not in notice.languages:
            raise InputError(
                f"{language!r} is not one of the sign languages the free texts are written in "
                f"({', '.join(notice.languages)})",
                field="transparency.sign_languages",
            )
        for font_scale in (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5):
            trial, _ = _new_pdf(size)
            if _draw(trial, family, notice, language, scale, font_scale):
                break
        else:
            raise InputError(
                "the sign's text does not fit even at half size; shorten the operator texts", field="transparency"
            )
        _draw(pdf, family, notice, language, scale, font_scale)
    return bytes(pdf.output())


def _draw(pdf: FPDF, family: str, notice: Notice, language: str, scale: float, font_scale: float) -> bool:
    try:
        return _SignPage(pdf, family, notice, language, scale, font_scale).render()
    except FPDFUnicodeEncodingException:
        raise InputError(
            "a character cannot be printed with the PDF core font (Latin-1 only); install fonts-dejavu-core",
            field="transparency",
        ) from None


def pdf_to_png(pdf_bytes: bytes, output: Path, dpi: int = 150, page: int = 1) -> None:
    """Render one page with poppler's pdftoppm (installed by scripts/setup.sh)."""
    exe = shutil.which("pdftoppm")
    if exe is None:
        raise ApplianceError("PNG output needs pdftoppm (apt-get install poppler-utils); or write a .pdf")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "sign.pdf"
        src.write_bytes(pdf_bytes)
        stem = Path(tmp) / "page"
        subprocess.run(
            [exe, "-png", "-r", str(dpi), "-f", str(page), "-l", str(page), "-singlefile", str(src), str(stem)],
            check=True,
            capture_output=True,
        )
        shutil.copyfile(stem.with_suffix(".png"), output)


def check_sign_inputs(notice: Notice, config_label: Optional[str] = None) -> None:
    """What a sign cannot do without (exit 2, naming the config and field): operator, contact, public URL."""
    if notice.controller.name is None:
        raise InputError(
            "required to print a sign (who operates the camera)", path=config_label, field="transparency.operator_name"
        )
    c = notice.controller
    if not (c.email or c.phone or c.url):
        raise InputError(
            "a sign needs a way to reach the operator (contact_email, contact_phone or contact_url)",
            path=config_label,
            field="transparency.contact_email",
        )
    check_public_url(notice.public_url, config_label)


def write_sign(
    notice: Notice,
    output: Path,
    languages: List[str],
    size: PageSize = "A4",
    dpi: Optional[int] = None,
    config_label: Optional[str] = None,
) -> List[str]:
    """Write ``output`` (.pdf: every language, one page each; .png: the first language). Returns the languages.

    ``config_label`` names the config the notice came from (see config.loader.config_label), so a
    missing operator or contact is reported against the file the user has to edit.
    """
    suffix = output.suffix.lower()
    if suffix not in (".pdf", ".png"):
        raise InputError("output must end in .pdf or .png", path=str(output))
    check_sign_inputs(notice, config_label)
    if suffix == ".png":
        languages = languages[:1]
    data = render_sign_pdf(notice, languages, size)
    if suffix == ".pdf":
        output.write_bytes(data)
    else:
        pdf_to_png(data, output, dpi or 150)
    return languages
