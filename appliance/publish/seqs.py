"""The one place that hands out seqs and boot ids.

Every published message carries the next ``seq`` of one per-device counter; each boot takes the
next ``boot_id`` and two consecutive seqs for its birth and death. The outbox persists both
counters and checks that what it stores continues them; this object is what decides them, for
the outbox's publisher and for the stdout publisher alike.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator, Tuple


class SeqAllocator:
    """Thread-safe. :meth:`next` lends the next seq to a block that builds the message for it: the
    seq is consumed only when the block succeeds, so an egress refusal consumes nothing."""

    def __init__(self, *, last_seq: int, last_boot_id: int) -> None:
        self._lock = threading.Lock()
        self._last_seq = last_seq
        self._last_boot_id = last_boot_id

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._last_seq

    def boot(self) -> Tuple[int, int]:
        """``(boot_id, birth_seq)`` of a new boot; ``birth_seq + 1`` is its death's."""
        with self._lock:
            self._last_boot_id += 1
            first = self._last_seq + 1
            self._last_seq += 2
            return self._last_boot_id, first

    @contextmanager
    def next(self) -> Iterator[int]:
        with self._lock:
            seq = self._last_seq + 1
            yield seq
            self._last_seq = seq
