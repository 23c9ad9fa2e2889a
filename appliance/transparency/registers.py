"""``appliance notice registers -o DIR``: the entries public registers ingest, from one config.

Written from the same notice as the sign and the page (so they carry its hash and the config hash),
never by hand: the Dutch Algoritmeregister, a UK ATRS record, DTPR datachains and a WeCity
sensor-register entry. tests/test_transparency_registers.py validates each against its published
schema or field list (vendored under tests/data/registers/).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

from appliance.errors import InputError
from appliance.transparency.notice import build_notice
from appliance.transparency.notice_model import Notice
from appliance.transparency.registers_atrs import atrs
from appliance.transparency.registers_dtpr import dtpr
from appliance.transparency.registers_nl import algoritmeregister, sensorregister

if TYPE_CHECKING:
    from appliance.config import ApplianceConfig

# Where the project's source is published (publiccode.yml's url; the Algoritmeregister's publiccode).
# The project has no public address yet: the same reserved .invalid domain as the schemas' $id.
PROJECT_URL = "https://crowd-appliance.invalid/crowd-appliance.git"
REGISTERS_DIR = "registers"


def register_entries(cfg: ApplianceConfig, notice: Notice) -> Dict[str, Dict[str, Any]]:
    """File name -> entry, for every register."""
    makers: Dict[str, Callable[[], Dict[str, Any]]] = {
        "algoritmeregister.json": lambda: algoritmeregister(notice, PROJECT_URL),
        "atrs.json": lambda: atrs(notice),
        "dtpr.json": lambda: dtpr(notice, cfg.privacy.min_count > 0, cfg.privacy.noise_epsilon is not None),
        "sensorregister.json": lambda: sensorregister(notice),
    }
    return {name: make() for name, make in makers.items()}


def build_registers(cfg: ApplianceConfig, config_label: Optional[str] = None) -> Dict[str, Dict[str, Any]]:
    """Every entry, or bad input (exit 2) naming the config and field, before anything is written."""
    try:
        return register_entries(cfg, build_notice(cfg))
    except InputError as e:
        if e.path is not None or config_label is None:
            raise
        raise InputError(str(e).split(": ", 1)[-1], path=config_label, field=e.field) from None


def write_entries(entries: Dict[str, Dict[str, Any]], directory: Path) -> List[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, entry in entries.items():
        path = directory / name
        path.write_text(json.dumps(entry, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        out.append(path)
    return out


def write_registers(cfg: ApplianceConfig, directory: Path, config_label: Optional[str] = None) -> List[Path]:
    return write_entries(build_registers(cfg, config_label), directory)
