"""``appliance notice page``: the folder the operator publishes at ``transparency.public_url``.

One HTML page per sign language, the notice JSON (exactly the retained payload, so its sha256 is
the notice hash), the printable sign and, when available, the register entries, all from one config.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional

from appliance.transparency.notice import build_notice, notice_payload
from appliance.transparency.page import write_pages
from appliance.transparency.page_history import read_history
from appliance.transparency.registers import REGISTERS_DIR, build_registers, write_entries
from appliance.transparency.sign import check_sign_inputs, render_sign_pdf

if TYPE_CHECKING:
    from appliance.config import ApplianceConfig

NOTICE_FILE = "notice.json"
SIGN_FILE = "sign.pdf"


def write_public_site(
    cfg: ApplianceConfig, directory: Path, history: Optional[Path] = None, config_label: Optional[str] = None
) -> List[Path]:
    """Write the page folder; returns the files written. Bad input (exit 2) is found before anything is written."""
    notice = build_notice(cfg)
    windows = read_history(history) if history is not None else None
    entries = build_registers(cfg, config_label)
    check_sign_inputs(notice, config_label)
    sign = render_sign_pdf(notice, notice.languages)
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / SIGN_FILE]
    written[0].write_bytes(sign)
    (directory / NOTICE_FILE).write_bytes(notice_payload(notice))
    written.append(directory / NOTICE_FILE)
    registers = write_entries(entries, directory / REGISTERS_DIR)
    written += registers
    files: Dict[str, str] = {"file_notice": NOTICE_FILE, "file_sign": SIGN_FILE}
    files.update({f"register:{p.name}": f"{REGISTERS_DIR}/{p.name}" for p in registers})
    written += write_pages(notice, directory, files, windows)
    return written
