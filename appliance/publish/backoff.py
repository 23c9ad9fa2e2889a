"""Reconnect delays: exponential backoff with full jitter, capped.

A thousand devices that lose their broker together must not come back in the same second when it
restarts. With full jitter (AWS architecture blog, "Exponential Backoff And Jitter") the n-th wait
is drawn uniformly from ``[0, min(max_s, min_s * 2**n)]``, which spreads the reconnects evenly over
the current ceiling; the ceiling doubles after each failure, up to ``max_s``, and falls back to
``min_s`` after a success.

``jitter=False`` waits the ceiling itself (plain capped exponential backoff). It exists only so
that ``scripts/simulate_fleet.py`` can show, in the same run, what full jitter prevents; the
appliance always jitters.
"""

from __future__ import annotations

import random
from typing import Optional


class FullJitterBackoff:
    def __init__(
        self, min_s: float, max_s: float, rng: Optional[random.Random] = None, *, jitter: bool = True
    ) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError("need 0 < min_s <= max_s")
        self.min_s = min_s
        self.max_s = max_s
        self._rng = rng or random.Random()
        self.jitter = jitter
        self._failures = 0

    @property
    def ceiling_s(self) -> float:
        """The upper bound of the next wait."""
        # The exponent is bounded so a long outage cannot overflow the float.
        return min(self.max_s, self.min_s * 2 ** min(self._failures, 64))

    def next_delay(self) -> float:
        """The wait before the next attempt; each call counts one more failure."""
        delay = self._rng.uniform(0.0, self.ceiling_s) if self.jitter else self.ceiling_s
        self._failures += 1
        return delay

    def reset(self) -> None:
        self._failures = 0
