"""Batch provisioning: a CSV of devices (``id,board,source,zones``) for an integrator rolling out
many cameras; each row names its own camera (there is no default source). Every row is checked
before the first key is minted, so a bad row 37 does not leave a half-provisioned rollout behind."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import List

from appliance.config import load_board_profile
from appliance.errors import InputError
from appliance.provision.bundle import DeviceSpec
from appliance.provision.pki import check_id
from appliance.provision.site import check_source

COLUMNS = ("id", "board", "source", "zones")
REQUIRED = ("id", "board", "source")


def read_devices_csv(path: Path) -> List[DeviceSpec]:
    """Rows of ``path``; a zones path is relative to the CSV's folder and may be empty (no zones)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", path=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=str(path)) from None
    reader = csv.DictReader(line for line in text.splitlines() if line.strip() and not line.startswith("#"))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InputError(f"missing column {missing[0]!r} (header must be: {','.join(COLUMNS)})", path=str(path))
    specs: List[DeviceSpec] = []
    seen = set()
    for lineno, row in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        where = f"line {lineno}"
        if not row.get("id") or not row.get("board"):
            raise InputError("id and board are required", path=str(path), field=where)
        try:  # here, so the error names this file and line rather than the site config built from it
            check_id(row["id"])
            load_board_profile(row["board"])
            check_source(row.get("source") or None, field="source")
        except InputError as exc:
            raise InputError(str(exc), path=str(path), field=where) from None
        if row["id"] in seen:
            raise InputError(f"duplicate device id {row['id']!r}", path=str(path), field=where)
        seen.add(row["id"])
        zones = row.get("zones") or ""
        zones_file = (path.parent / zones) if zones else None
        if zones_file is not None and not zones_file.is_file():
            raise InputError(f"zones file not found: {zones_file}", path=str(path), field=where)
        specs.append(DeviceSpec(row["id"], row["board"], row["source"], zones_file))
    if not specs:
        raise InputError("no devices listed", path=str(path))
    return specs
