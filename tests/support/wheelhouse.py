"""A wheelhouse for install tests, without the network: the project's own wheel, freshly built,
plus the runtime dependencies repacked from the wheels already installed in this venv.

Repacking: an installed distribution's RECORD lists its files relative to site-packages; zipping
them back with a fresh RECORD gives a wheel pip installs like the original (same tags, from the
dist-info's WHEEL file). Console scripts are left out (pip writes them from entry_points.txt)."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import platform
import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path
from typing import List, Set

from packaging.requirements import Requirement
from packaging.tags import sys_tags

_SKIP_DIST_INFO = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_closure(root: str = "crowd-appliance") -> List[metadata.Distribution]:
    """The installed distributions ``root`` needs at run time (no extras), ``root`` excluded."""
    installed = {_canonical(d.metadata["Name"]): d for d in metadata.distributions()}
    seen: Set[str] = set()
    todo = [_canonical(root)]
    while todo:
        name = todo.pop()
        for spec in installed[name].requires or []:
            req = Requirement(spec)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            dep = _canonical(req.name)
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return [installed[n] for n in sorted(seen)]


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def repack(dist: metadata.Distribution, dest: Path) -> Path:
    files = [f for f in dist.files or [] if not str(f).startswith("..") and "__pycache__" not in str(f)]
    info_dir = next(str(f).split("/")[0] for f in files if str(f).endswith(".dist-info/METADATA"))
    tags = [line.split(":", 1)[1].strip() for line in dist.read_text("WHEEL").splitlines() if line.startswith("Tag:")]
    supported = {str(t) for t in sys_tags()}
    tags = [t for t in tags if t in supported]  # e.g. py3-none-any of a py2.py3 wheel
    name = re.sub(r"[-.]+", "_", dist.metadata["Name"])
    out = dest / f"{name}-{dist.version}-{tags[0]}.whl"
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as whl:
        for f in files:
            rel = str(f)
            if rel.startswith(info_dir + "/") and rel.split("/", 1)[1] in _SKIP_DIST_INFO:
                continue
            path = Path(str(f.locate()))
            if not path.is_file():
                continue
            data = path.read_bytes()
            whl.writestr(rel, data)
            writer.writerow([rel, _digest(data), len(data)])
        writer.writerow([f"{info_dir}/RECORD", "", ""])
        whl.writestr(f"{info_dir}/RECORD", record.getvalue())
    return out


def build_wheelhouse(repo: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest), str(repo)],
        check=True, capture_output=True, timeout=600,
    )
    for dist in runtime_closure():
        repack(dist, dest)
    return dest


_LOCAL_RELEASES: dict = {}


def build_local_release(repo: Path, dest: Path) -> Path:
    """A release folder for this machine (``appliance provision release``'s layout, lock and SBOM)
    from the wheelhouse above: what install.sh --release takes, without fetching anything.
    Built once per test session (the first ``dest`` wins)."""
    from appliance.provision.release import ReleaseTarget, finish_release

    if "release" not in _LOCAL_RELEASES:
        build_wheelhouse(repo, dest)
        finish_release(dest, ReleaseTarget(platform.machine(), f"{sys.version_info[0]}.{sys.version_info[1]}"))
        _LOCAL_RELEASES["release"] = dest
    return _LOCAL_RELEASES["release"]
