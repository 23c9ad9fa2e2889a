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
    unacknowledged: int = Field(
        0, ge=0, description="audit problems (recovered, reset) not yet acknowledged when this start was recorded"
    )


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


class Recovered(AuditEvent):
    """At start, the log ended in a torn line (a power cut mid-write): it was cut back to the last
    complete entry. The cut bytes are not kept (they could be anything), only their size and hash."""

    kind: ClassVar[str] = "recovered"
    cut_bytes: int = Field(ge=1, description="bytes cut off the end of the file")
    cut_sha256: str = Field(description="sha256 of the bytes cut")
    file: str = Field(description="the file they were cut from")


class Reset(AuditEvent):
    """The first entry of a new chain, written when the device finds its log gone (deleted while
    running, or its newest file missing at start). ``previous_*`` is the lost chain's last head as
    the device knew it (None when it did not know)."""

    kind: ClassVar[str] = "reset"
    reason: str
    previous_length: Optional[int] = None
    previous_sha256: Optional[str] = None


class Acknowledged(AuditEvent):
    """Someone on the device (``appliance audit ack``) acknowledged the audit problems recorded before."""

    kind: ClassVar[str] = "acknowledged"
    problems: int = Field(ge=0, description="recovered/reset entries acknowledged")
    note: str = Field("", max_length=200)


class Pruned(AuditEvent):
    """Rotated files older than ``audit.retention_days`` were deleted: the kept log starts after
    entry ``through_seq`` (whose hash was ``through_sha256``)."""

    kind: ClassVar[str] = "pruned"
    files: int = Field(ge=1)
    through_seq: int = Field(ge=1)
    through_sha256: str


PROBLEM_KINDS = (Recovered.kind, Reset.kind)
