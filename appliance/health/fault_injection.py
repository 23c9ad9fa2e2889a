"""Supported fault injection, for tests and for a technician proving the watchdog on a device.

``APPLIANCE_FAULT_HANG_MODEL=<model name>@<calls>`` makes that model's inference hang forever
after it has answered ``<calls>`` times, as a wedged accelerator driver or a deadlocked runtime
would. The watchdog must then restart the appliance. A warning is logged whenever it is set, so
it cannot sit unnoticed in a production environment.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Mapping, Optional, Tuple

from appliance.errors import InputError

log = logging.getLogger(__name__)

HANG_MODEL_ENV = "APPLIANCE_FAULT_HANG_MODEL"


def hang_model_spec(env: Mapping[str, str]) -> Optional[Tuple[str, int]]:
    """``(model name, calls before the hang)`` from the environment, or None."""
    spec = env.get(HANG_MODEL_ENV, "")
    if not spec:
        return None
    name, _, calls = spec.partition("@")
    try:
        after = int(calls or "0")
    except ValueError:
        after = -1
    if not name or after < 0:
        raise InputError(f"expected <model name>@<calls>, e.g. centerface-int8@20, not {spec!r}", path=HANG_MODEL_ENV)
    return name, after


class HangingSession:
    """An inference session that answers ``after`` times, then never returns."""

    def __init__(self, session: Any, name: str, after: int) -> None:
        self._session = session
        self._name = name
        self._left = after

    def run(self, *args: Any, **kwargs: Any) -> Any:
        if self._left <= 0:
            log.warning("fault injection: %s inference hangs now", self._name)
            threading.Event().wait()  # forever
        self._left -= 1
        return self._session.run(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._session, attr)


def with_injected_faults(model_name: str, session: Any, env: Optional[Mapping[str, str]] = None) -> Any:
    """The session itself, or a :class:`HangingSession` when ``APPLIANCE_FAULT_HANG_MODEL`` names this model."""
    spec = hang_model_spec(os.environ if env is None else env)
    if spec is None or spec[0] != model_name:
        return session
    log.warning(
        "fault injection active: %s will hang after %d inference call(s) (%s)", model_name, spec[1], HANG_MODEL_ENV
    )
    return HangingSession(session, model_name, spec[1])
