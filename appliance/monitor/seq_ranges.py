"""The seqs a device skipped and the control room has not received yet, as ranges.

A seq is any integer a publisher chose: a forged or corrupt message may jump a device's seq by
10^12. So what is missing is kept as at most ``max_ranges`` inclusive ranges ``[first, last]``,
never as the seqs themselves: memory is bounded per device whatever the numbers say. Past the
cap the lowest (oldest) ranges are forgotten: a seq from them that arrives later is no longer
recognised as late.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Iterable, List, Tuple


class MissingRanges:
    def __init__(self, max_ranges: int) -> None:
        if max_ranges < 1:
            raise ValueError(f"max_ranges must be at least 1, got {max_ranges}")
        self.max_ranges = max_ranges
        self._firsts: List[int] = []  # sorted; _lasts[i] belongs to _firsts[i]
        self._lasts: List[int] = []
        self._count = 0

    def __len__(self) -> int:
        """How many seqs are missing (not how many ranges)."""
        return self._count

    @property
    def ranges(self) -> List[Tuple[int, int]]:
        return list(zip(self._firsts, self._lasts))

    def add_above(self, first: int, last: int, except_: Iterable[int] = ()) -> int:
        """Mark ``first..last`` missing, less the seqs in ``except_``; the span must lie above every
        range held (seqs only jump forward). Returns how many seqs were added."""
        if self._lasts and first <= self._lasts[-1]:
            raise ValueError(f"{first}..{last} is not above the last missing seq {self._lasts[-1]}")
        added = 0
        start = first
        for hole in sorted(s for s in set(except_) if first <= s <= last):
            if hole > start:
                added += self._append(start, hole - 1)
            start = hole + 1
        if start <= last:
            added += self._append(start, last)
        return added

    def _append(self, first: int, last: int) -> int:
        self._firsts.append(first)
        self._lasts.append(last)
        self._count += last - first + 1
        self._forget_oldest()
        return last - first + 1

    def _forget_oldest(self) -> None:
        while len(self._firsts) > self.max_ranges:
            self._count -= self._lasts[0] - self._firsts[0] + 1
            del self._firsts[0], self._lasts[0]

    def discard(self, seq: int) -> bool:
        """Take ``seq`` out if it is missing; True if it was."""
        i = bisect_right(self._firsts, seq) - 1
        if i < 0 or seq > self._lasts[i]:
            return False
        first, last = self._firsts[i], self._lasts[i]
        self._count -= 1
        if first == last:
            del self._firsts[i], self._lasts[i]
        elif seq == first:
            self._firsts[i] = seq + 1
        elif seq == last:
            self._lasts[i] = seq - 1
        else:  # split in two; the cap may then forget the lowest range
            self._lasts[i] = seq - 1
            self._firsts.insert(i + 1, seq + 1)
            self._lasts.insert(i + 1, last)
            self._forget_oldest()
        return True

    def __contains__(self, seq: object) -> bool:
        if not isinstance(seq, int):
            return False
        i = bisect_right(self._firsts, seq) - 1
        return i >= 0 and seq <= self._lasts[i]
