"""Waiting on a condition with a generous timeout, never racing a fixed sleep against the clock."""

from __future__ import annotations

import time
from typing import Callable


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def eventually(condition: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    """Whether ``condition`` came true within ``timeout_s`` (for ``assert eventually(...)`` with a message
    of the test's own)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
