"""``appliance models verify``: is every file the manifest names present and unmodified?"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from appliance.errors import ModelIntegrityError
from appliance.models.manifest import MANIFEST_NAME, load_manifest, read_verified
from appliance.resources import models_dir as default_models_dir


@dataclass
class FileCheck:
    model: str
    file: str
    ok: bool
    detail: str


@dataclass
class VerifyReport:
    models_dir: str
    checks: List[FileCheck] = field(default_factory=list)
    error: Optional[str] = None  # the manifest itself could not be read

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.checks) and all(c.ok for c in self.checks)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "ok": self.ok,
            "models_dir": self.models_dir,
            "error": self.error,
            "files": [c.__dict__ for c in self.checks],
        }

    def lines(self) -> List[str]:
        if self.error:
            return [f"FAIL {self.error}"]
        out = [f"{'ok  ' if c.ok else 'FAIL'} {c.model}: {c.detail}" for c in self.checks]
        out.append(f"{sum(c.ok for c in self.checks)}/{len(self.checks)} model files verified in {self.models_dir}")
        return out


def verify_models(models_dir: Optional[Path] = None) -> VerifyReport:
    """Check the sha256 of every file of every model in the manifest; never raises for bad files."""
    root = Path(models_dir or default_models_dir())
    report = VerifyReport(models_dir=str(root))
    try:
        manifest = load_manifest(root)
    except ModelIntegrityError as exc:
        report.error = str(exc)
        return report
    for entry in manifest.models:
        for rel, sha in entry.files():
            try:
                read_verified(root, rel, sha)
            except ModelIntegrityError as exc:
                report.checks.append(FileCheck(entry.name, rel, False, str(exc)))
            else:
                report.checks.append(FileCheck(entry.name, rel, True, f"{rel} sha256 {sha[:12]}... ok"))
    if not report.checks:
        report.error = f"{root / MANIFEST_NAME}: lists no models"
    return report
