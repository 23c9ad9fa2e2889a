"""The appliance command run as a user runs it: its own process, from the repository root."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Optional

from support.repo import REPO


def appliance(*args: str, env: Optional[dict] = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The single ``appliance: error:`` line a refused command prints, with no traceback."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("appliance: error:")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return errors[0]
