"""The release's lock file: one pinned line per wheel, in pip's requirements format.

    numpy==2.4.6 --hash=sha256:<64 hex>

``pip install --no-index --require-hashes -r requirements.lock`` consumes it as it is, and
``install.sh`` reads it with grep: one requirement per line, no continuation lines, so the
appliance's own line can be told from the dependencies' by its first word.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List

from appliance.errors import InputError

LOCK_NAME = "requirements.lock"
_LINE = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>\S+) --hash=sha256:(?P<sha256>[0-9a-f]{64})$")


@dataclass(frozen=True)
class PinnedWheel:
    """One wheel of a release: its distribution name, version, file name and sha256."""

    name: str
    version: str
    filename: str
    sha256: str

    def lock_line(self) -> str:
        return f"{self.name}=={self.version} --hash=sha256:{self.sha256}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def canonical_name(name: str) -> str:
    """A distribution name as pip compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_name_version(filename: str) -> tuple:
    """``(name, version)`` from a wheel's file name (PEP 427: name-version[-build]-py-abi-platform.whl)."""
    parts = filename[: -len(".whl")].split("-")
    if not filename.endswith(".whl") or len(parts) not in (5, 6):
        raise InputError("not a wheel file name", path=filename)
    return canonical_name(parts[0]), parts[1]


def pin_wheels(folder: Path) -> List[PinnedWheel]:
    """Every ``*.whl`` in ``folder``, hashed; two wheels of one distribution are refused (one target per release)."""
    pins: List[PinnedWheel] = []
    seen: dict = {}
    for path in sorted(folder.glob("*.whl")):
        name, version = wheel_name_version(path.name)
        if name in seen:
            raise InputError(f"two wheels of {name} ({seen[name]}, {path.name}); a release holds one per distribution",
                             path=str(folder))
        seen[name] = path.name
        pins.append(PinnedWheel(name, version, path.name, sha256_file(path)))
    if not pins:
        raise InputError("no wheels", path=str(folder))
    return pins


def render_lock(pins: List[PinnedWheel], header: str) -> str:
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    return comments + "".join(pin.lock_line() + "\n" for pin in pins)


def read_lock(path: Path) -> List[tuple]:
    """``(name, version, sha256)`` of every requirement line; a line in another form is refused."""
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        found = _LINE.match(line)
        if found is None:
            raise InputError("not 'name==version --hash=sha256:HEX'", path=f"{path}:{number}")
        out.append((found["name"], found["version"], found["sha256"]))
    return out
