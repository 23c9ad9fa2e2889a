"""Exceptions that map to the CLI's exit codes (2: bad input or config, 1: runtime failure)."""

from __future__ import annotations


class ApplianceError(Exception):
    """Base class. ``str(exc)`` is the one line shown to the user."""

    exit_code = 1


class InputError(ApplianceError):
    """Bad input: a config file, a field value, a path that does not exist. Exit code 2."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, field: str | None = None) -> None:
        parts = [p for p in (path, field) if p]
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.message = message  # without the path and field
        self.path = path
        self.field = field


class ModelIntegrityError(InputError):
    """A model file is missing or its sha256 does not match the manifest."""


class SourceError(ApplianceError):
    """A capture source cannot be opened or read."""


class BrokerError(ApplianceError):
    """The MQTT broker refused us or cannot be reached."""


class AlreadyRunning(ApplianceError):
    """Another appliance process holds this outbox (same device id or same file). Exit code 3:
    distinct from a crash, so a service manager or a technician sees at once what happened."""

    exit_code = 3


class DeliveryFailed(ApplianceError):
    """The delivery side cannot go on (storage unusable, or a bug in the delivery thread). Exit 1,
    so the service manager restarts the appliance instead of leaving it half dead."""
