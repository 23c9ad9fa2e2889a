"""Checks that need the outside world, run by both ``config validate`` and ``run`` at start.

The schema checks what a config *says*; this checks that what it names exists on this machine: the
source file, the TLS files, the password, a place for the outbox. One function for both commands,
so ``validate`` says ok exactly when ``run`` will not stop on the config, with the same one line
naming the file and field. Nothing here writes, connects or opens a camera.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, NoReturn, Optional, Union

from appliance.config.broker_identity import BrokerIdentity, file_problem
from appliance.config.loader import config_label, load_config
from appliance.config.schema import ApplianceConfig
from appliance.config.transport import state_path
from appliance.errors import InputError, ModelIntegrityError


def _nearest_existing(path: Path) -> Path:
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path("/")


def writable_file_problem(path: str) -> Optional[str]:
    """None if a state file (outbox, audit log) can be created or opened at ``path`` (its folder
    may not exist yet)."""
    if not path.strip():
        return "is empty"
    try:
        p = Path(path)
        if p.is_dir():
            return "is a folder; give a file name inside it"
        if p.exists():
            return None if os.access(p, os.R_OK | os.W_OK) else "not writable (check owner and mode)"
        base = _nearest_existing(p.absolute())
        if not base.is_dir():
            return f"{base} is not a folder"
        if not os.access(base, os.W_OK | os.X_OK):
            return f"cannot create it: {base} is not writable"
    except (OSError, ValueError) as exc:
        return f"cannot check: {exc}"
    return None


def preflight(cfg: ApplianceConfig, *, label: str) -> None:
    """Raise a one-line :class:`InputError` (``label: field: ...``) for anything ``run`` would refuse."""
    # Imported here: capture pulls in OpenCV, which `config schema` and friends need not load.
    from appliance.capture import open_source, parse_source
    from appliance.capture.opener import source_problem
    from appliance.capture.spec import stream_url
    from appliance.models.manifest import load_manifest

    def fail(field: str, problem: str, value: Optional[str] = None) -> NoReturn:
        detail = f"{value}: {problem}" if value is not None else problem
        raise InputError(" ".join(detail.split()), path=label, field=field)

    def check_source() -> None:
        source = parse_source(cfg.capture.source)
        if source.kind == "path":
            problem = file_problem(source.text, want_dir=True)
            if problem:
                fail("capture.source", problem, source.shown)
            # the same opening `run` does (a folder without images, a file that is not a video)
            open_source(source.text, cfg.capture, size=None).close()
        if cfg.capture.password_file is not None:
            problem = file_problem(cfg.capture.password_file)
            if problem:
                fail("capture.password_file", problem, cfg.capture.password_file)
        stream_url(source, cfg.capture)  # the password's setting fits the source (and can be read)
        problem = source_problem(source)
        if problem:
            fail("capture.source", problem, source.shown)

    try:
        check_source()
    except InputError as exc:
        if exc.path == label:
            raise
        fail(exc.field or "capture.source", exc.message, exc.path)

    manifest = load_manifest()
    for task, name in (("face", cfg.profile.models.face), ("person", cfg.profile.models.person)):
        try:
            entry = manifest.get(name)
        except ModelIntegrityError:
            known = ", ".join(m.name for m in manifest.models)
            fail(f"models.{task}", f"unknown model {name!r} (manifest has: {known})")
        if entry.task != task:
            fail(f"models.{task}", f"{name} is a {entry.task} model, not a {task} model")

    mqtt = cfg.mqtt
    if mqtt.url is None:
        return  # messages go to stdout: no broker, no TLS files, no outbox
    # The same checks the MQTT client makes when it starts: TLS files, the certificate's key, the password.
    for name, value, why in BrokerIdentity.from_config(mqtt).problems():
        fail(name, why, value)
    outbox = str(state_path(cfg.outbox.path, cfg.device_id)) if cfg.outbox.path.strip() else ""
    problem = writable_file_problem(outbox)
    if problem:
        fail("outbox.path", problem, outbox or None)
    # A path that can never hold the audit log (under a file) is a config error. A log that is
    # there but unwritable, or a folder in its place, is the device's state: run reports it in
    # health and keeps counting, so it is not refused here.
    from appliance.audit.log import audit_log_path

    audit = audit_log_path(cfg)
    problem = writable_file_problem(str(audit))
    if problem and not audit.exists() and not _nearest_existing(audit.absolute()).is_dir():
        fail("transparency.audit_log_path", problem, str(audit))


def load_runnable_config(
    path: Optional[Union[str, Path]] = None, overrides: Optional[Mapping[str, Any]] = None
) -> ApplianceConfig:
    """``load_config`` + :func:`preflight`: what ``run`` and ``config validate`` both start with."""
    cfg = load_config(path, overrides)
    preflight(cfg, label=config_label(path, overrides))
    return cfg
