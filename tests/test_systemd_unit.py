"""The shipped systemd unit, checked with systemd's own tools (Debian's ``systemd`` package).

``systemd-analyze security --offline=yes`` scores the sandbox (0 = locked down, 10 = exposed) and
``systemd-analyze verify`` parses the unit as systemd would; both also with each board drop-in
from ``systemd/boards/`` installed, as docs/technician.md tells the technician to.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "appliance.service"
BOARD_DROPINS = sorted((ROOT / "systemd" / "boards").glob("*.conf"))
EXEC_START = "/opt/crowd-appliance/.venv/bin/appliance"
MAX_EXPOSURE = 2.0

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason="systemd-analyze not installed (Debian package 'systemd'; scripts/setup.sh installs it)",
)


def install_root(tmp_path: Path, dropin: Optional[Path] = None) -> Path:
    """A file-system root with the unit installed as docs/technician.md says, for ``--root``."""
    root = tmp_path / "root"
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    shutil.copy(UNIT, units / "appliance.service")
    if dropin is not None:
        (units / "appliance.service.d").mkdir()
        shutil.copy(dropin, units / "appliance.service.d" / "board.conf")
    # verify checks that ExecStart= is executable and that the targets the unit depends on exist.
    exe = root / EXEC_START.lstrip("/")
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    system_units = Path("/usr/lib/systemd/system")
    if system_units.is_dir():
        shutil.copytree(system_units, root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    return root


def analyze(*args: str) -> subprocess.CompletedProcess:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run([SYSTEMD_ANALYZE, *args], capture_output=True, text=True, timeout=120)


def exposure(root: Path) -> float:
    proc = analyze("security", "--offline=yes", f"--root={root}", "appliance.service")
    found = re.search(r"Overall exposure level for appliance\.service: (\d+\.\d+)", proc.stdout)
    assert found, proc.stdout + proc.stderr
    return float(found.group(1))


def settings(text: str) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_the_shipped_unit_scores_at_most_2_0_in_systemd_analyze_security(tmp_path: Path) -> None:
    # The unit file itself, exactly as shipped, not a copy adjusted for this machine.
    proc = analyze("security", "--offline=yes", str(UNIT))
    found = re.search(r"Overall exposure level for appliance\.service: (\d+\.\d+)", proc.stdout)
    assert found, proc.stdout + proc.stderr
    score = float(found.group(1))
    failed = "\n".join(line for line in proc.stdout.splitlines() if line.startswith("✗"))
    assert score <= MAX_EXPOSURE, f"exposure {score} > {MAX_EXPOSURE}; failed checks:\n{failed}"


@pytest.mark.parametrize("dropin", BOARD_DROPINS, ids=[p.stem for p in BOARD_DROPINS])
def test_each_board_dropin_keeps_the_unit_at_most_2_0(tmp_path: Path, dropin: Path) -> None:
    score = exposure(install_root(tmp_path, dropin))
    assert score <= MAX_EXPOSURE, f"{dropin.name}: exposure {score} > {MAX_EXPOSURE}"


@pytest.mark.parametrize("dropin", [None, *BOARD_DROPINS], ids=["plain", *[p.stem for p in BOARD_DROPINS]])
def test_systemd_accepts_the_unit_without_a_warning(tmp_path: Path, dropin: Optional[Path]) -> None:
    proc = analyze("verify", f"--root={install_root(tmp_path, dropin)}", "appliance.service")
    # verify exits 0 on unknown keys and bad values, it only prints them: any output is a finding.
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc.stdout + proc.stderr


def test_verify_reports_a_broken_unit(tmp_path: Path) -> None:
    # The check above can fail: a typo in a value is reported.
    root = install_root(tmp_path)
    installed = root / "etc" / "systemd" / "system" / "appliance.service"
    installed.write_text(installed.read_text().replace("Type=notify", "Type=notfy"))
    proc = analyze("verify", f"--root={root}", "appliance.service")
    assert "notfy" in proc.stdout + proc.stderr


def test_the_unit_uses_the_watchdog_and_does_not_crash_loop_on_a_bad_config() -> None:
    unit = settings(UNIT.read_text())
    assert unit["Type"] == ["notify"] and unit["NotifyAccess"] == ["main"]
    assert float(unit["WatchdogSec"][0]) > 0
    assert unit["Restart"] == ["on-failure"] and unit["RestartPreventExitStatus"] == ["2 3"]
    assert unit["ExecStart"][0].split()[0] == EXEC_START
    # Raw frames are in memory: no core dump may write them to disk.
    assert unit["LimitCORE"] == ["0"]
