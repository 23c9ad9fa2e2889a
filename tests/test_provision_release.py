"""``appliance provision release`` writes an offline, hash-pinned release folder (the appliance's
wheel, every runtime dependency's wheel for one target, ``requirements.lock`` with a sha256 per
wheel, a CycloneDX SBOM), and a bundle's ``install.sh --release DIR`` installs exactly that with
no package index: here inside a network namespace with no network at all."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from support.releases import (
    clean_env,
    copy_with_one_byte_changed,
    make_bundle,
    offline,
    real_release,
    release_without,
    require_unshare_n,
    unpack_bundle,
)
from support.repo import REPO
from support.wheelhouse import build_local_release

from appliance.cli import main
from appliance.models.manifest import load_manifest
from appliance.provision.lock import read_lock
from appliance.provision.release import ReleaseTarget
from appliance.resources import models_dir

DEVICE = "cam-release-1"


@pytest.fixture(scope="module")
def local_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_local_release(REPO, tmp_path_factory.mktemp("local-release"))


def install(bundle_dir: Path, *args: str, no_network: bool = True) -> subprocess.CompletedProcess:
    cmd = ["bash", str(bundle_dir / "install.sh"), *args]
    return subprocess.run(offline(cmd) if no_network else cmd, capture_output=True, text=True, timeout=900,
                          cwd=bundle_dir.parent, env=clean_env())


def files_under(root: Path) -> list:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_install_without_a_release_and_without_network_fails_at_once_with_one_line(tmp_path: Path) -> None:
    require_unshare_n()
    make_bundle(tmp_path, DEVICE)
    bundle_dir = unpack_bundle(tmp_path, DEVICE)
    root = tmp_path / "root"
    root.mkdir()
    started = time.monotonic()
    proc = install(bundle_dir, "--root", str(root))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stdout == ""
    assert proc.stderr.startswith("install.sh: error: no --release DIR: build one on a laptop with "
                                  "'appliance provision release -o DIR --arch ")
    assert files_under(root) == []
    # Fails before any network wait; a generous bound, only to tell "at once" from "timed out on an index".
    assert time.monotonic() - started < 60


def test_release_target_is_checked() -> None:
    assert ReleaseTarget("aarch64", "3.11").name == "aarch64-cp311"
    assert ReleaseTarget("aarch64", "3.13").platform_tags()[-1] == "manylinux2014_aarch64"
    assert all(t.endswith("_aarch64") for t in ReleaseTarget("aarch64", "3.11").platform_tags())


@pytest.mark.parametrize(
    ("args", "expected"),
    [(["--python", "3"], "--python: '3' is not a Python version X.Y, 3.9 or newer"),
     (["--python", "2.7"], "--python: '2.7' is not a Python version X.Y, 3.9 or newer")],
)
def test_release_command_rejects_a_bad_target_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list, expected: str
) -> None:
    assert main(["provision", "release", "-o", str(tmp_path / "r"), *args]) == 2
    err = capsys.readouterr().err
    assert err == f"appliance: error: {expected}\n"
    assert not (tmp_path / "r").exists()


def test_release_command_refuses_a_folder_that_is_not_empty(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "keep.txt").write_text("mine")
    assert main(["provision", "release", "-o", str(tmp_path / "r")]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert files_under(tmp_path / "r") == ["keep.txt"]


@pytest.mark.slow
def test_release_lock_pins_every_wheel_and_the_sbom_lists_wheels_and_models(local_release: Path) -> None:
    validation = pytest.importorskip("cyclonedx.validation.json")
    schema = pytest.importorskip("cyclonedx.schema")
    pinned = read_lock(local_release / "requirements.lock")
    wheels = sorted(local_release.glob("*.whl"))
    assert len(pinned) == len(wheels) and any(name == "crowd-appliance" for name, _v, _h in pinned)
    text = (local_release / "sbom.cdx.json").read_text()
    error = validation.JsonStrictValidator(schema.SchemaVersion.V1_6).validate_str(text)
    assert error is None, error
    sbom = json.loads(text)
    hashes = {c["name"]: c["hashes"][0]["content"] for c in sbom["components"]}
    assert sbom["metadata"]["component"]["name"] == "crowd-appliance"
    for name, _version, sha in pinned:
        if name != "crowd-appliance":
            assert hashes[name] == sha
    manifest = load_manifest(models_dir())
    models = {c["name"]: c for c in sbom["components"] if c["type"] == "machine-learning-model"}
    assert sorted(models) == sorted(m.name for m in manifest.models)
    for m in manifest.models:
        assert models[m.name]["hashes"] == [{"alg": "SHA-256", "content": m.sha256}]


@pytest.mark.slow
def test_install_refuses_a_release_without_the_appliance_even_online(tmp_path: Path, local_release: Path) -> None:
    make_bundle(tmp_path, DEVICE)
    bundle_dir = unpack_bundle(tmp_path, DEVICE)
    thin = release_without(local_release, tmp_path / "thin", "crowd_appliance-")
    root = tmp_path / "root"
    root.mkdir()
    proc = install(bundle_dir, "--release", str(thin), "--online", "--root", str(root), no_network=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no wheel for crowd-appliance==" in proc.stderr
    assert files_under(root) == []


@pytest.mark.slow
def test_x86_64_release_installs_with_no_network_and_a_changed_byte_is_refused(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    require_unshare_n()
    release = real_release(tmp_path_factory, "x86_64", "3.11")
    make_bundle(tmp_path, DEVICE)
    bundle_dir = unpack_bundle(tmp_path, DEVICE)
    # The namespace really has no network: only a loopback (down).
    net = subprocess.run(offline(["cat", "/proc/net/dev"]), capture_output=True, text=True, check=True).stdout
    assert [line.split(":")[0].strip() for line in net.splitlines()[2:]] == ["lo"]

    # One byte changed in one wheel, on a board with nothing installed yet: refused, nothing written.
    tampered = copy_with_one_byte_changed(release, tmp_path / "tampered", "numpy-")
    fresh = tmp_path / "fresh-root"
    fresh.mkdir()
    proc = install(bundle_dir, "--release", str(tampered.parent), "--root", str(fresh), "--no-selftest")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"install.sh: error: {tampered}: sha256 {hashlib.sha256(tampered.read_bytes()).hexdigest()} "
        "is not in requirements.lock (changed or foreign wheel); refusing the release")
    assert files_under(fresh) == []

    # The real release, with no network.
    root = tmp_path / "root"
    root.mkdir()
    proc = install(bundle_dir, "--release", str(release), "--root", str(root), "--no-selftest")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(no package index)" in proc.stdout
    venv = root / "opt" / "crowd-appliance" / ".venv"
    assert venv.is_symlink()
    installed = venv.resolve()
    verify = subprocess.run(offline([str(venv / "bin" / "appliance"), "models", "verify"]),
                            capture_output=True, text=True, timeout=300, cwd=tmp_path, env=clean_env())
    assert verify.returncode == 0, verify.stdout + verify.stderr
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import appliance; print(appliance.__file__)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path, env=clean_env()).stdout
    assert where.startswith(str(root)) and str(REPO) not in where

    # The same tampered release over that install: refused, and the install is untouched.
    before = {p: p.stat().st_mtime_ns for p in (venv, installed / ".complete")}
    proc = install(bundle_dir, "--release", str(tampered.parent), "--root", str(root), "--no-selftest")
    assert proc.returncode == 2 and "refusing the release" in proc.stderr
    assert venv.resolve() == installed
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert [p.name for p in (root / "opt" / "crowd-appliance" / "venvs").iterdir()] == [installed.name]
    again = subprocess.run(offline([str(venv / "bin" / "appliance"), "models", "verify"]),
                           capture_output=True, text=True, timeout=300, cwd=tmp_path, env=clean_env())
    assert again.returncode == 0, again.stderr
    assert os.access(venv / "bin" / "appliance", os.X_OK)


@pytest.mark.slow
def test_aarch64_release_for_raspberry_pi_os_is_built_on_this_machine(tmp_path_factory: pytest.TempPathFactory) -> None:
    release = real_release(tmp_path_factory, "aarch64", "3.11")
    meta = json.loads((release / "release.json").read_text())
    assert (meta["arch"], meta["python"]) == ("aarch64", "3.11")
    for wheel in release.glob("*.whl"):
        platform_tag = wheel.name[:-4].split("-")[-1]
        assert platform_tag == "any" or "aarch64" in platform_tag, wheel.name
        python_tag = wheel.name[:-4].split("-")[-3]
        assert python_tag in ("cp311", "cp37", "cp38", "cp39", "cp310") or python_tag.startswith("py"), wheel.name
    assert len(read_lock(release / "requirements.lock")) == len(list(release.glob("*.whl")))


@pytest.mark.slow
def test_online_fetches_only_what_the_release_lacks_and_only_by_its_hash(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    release = real_release(tmp_path_factory, "x86_64", "3.11")
    make_bundle(tmp_path, DEVICE)
    bundle_dir = unpack_bundle(tmp_path, DEVICE)
    # A release without one small dependency's wheel: refused offline, fetched by its hash online.
    thin = release_without(release, tmp_path / "thin", "mdurl-")
    root = tmp_path / "root"
    root.mkdir()
    proc = install(bundle_dir, "--release", str(thin), "--root", str(root), "--no-selftest")
    assert proc.returncode == 2 and "no wheel for mdurl==" in proc.stderr and files_under(root) == []

    # The lock's sha256 for it changed: the index's file does not match, nothing is installed.
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    for f in thin.iterdir():
        if f.name != "requirements.lock":
            (wrong / f.name).symlink_to(f.resolve())
    lock = (release / "requirements.lock").read_text()
    sha = next(h for n, _v, h in read_lock(release / "requirements.lock") if n == "mdurl")
    (wrong / "requirements.lock").write_text(lock.replace(sha, "0" * 64))
    proc = install(bundle_dir, "--release", str(wrong), "--online", "--root", str(root), "--no-selftest",
                   no_network=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "pip install failed; the previous install is unchanged" in proc.stderr
    assert "DO NOT MATCH THE HASHES" in proc.stderr and "mdurl" in proc.stderr
    assert not (root / "opt" / "crowd-appliance" / ".venv").exists()

    proc = install(bundle_dir, "--release", str(thin), "--online", "--root", str(root), "--no-selftest",
                   no_network=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "missing dependencies from the public index (hash-pinned)" in proc.stdout
    venv = root / "opt" / "crowd-appliance" / ".venv"
    assert list(venv.resolve().glob("lib/python3.*/site-packages/mdurl-*.dist-info"))


@pytest.mark.slow
def test_install_refuses_a_release_for_another_board_before_touching_it(tmp_path: Path, local_release: Path) -> None:
    make_bundle(tmp_path, DEVICE)
    bundle_dir = unpack_bundle(tmp_path, DEVICE)
    other = tmp_path / "other"
    other.mkdir()
    for f in local_release.iterdir():
        if f.name != "release.json":
            (other / f.name).symlink_to(f)
    meta = json.loads((local_release / "release.json").read_text())
    (other / "release.json").write_text(json.dumps({**meta, "arch": "aarch64", "python": "3.13"}))
    root = tmp_path / "root"
    root.mkdir()
    proc = install(bundle_dir, "--release", str(other), "--root", str(root), no_network=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith(f"install.sh: error: {other}/release.json: the release is for aarch64 Python 3.13, "
                                  "this board is ") and proc.stderr.count("\n") == 1
    assert files_under(root) == []
