"""Tamper-evident audit log: append-only, hash-chained JSON lines beside the outbox.

The run loop holds an :class:`AuditRecorder` (``start(cfg)``, ``record(Stopped(...))``,
``record(AnomalyChanged(...))``; ``published_head()`` goes into health and birth messages), which
never stops the count when the log cannot be written. Local commands ``log.append(ImageWritten(...))``.
"""

from appliance.audit.chain import ChainReport, Head, verify_lines
from appliance.audit.entries import (
    Acknowledged,
    AnomalyChanged,
    AuditEvent,
    ConfigChanged,
    ImageWritten,
    ModelVerificationFailed,
    Started,
    Stopped,
)
from appliance.audit.lifecycle import record_start, unacknowledged_problems
from appliance.audit.log import AuditLog, Rotation, audit_log_path
from appliance.audit.recorder import AuditRecorder, PublishedHead

__all__ = [
    "Acknowledged",
    "AnomalyChanged",
    "AuditEvent",
    "AuditLog",
    "AuditRecorder",
    "ChainReport",
    "ConfigChanged",
    "Head",
    "ImageWritten",
    "ModelVerificationFailed",
    "PublishedHead",
    "Rotation",
    "Started",
    "Stopped",
    "audit_log_path",
    "record_start",
    "unacknowledged_problems",
    "verify_lines",
]
