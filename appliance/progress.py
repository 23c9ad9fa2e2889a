"""Progress of long commands (``blur``, ``count``, ``bench``, a file ``run``) on a terminal.

Shown on stderr only when it is a terminal, so scripts, pipes and the service's journal get no
progress noise; stdout stays machine-readable.
"""

from __future__ import annotations

import sys
from typing import Any, Optional, Protocol, TextIO


class Progress(Protocol):
    def start(self, label: str, total: Optional[int]) -> None: ...

    def advance(self) -> None: ...

    def close(self) -> None: ...


class NoProgress:
    def start(self, label: str, total: Optional[int]) -> None:
        pass

    def advance(self) -> None:
        pass

    def close(self) -> None:
        pass


class TerminalProgress:
    """A rich progress bar (frames done, rate, time left), removed from the screen when done."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("frames"),
            TimeRemainingColumn(),
            console=Console(file=stream),
            transient=True,
            # Never capture stdout: it may be a pipe carrying JSON lines (``count --json | jq``).
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task: Any = None

    def start(self, label: str, total: Optional[int]) -> None:
        self._bar.start()
        self._task = self._bar.add_task(label, total=total)

    def advance(self) -> None:
        if self._task is not None:
            self._bar.advance(self._task)

    def close(self) -> None:
        self._bar.stop()


def progress_on(stream: Optional[TextIO] = None) -> Progress:
    """A terminal progress bar on ``stream`` (stderr by default) if it is a terminal, else nothing."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return TerminalProgress(stream) if isatty is not None and isatty() else NoProgress()
