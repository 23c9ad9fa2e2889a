"""An offline, hash-pinned release folder for one target (CPU architecture + Python version):

    <dir>/*.whl                           the appliance's wheel (built from the checkout) and every
                                          runtime dependency's wheel for the target, nothing else
    <dir>/requirements.lock               one ``name==version --hash=sha256:...`` line per wheel
    <dir>/release.json                    the target, for install.sh to check before touching anything
    <dir>/sbom.cdx.json                   CycloneDX SBOM: the wheels and the ONNX models, with sha256
    <dir>/firstboot.sh                    first boot from a Raspberry Pi OS boot partition
    <dir>/crowd-appliance-firstboot.service

Built on any Linux or macOS laptop with network access: the dependencies are the published
manylinux wheels for the target, fetched with pip's platform options, so an aarch64 release for a
Raspberry Pi is built on an x86 machine. The device installs it with ``install.sh --release DIR``
and no package index at all.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path
from typing import List, Optional

import yaml

from appliance.errors import ApplianceError, InputError
from appliance.models.manifest import Manifest, sha256_bytes
from appliance.provision.lock import LOCK_NAME, PinnedWheel, pin_wheels, render_lock, wheel_name_version
from appliance.provision.sbom import APPLIANCE, render_sbom
from appliance.resources import systemd_dir

ARCHES = ("x86_64", "aarch64")
# Raspberry Pi OS Bookworm (Debian 12) ships Python 3.11; Trixie (Debian 13) 3.13.
DEFAULT_PYTHON = "3.11"
# The newest glibc a wheel may need: 2.31 (Debian 11, Ubuntu 20.04 / JetPack 5) is the oldest C
# library among the supported boards, so one release runs on all of them.
MAX_GLIBC_MINOR = 31
FIRSTBOOT_SCRIPT = Path(__file__).resolve().parent / "firstboot.sh"
FIRSTBOOT_UNIT = "crowd-appliance-firstboot.service"
RELEASE_JSON = "release.json"
SBOM_NAME = "sbom.cdx.json"


class ReleaseBuildError(ApplianceError):
    """pip could not build the appliance's wheel or fetch a dependency (no network, no wheel for the target)."""


@dataclass(frozen=True)
class ReleaseTarget:
    """What the wheels are for: ``uname -m`` of the board and its Python's ``X.Y``."""

    arch: str
    python: str

    def __post_init__(self) -> None:
        if self.arch not in ARCHES:
            raise InputError(f"unknown architecture {self.arch!r} (one of: {', '.join(ARCHES)})", field="--arch")
        parts = self.python.split(".")
        if len(parts) != 2 or not all(p.isdigit() for p in parts) or (int(parts[0]), int(parts[1])) < (3, 9):
            raise InputError(f"{self.python!r} is not a Python version X.Y, 3.9 or newer", field="--python")

    @property
    def name(self) -> str:
        return f"{self.arch}-cp{self.python.replace('.', '')}"

    def platform_tags(self) -> List[str]:
        """The manylinux tags pip may pick wheels from (pip takes each ``--platform`` literally)."""
        tags = [f"manylinux_2_{minor}_{self.arch}" for minor in range(MAX_GLIBC_MINOR, 16, -1)]
        return [*tags, f"manylinux2014_{self.arch}"]


def default_checkout() -> Path:
    return Path(__file__).resolve().parent.parent.parent


def _pip(args: List[str], what: str) -> None:
    # The host's pip constraints (PIP_CONSTRAINT, a global constraints file) are for the host's own
    # environment, not for a board's: the release resolves against pyproject.toml alone.
    env = {**os.environ, "PIP_CONSTRAINT": "", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    proc = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip() and "WARNING" not in ln]
        last = lines[-1].strip() if lines else f"pip exited {proc.returncode}"
        raise ReleaseBuildError(f"{what} failed (no network, or no wheel for the target?): {last}")


def build_appliance_wheel(checkout: Path, dest: Path) -> Path:
    if not (checkout / "pyproject.toml").is_file() or not (checkout / "appliance" / "__init__.py").is_file():
        raise InputError("not a crowd-appliance checkout (no pyproject.toml beside appliance/)", path=str(checkout))
    _pip(["wheel", "-q", "--no-deps", "-w", str(dest), str(checkout)], "building the appliance's wheel")
    built = [p for p in dest.glob("*.whl") if wheel_name_version(p.name)[0] == APPLIANCE]
    if len(built) != 1:
        raise ReleaseBuildError(f"building the appliance's wheel gave {len(built)} wheels in {dest}")
    return built[0]


def runtime_requirements(wheel: Path) -> List[str]:
    """The wheel's ``Requires-Dist`` lines that apply without extras (environment markers stay for pip)."""
    with zipfile.ZipFile(wheel) as whl:
        meta_name = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(whl.read(meta_name).decode("utf-8"))
    return [req for req in meta.get_all("Requires-Dist") or [] if "extra ==" not in req]


def models_in_wheel(wheel: Path) -> Manifest:
    """The model manifest the appliance's wheel carries, every model file in it checked against its sha256."""
    prefix = "appliance/model_files/"
    with zipfile.ZipFile(wheel) as whl:
        manifest = Manifest.model_validate(yaml.safe_load(whl.read(prefix + "manifest.yaml")))
        for entry in manifest.models:
            for rel, expected in entry.files():
                try:
                    data = whl.read(prefix + rel)
                except KeyError:
                    raise InputError(f"model file {rel} missing from the wheel", path=str(wheel)) from None
                if sha256_bytes(data) != expected:
                    raise InputError(f"model file {rel} does not match its sha256 in the manifest", path=str(wheel))
    return manifest


def download_dependencies(requirements: List[str], target: ReleaseTarget, dest: Path) -> None:
    platforms = [arg for tag in target.platform_tags() for arg in ("--platform", tag)]
    _pip(["download", "-q", "--only-binary=:all:", *platforms, "--python-version", target.python,
          "--implementation", "cp", "-d", str(dest), *requirements],
         f"fetching the {target.name} wheels")


def finish_release(folder: Path, target: ReleaseTarget) -> List[PinnedWheel]:
    """Lock, SBOM, target description and first-boot files for a folder that holds exactly the release's wheels."""
    pins = pin_wheels(folder)
    own = [p for p in pins if p.name == APPLIANCE]
    if len(own) != 1:
        raise InputError(f"a release needs exactly one {APPLIANCE} wheel, found {len(own)}", path=str(folder))
    header = (f"crowd-appliance {own[0].version} release for {target.name}: install with\n"
              f"  install.sh --release DIR   (pip install --no-index --require-hashes -r {LOCK_NAME})")
    (folder / LOCK_NAME).write_text(render_lock(pins, header), encoding="utf-8")
    manifest = models_in_wheel(folder / own[0].filename)
    sbom = render_sbom(pins, manifest, appliance_version=own[0].version, target=target.name)
    (folder / SBOM_NAME).write_text(json.dumps(sbom, indent=2) + "\n", encoding="utf-8")
    meta = {"format": 1, "appliance_version": own[0].version, "arch": target.arch, "python": target.python,
            "platform_tags": target.platform_tags()}
    (folder / RELEASE_JSON).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    shutil.copyfile(FIRSTBOOT_SCRIPT, folder / FIRSTBOOT_SCRIPT.name)
    (folder / FIRSTBOOT_SCRIPT.name).chmod(0o755)
    shutil.copyfile(systemd_dir() / FIRSTBOOT_UNIT, folder / FIRSTBOOT_UNIT)
    return pins


def build_release(out: Path, target: ReleaseTarget, checkout: Optional[Path] = None) -> List[PinnedWheel]:
    """Write the release into ``out`` (new or empty); a failed build leaves nothing there."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError("exists and is not an empty folder; give a new one", path=str(out))
    work = out.parent / f".{out.name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        wheel = build_appliance_wheel(checkout or default_checkout(), work)
        download_dependencies(runtime_requirements(wheel), target, work)
        pins = finish_release(work, target)
        if out.exists():
            out.rmdir()
        work.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return pins
