"""``appliance models verify``: is every file the manifest names present and unmodified?"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from appliance.errors import ModelIntegrityError
from appliance.models.manifest import MANIFEST_NAME, load_manifest, sha256_bytes
from appliance.resources import models_dir as default_models_dir

if TYPE_CHECKING:
    from appliance.config.schema import ModelSelection


@dataclass
class FileCheck:
    model: str
    file: str
    ok: bool
    detail: str
    expected_sha256: str
    actual_sha256: Optional[str]  # None: the file is missing or unreadable


@dataclass
class VerifyReport:
    models_dir: str
    checks: List[FileCheck] = field(default_factory=list)
    error: Optional[str] = None  # the manifest itself could not be read, or names no model the config selects
    selected: Dict[str, str] = field(default_factory=dict)  # task -> model name the config's board uses

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.checks) and all(c.ok for c in self.checks)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "ok": self.ok,
            "models_dir": self.models_dir,
            "error": self.error,
            "selected": self.selected or None,
            "files": [asdict(c) for c in self.checks],
        }

    def lines(self) -> List[str]:
        if self.error:
            return [f"FAIL {self.error}"]
        in_use = set(self.selected.values())
        out = [
            f"{'ok  ' if c.ok else 'FAIL'} {c.model}{' (selected)' if c.model in in_use else ''}: {c.detail}"
            for c in self.checks
        ]
        out.append(f"{sum(c.ok for c in self.checks)}/{len(self.checks)} model files verified in {self.models_dir}")
        return out


def _check_file(root: Path, model: str, rel: str, expected: str) -> FileCheck:
    path = root / rel
    try:
        data = path.read_bytes()
    except OSError as exc:
        reason = "missing" if isinstance(exc, FileNotFoundError) else f"unreadable ({exc.strerror})"
        return FileCheck(model, rel, False, f"{path}: {reason}", expected, None)
    actual = sha256_bytes(data)
    if actual != expected:
        detail = f"{rel} sha256 mismatch (manifest {expected[:12]}..., file {actual[:12]}...)"
        return FileCheck(model, rel, False, detail, expected, actual)
    return FileCheck(model, rel, True, f"{rel} sha256 {expected[:12]}... ok", expected, actual)


def verify_models(models_dir: Optional[Path] = None, selected: Optional[ModelSelection] = None) -> VerifyReport:
    """Check the sha256 of every file of every model in the manifest; never raises for bad files.

    ``selected`` (a board profile's models): also report whether the manifest has those models.
    """
    root = Path(models_dir or default_models_dir())
    report = VerifyReport(models_dir=str(root))
    try:
        manifest = load_manifest(root)
    except ModelIntegrityError as exc:
        report.error = str(exc)
        return report
    for entry in manifest.models:
        for rel, sha in entry.files():
            report.checks.append(_check_file(root, entry.name, rel, sha))
    if not report.checks:
        report.error = f"{root / MANIFEST_NAME}: lists no models"
    if selected is not None:
        report.selected = {"face": selected.face, "person": selected.person}
        known = {m.name: m.task for m in manifest.models}
        for task, name in report.selected.items():
            if known.get(name) != task:
                report.error = f"{root / MANIFEST_NAME}: has no {task} model named {name!r} (the config selects it)"
    return report
