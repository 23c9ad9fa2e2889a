"""First boot from a Raspberry Pi OS card: the technician copies ``crowd-appliance/release`` (from
``appliance provision release``) and ``crowd-appliance/bundle/<id>.tar.gz`` onto the FAT boot
partition; ``firstboot.sh`` (run once from the kernel command line) installs and enables
``crowd-appliance-firstboot.service``, which installs both, moves the device key off the FAT
partition, runs the self-test and starts the service. Tested against a ``--root`` tree."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from support.releases import clean_env, make_bundle, offline, require_unshare_n
from support.repo import REPO
from support.wheelhouse import build_local_release

UNIT_NAME = "crowd-appliance-firstboot.service"
UNIT = REPO / "systemd" / UNIT_NAME
SCRIPT = REPO / "appliance" / "provision" / "firstboot.sh"
DEVICE = "cam-firstboot-1"
PI_CMDLINE = ("console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes "
              "rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot")
OUR_HOOK = ("systemd.run=/boot/firmware/crowd-appliance/release/firstboot.sh systemd.run_success_action=reboot "
            "systemd.unit=kernel-command-line.target")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def local_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_local_release(REPO, tmp_path_factory.mktemp("local-release"))


def card(root: Path, release: Path) -> Path:
    """``root/boot/firmware`` as the laptop left it: the release folder and a cmdline.txt with our hook."""
    boot = root / "boot" / "firmware"
    (boot / "crowd-appliance").mkdir(parents=True)
    (boot / "crowd-appliance" / "release").symlink_to(release)
    (boot / "cmdline.txt").write_text(f"{PI_CMDLINE} {OUR_HOOK}\n")
    return boot


def firstboot(root: Path, *args: str) -> subprocess.CompletedProcess:
    script = root / "boot" / "firmware" / "crowd-appliance" / "release" / "firstboot.sh"
    return subprocess.run(offline(["bash", str(script), "--root", str(root), *args]), capture_output=True,
                          text=True, timeout=900, cwd=root, env=clean_env())


def test_the_first_boot_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (Debian package 'systemd'; scripts/setup.sh installs it)")
    root = tmp_path / "root"
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    shutil.copy(UNIT, units / UNIT_NAME)
    bash = root / "usr" / "bin" / "bash"
    bash.parent.mkdir(parents=True)
    bash.write_text("#!/bin/sh\n")
    bash.chmod(0o755)
    shutil.copytree("/usr/lib/systemd/system", root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    proc = subprocess.run([analyze, "verify", f"--root={root}", UNIT_NAME], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and UNIT_NAME not in proc.stderr, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("before", "after"),
    [(f"{PI_CMDLINE} {OUR_HOOK}", PI_CMDLINE),
     # Raspberry Pi Imager's own first-run hook stays, with the words it needs to boot once.
     (f"{PI_CMDLINE} systemd.run=/boot/firmware/firstrun.sh {OUR_HOOK}",
      f"{PI_CMDLINE} systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot "
      "systemd.unit=kernel-command-line.target")],
)
def test_the_kernel_command_line_hook_enables_the_unit_and_removes_itself(
    tmp_path: Path, before: str, after: str
) -> None:
    release = tmp_path / "release"
    release.mkdir()
    shutil.copy(SCRIPT, release / SCRIPT.name)
    shutil.copy(UNIT, release / UNIT_NAME)
    root = tmp_path / "root"
    boot = card(root, release)
    (boot / "cmdline.txt").write_text(before + "\n")
    proc = subprocess.run(["bash", str(release / SCRIPT.name), "--root", str(root)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (boot / "cmdline.txt").read_text() == after + "\n"
    units = root / "etc" / "systemd" / "system"
    assert (units / UNIT_NAME).read_bytes() == UNIT.read_bytes()
    wants = units / "multi-user.target.wants" / UNIT_NAME
    assert wants.is_symlink() and wants.resolve() == (units / UNIT_NAME).resolve()
    # Booting again with the hook already gone changes nothing.
    again = subprocess.run(["bash", str(release / SCRIPT.name), "--root", str(root)], capture_output=True, text=True)
    assert again.returncode == 0 and (boot / "cmdline.txt").read_text() == after + "\n"


def no_key_on_the_card(boot: Path, key: bytes) -> None:
    body = key.split(b"-----")[2].strip()[:40]  # a piece of the base64 body, as a file would hold it
    for f in boot.rglob("*"):
        if f.is_file() and not f.is_symlink():
            assert body not in f.read_bytes(), f


@pytest.mark.slow
def test_first_boot_installs_moves_the_key_off_the_card_and_runs_once(tmp_path: Path, local_release: Path) -> None:
    require_unshare_n()
    pki = make_bundle(tmp_path, DEVICE)
    root = tmp_path / "root"
    boot = card(root, local_release)
    (boot / "crowd-appliance" / "bundle").mkdir()
    shutil.copy(tmp_path / "bundles" / f"{DEVICE}.tar.gz", boot / "crowd-appliance" / "bundle")
    # A second name for the bundle file's blocks: what a deleted file's clusters would still hold.
    witness = tmp_path / "witness"
    os.link(boot / "crowd-appliance" / "bundle" / f"{DEVICE}.tar.gz", witness)
    size = witness.stat().st_size

    proc = firstboot(root, "--install")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert witness.read_bytes() == bytes(size)  # overwritten with zeros before it was deleted
    key = (pki / "devices" / DEVICE / f"{DEVICE}.key").read_bytes()
    installed_key = root / "etc" / "crowd-appliance" / "tls" / f"{DEVICE}.key"
    assert installed_key.read_bytes() == key and mode(installed_key) == 0o600
    assert not (boot / "crowd-appliance" / "bundle").exists()
    assert not (root / "var" / "lib" / "crowd-appliance-firstboot").exists()
    no_key_on_the_card(boot, key)
    # The self-test ran (its verdict is in the log on the card, for a laptop to read).
    log = (boot / "crowd-appliance" / "firstboot.log").read_text()
    assert f"firstboot: bundle {DEVICE}.tar.gz moved off the boot partition" in log
    assert "[PASS] models" in log and "--root: appliance.service not started" in log
    # The service user reads the venv although first boot keeps its own files private (umask 077).
    venv = (root / "opt" / "crowd-appliance" / ".venv").resolve()
    package = next(venv.glob("lib/python3.*/site-packages/appliance/__init__.py"))
    assert mode(package) == 0o644 and mode(venv / "bin" / "appliance") == 0o755

    # Nothing left to do: the unit's conditions are false, and the script itself says so.
    again = firstboot(root, "--install")
    assert again.returncode == 0 and "nothing to install" in again.stdout

    # A power cut while the bundle was being staged: the bundle is still on the card (this time
    # unpacked on the laptop), a partial copy on the root file system. The next boot finishes
    # (the release is already installed).
    (boot / "crowd-appliance" / "bundle").mkdir()
    subprocess.run(["tar", "-xzf", str(tmp_path / "bundles" / f"{DEVICE}.tar.gz"), "-C",
                    str(boot / "crowd-appliance" / "bundle")], check=True)
    partial = root / "var" / "lib" / "crowd-appliance-firstboot" / "unpack" / DEVICE
    partial.mkdir(parents=True)
    (partial / "site.yaml").write_text("device_id: cam-fi")
    proc = firstboot(root, "--install")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is already installed" in proc.stdout
    assert f"firstboot: bundle {DEVICE} moved off the boot partition" in proc.stdout
    assert not (boot / "crowd-appliance" / "bundle").exists()
    no_key_on_the_card(boot, key)
    assert not (root / "var" / "lib" / "crowd-appliance-firstboot").exists()


@pytest.mark.slow
def test_first_boot_after_a_power_cut_mid_install_finishes_the_job(tmp_path: Path, local_release: Path) -> None:
    """The bundle was already moved off the card and pip was cut off half way through the venv."""
    require_unshare_n()
    pki = make_bundle(tmp_path, DEVICE)
    root = tmp_path / "root"
    boot = card(root, local_release)
    stage = root / "var" / "lib" / "crowd-appliance-firstboot" / "bundle"
    stage.mkdir(parents=True)
    subprocess.run(["tar", "-xzf", str(tmp_path / "bundles" / f"{DEVICE}.tar.gz"), "-C", str(stage)], check=True)
    release_id = hashlib.sha256((local_release / "requirements.lock").read_bytes()).hexdigest()[:16]
    half = root / "opt" / "crowd-appliance" / "venvs" / release_id
    (half / "lib").mkdir(parents=True)
    (half / "lib" / "half-written.py").write_text("import nump")

    proc = firstboot(root, "--install")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (half / "lib" / "half-written.py").exists() and (half / ".complete").exists()
    assert (root / "etc" / "crowd-appliance" / "tls" / f"{DEVICE}.key").read_bytes() == (
        pki / "devices" / DEVICE / f"{DEVICE}.key").read_bytes()
    assert not stage.exists()
    verify = subprocess.run(offline([str(root / "opt/crowd-appliance/.venv/bin/appliance"), "models", "verify"]),
                            capture_output=True, text=True, timeout=300, cwd=tmp_path, env=clean_env())
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "[PASS] models" in (boot / "crowd-appliance" / "firstboot.log").read_text()


def test_the_kernel_command_line_hook_never_leaves_the_board_stuck_in_it(tmp_path: Path) -> None:
    """A release folder without the unit (copied in part): the hook still comes off cmdline.txt
    and the script ends with 0, so the board reboots into its normal system; the card's log says why."""
    release = tmp_path / "release"
    release.mkdir()
    shutil.copy(SCRIPT, release / SCRIPT.name)
    root = tmp_path / "root"
    boot = card(root, release)
    proc = subprocess.run(["bash", str(release / SCRIPT.name), "--root", str(root)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (boot / "cmdline.txt").read_text() == PI_CMDLINE + "\n"
    assert not (root / "etc" / "systemd" / "system" / UNIT_NAME).exists()
    assert f"error: enabling {UNIT_NAME} failed" in (boot / "crowd-appliance" / "firstboot.log").read_text()
