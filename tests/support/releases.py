"""Helpers for the release and first-boot tests: a device bundle, a release, and running a
command with no network at all (a fresh network namespace: ``unshare -n``, only a loopback that is down)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import List

import pytest

from appliance.cli import main
from appliance.provision.release import ReleaseTarget, build_release

_REAL: dict = {}


def require_unshare_n() -> None:
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode:
        pytest.skip("cannot create a network namespace (unshare -n from util-linux, as root)")


def offline(cmd: List[str]) -> List[str]:
    """``cmd`` in a new network namespace: no interface but a loopback that is down."""
    return ["unshare", "-n", *cmd]


def clean_env() -> dict:
    """The environment for the installed appliance: without PYTHONPATH, which could point at this checkout."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def make_bundle(tmp_path: Path, device: str, broker_url: str = "mqtts://localhost:8883") -> Path:
    """A site PKI and ``device``'s bundle ``<device>.tar.gz``; returns the PKI folder."""
    pki = tmp_path / "pki"
    assert main(["provision", "init", "--dir", str(pki), "--broker-name", "localhost"]) == 0
    assert main(["provision", "device", device, "--dir", str(pki), "--board", "x86-generic", "--source", "sample",
                 "--broker-url", broker_url, "-o", str(tmp_path / "bundles")]) == 0
    return pki


def unpack_bundle(tmp_path: Path, device: str) -> Path:
    with tarfile.open(tmp_path / "bundles" / f"{device}.tar.gz") as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    return tmp_path / "unpacked" / device


def real_release(tmp_path_factory: pytest.TempPathFactory, arch: str = "x86_64", python: str = "3.11") -> Path:
    """``appliance provision release`` for real (wheels from the package index, through pip's
    cache), once per test session and target."""
    key = (arch, python)
    if key not in _REAL:
        out = tmp_path_factory.mktemp(f"release-{arch}-{python}") / "release"
        build_release(out, ReleaseTarget(arch, python))
        _REAL[key] = out
    return _REAL[key]


def release_without(release: Path, dest: Path, file_prefix: str) -> Path:
    """The release in ``dest`` (links to the original files) less the files named ``file_prefix*``."""
    dest.mkdir()
    for f in release.iterdir():
        if not f.name.startswith(file_prefix):
            (dest / f.name).symlink_to(f)
    return dest


def copy_with_one_byte_changed(release: Path, dest: Path, wheel_prefix: str) -> Path:
    """The release in ``dest`` (links to the original files) with one byte of one wheel flipped."""
    dest.mkdir()
    changed = None
    for f in release.iterdir():
        if f.name.startswith(wheel_prefix) and f.suffix == ".whl" and changed is None:
            data = bytearray(f.read_bytes())
            data[len(data) // 2] ^= 0x01
            (dest / f.name).write_bytes(bytes(data))
            changed = f.name
        else:
            (dest / f.name).symlink_to(f)
    assert changed is not None, f"no {wheel_prefix}*.whl in {release}"
    return dest / changed
