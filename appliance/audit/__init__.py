"""Tamper-evident audit log: append-only, hash-chained JSON lines beside the outbox.

The run loop calls ``record_start(log, cfg)`` at start, ``log.append(Stopped(...))`` at stop,
``log.append(AnomalyChanged(...))`` per flag, local commands ``log.append(ImageWritten(...))``;
``log.head()`` goes into health and birth messages.
"""

from appliance.audit.chain import ChainReport, Head, verify_lines
from appliance.audit.entries import (
    AnomalyChanged,
    AuditEvent,
    ConfigChanged,
    ImageWritten,
    ModelVerificationFailed,
    Started,
    Stopped,
)
from appliance.audit.lifecycle import record_start
from appliance.audit.log import AuditLog, audit_log_path

__all__ = [
    "AnomalyChanged",
    "AuditEvent",
    "AuditLog",
    "ChainReport",
    "ConfigChanged",
    "Head",
    "ImageWritten",
    "ModelVerificationFailed",
    "Started",
    "Stopped",
    "audit_log_path",
    "record_start",
    "verify_lines",
]
