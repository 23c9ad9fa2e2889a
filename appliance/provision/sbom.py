"""A CycloneDX 1.6 software bill of materials (JSON) for a release: every wheel it holds and
every ONNX model the appliance's wheel carries, each with its sha256.

The document is a function of its inputs (no timestamp, a serial number derived from the
hashes), so building the same release twice gives the same file.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, Dict, List

from appliance.models.manifest import Manifest, ModelEntry
from appliance.provision.lock import PinnedWheel

SPEC_VERSION = "1.6"
APPLIANCE = "crowd-appliance"


def _wheel_component(pin: PinnedWheel) -> Dict[str, Any]:
    return {
        "type": "application" if pin.name == APPLIANCE else "library",
        "bom-ref": f"pkg:pypi/{pin.name}@{pin.version}",
        "name": pin.name,
        "version": pin.version,
        "purl": f"pkg:pypi/{pin.name}@{pin.version}?file_name={pin.filename}",
        "hashes": [{"alg": "SHA-256", "content": pin.sha256}],
        "properties": [{"name": "crowd-appliance:wheel", "value": pin.filename}],
    }


def _model_component(entry: ModelEntry, appliance_version: str) -> Dict[str, Any]:
    return {
        "type": "machine-learning-model",
        "bom-ref": f"model:{entry.name}@{entry.sha256[:16]}",
        "name": entry.name,
        "version": appliance_version,
        "hashes": [{"alg": "SHA-256", "content": entry.sha256}],
        "properties": [
            {"name": "crowd-appliance:model-file", "value": entry.file},
            {"name": "crowd-appliance:task", "value": entry.task},
            {"name": "crowd-appliance:precision", "value": entry.precision},
        ],
        "licenses": [{"license": {"name": entry.source.licence}}],
        # Rebuilt from a published package (scripts/build_models.py): that wheel is its ancestor.
        "pedigree": {"ancestors": [{
            "type": "library",
            "name": entry.source.package,
            "version": entry.source.version,
            "purl": f"pkg:pypi/{entry.source.package}@{entry.source.version}",
            "hashes": [{"alg": "SHA-256", "content": entry.source.wheel_sha256}],
        }]},
    }


def render_sbom(pins: List[PinnedWheel], manifest: Manifest, *, appliance_version: str, target: str) -> Dict[str, Any]:
    """The SBOM as a JSON-ready dict; ``target`` (e.g. ``aarch64-cp311``) is recorded as a property."""
    wheels = [_wheel_component(p) for p in pins if p.name != APPLIANCE]
    own = [p for p in pins if p.name == APPLIANCE]
    models = [_model_component(m, appliance_version) for m in manifest.models]
    identity = hashlib.sha256("\n".join([*sorted(p.sha256 for p in pins), target]).encode()).hexdigest()
    root: Dict[str, Any] = _wheel_component(own[0]) if own else {
        "type": "application", "bom-ref": f"pkg:pypi/{APPLIANCE}@{appliance_version}", "name": APPLIANCE,
        "version": appliance_version,
    }
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'crowd-appliance-release:' + identity)}",
        "version": 1,
        "metadata": {
            "component": root,
            "properties": [{"name": "crowd-appliance:target", "value": target}],
        },
        "components": wheels + models,
        "dependencies": [
            {"ref": root["bom-ref"], "dependsOn": [c["bom-ref"] for c in wheels + models]},
        ],
    }
