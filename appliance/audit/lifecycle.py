"""The start entry: version, config hash, model hashes, and a field diff when the config changed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import appliance
from appliance.audit.entries import (
    PROBLEM_KINDS,
    Acknowledged,
    AuditEvent,
    ConfigChanged,
    FieldChange,
    ModelHash,
    Started,
)
from appliance.audit.log import AuditLog
from appliance.errors import ApplianceError
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


@dataclass(frozen=True)
class TailState:
    """What a start needs from the log: the last start's data and the problems awaiting an ack."""

    last_start: Optional[Dict[str, Any]]
    unacknowledged: int


def tail_state(log: AuditLog) -> TailState:
    """Reads back from the end only as far as the last ``start`` entry (which carries the count of
    problems unacknowledged then), so a start costs the same with 10 entries or 10 million."""
    count, acked = 0, False
    try:
        for e in log.entries_backward():
            kind = e["kind"]
            if kind == Acknowledged.kind:
                acked = True
            elif kind in PROBLEM_KINDS and not acked:
                count += 1
            elif kind == Started.kind:
                data = e["data"]
                carried = data.get("unacknowledged", 0)
                return TailState(data, count + (0 if acked or not isinstance(carried, int) else carried))
    except ApplianceError:
        pass  # an unreadable entry: verify names it; the start is still recorded (no diff)
    return TailState(None, count)


def unacknowledged_problems(log: AuditLog) -> int:
    return tail_state(log).unacknowledged


def start_events(cfg: ApplianceConfig, state: TailState) -> List[AuditEvent]:
    """``config_change`` (when the config differs from the last start's) and ``start``."""
    from appliance.config import config_hash
    from appliance.models.manifest import load_manifest

    manifest = load_manifest()
    models = [
        ModelHash(name=n, sha256=manifest.get(n).sha256) for n in (cfg.profile.models.face, cfg.profile.models.person)
    ]
    config = redact_secrets(cfg.model_dump(mode="json"))  # a camera password in a URL is not evidence
    new_hash = config_hash(cfg)
    previous = state.last_start
    events: List[AuditEvent] = []
    if previous is not None and previous.get("config_hash") != new_hash:
        events.append(
            ConfigChanged(
                old_hash=str(previous.get("config_hash")),
                new_hash=new_hash,
                changes=config_diff(previous.get("config", {}), config),
            )
        )
    events.append(
        Started(
            software_version=appliance.__version__,
            config_hash=new_hash,
            board=cfg.profile.name,
            models=models,
            config=config,
            unacknowledged=state.unacknowledged,
        )
    )
    return events


def record_start(log: AuditLog, cfg: ApplianceConfig) -> None:
    """Append ``config_change`` (when the config differs from the last start's) and ``start``."""
    for event in start_events(cfg, tail_state(log)):
        log.append(event)
