"""What the audit log records: one typed event per kind (the ``data`` of an entry).

Nothing here can hold an image or a person's data: hashes, names, paths and numbers only.
"""

from __future__ import annotations

from typing import Any, ClassVar, Dict, List, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field


class AuditEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())
    kind: ClassVar[str]


class ModelHash(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    sha256: str


class Started(AuditEvent):
    kind: ClassVar[str] = "start"
    software_version: str
    config_hash: str
    board: str
    models: List[ModelHash]
    config: Dict[str, Any] = Field(description="The resolved config, so the next start can diff against it")


class Stopped(AuditEvent):
    kind: ClassVar[str] = "stop"
    reason: str = Field(description="e.g. 'end of source', 'signal SIGTERM', 'max_frames'")
    frames_analyzed: Optional[int] = None


class FieldChange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    field: str = Field(description="Dotted config path")
    old: Any = None
    new: Any = None


class ConfigChanged(AuditEvent):
    kind: ClassVar[str] = "config_change"
    old_hash: str
    new_hash: str
    changes: List[FieldChange]


class AnomalyChanged(AuditEvent):
    kind: ClassVar[str] = "anomaly"
    type: str
    state: Literal["raised", "cleared"]
    zone: Optional[str] = None
    value: float
    threshold: Optional[float] = None


class ImageWritten(AuditEvent):
    """A local command (``blur``, ``preview``) wrote anonymized image data to disk."""

    kind: ClassVar[str] = "image_written"
    command: Literal["blur", "preview"]
    output_path: str
    frames: int = Field(1, ge=0)


class ModelVerificationFailed(AuditEvent):
    kind: ClassVar[str] = "model_verification_failed"
    detail: str

