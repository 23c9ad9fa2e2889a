"""The start entry: version, config hash, model hashes, and a field diff when the config changed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional

import appliance
from appliance.audit.entries import ConfigChanged, FieldChange, ModelHash, Started
from appliance.audit.log import AuditLog
from appliance.redaction import redact_secrets

if TYPE_CHECKING:
    from appliance.config import ApplianceConfig


def config_diff(old: Any, new: Any, prefix: str = "") -> List[FieldChange]:
    """Dotted paths whose value differs (lists compared whole: a zone list is one field)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: List[FieldChange] = []
        for key in sorted(set(old) | set(new)):
            out += config_diff(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key))
        return out
    return [] if old == new else [FieldChange(field=prefix, old=old, new=new)]


def _last_start(log: AuditLog) -> Optional[Dict[str, Any]]:
    if not log.path.exists():
        return None
    for entry in reversed(log.entries()):
        if entry.get("kind") == "start":
            return entry.get("data")
    return None


def record_start(log: AuditLog, cfg: ApplianceConfig) -> None:
    """Append ``config_change`` (when the config differs from the last start's) and ``start``."""
    from appliance.config import config_hash
    from appliance.models.manifest import load_manifest

    manifest = load_manifest()
    models = [
        ModelHash(name=n, sha256=manifest.get(n).sha256) for n in (cfg.profile.models.face, cfg.profile.models.person)
    ]
    config = redact_secrets(cfg.model_dump(mode="json"))  # a camera password in a URL is not evidence
    new_hash = config_hash(cfg)
    previous = _last_start(log)
    if previous is not None and previous.get("config_hash") != new_hash:
        log.append(
            ConfigChanged(
                old_hash=str(previous.get("config_hash")),
                new_hash=new_hash,
                changes=config_diff(previous.get("config", {}), config),
            )
        )
    log.append(
        Started(
            software_version=appliance.__version__,
            config_hash=new_hash,
            board=cfg.profile.name,
            models=models,
            config=config,
        )
    )
