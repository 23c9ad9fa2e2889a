"""The files of one audit log: the active file and its rotated predecessors, read forwards or from the end.

``audit.jsonl`` is the file being written; rotation renames it ``audit.jsonl.000001``,
``audit.jsonl.000002``, ... (a counter, not a date: a board without a clock must still sort
them). The chain runs on from one file to the next. Reading from the end goes back a chunk at
a time, so finding the head or the last ``start`` never loads a whole file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import BinaryIO, Iterator, List, Optional, Tuple

from appliance.errors import InputError

_CHUNK = 65536


def check_not_folder(path: Path) -> None:
    if path.is_dir():
        raise InputError(
            "is a folder, not an audit log file (move it away; the device starts a new log)", path=str(path)
        )


def archives(path: Path) -> List[Path]:
    """Rotated files, oldest first."""
    pattern = re.compile(re.escape(path.name) + r"\.(\d{6,})$")
    try:
        found = [(int(m.group(1)), p) for p in path.parent.iterdir() if (m := pattern.match(p.name))]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [p for _, p in sorted(found)]


def next_archive(path: Path) -> Path:
    existing = archives(path)
    n = int(existing[-1].name.rsplit(".", 1)[1]) + 1 if existing else 1
    return path.with_name(f"{path.name}.{n:06d}")


def all_files(path: Path) -> List[Path]:
    """Every file of the log in chain order (the active file last, when it exists)."""
    files = archives(path)
    return [*files, path] if path.exists() else files


def lines_forward(files: List[Path]) -> Iterator[Tuple[str, int, bytes]]:
    """``(file name, line number, line without its newline)`` across the files, one line in memory at a time."""
    for p in files:
        check_not_folder(p)
        try:
            f = open(p, "rb")  # noqa: SIM115 - closed by the with below; a vanished file is skipped
        except FileNotFoundError:
            continue  # rotated away while we read: the next file holds the entries
        except OSError as exc:
            raise InputError(f"cannot read the audit log: {exc.strerror}", path=str(p)) from None
        with f:
            for n, raw in enumerate(f, start=1):
                yield p.name, n, raw[:-1] if raw.endswith(b"\n") else raw


def lines_backward(f: BinaryIO, end: Optional[int] = None) -> Iterator[bytes]:
    """Complete lines of an open file from the last to the first, without their newlines.

    A last line without a newline (a torn write) is yielded too; callers that care check
    :func:`torn_tail` first."""
    pos = f.seek(0, os.SEEK_END) if end is None else end
    rest = b""
    while pos > 0:
        start = max(0, pos - _CHUNK)
        f.seek(start)
        block = f.read(pos - start) + rest
        pos = start
        parts = block.split(b"\n")
        rest = parts[0]
        for line in reversed(parts[1:]):
            if line:
                yield line
    if rest:
        yield rest


def torn_tail(f: BinaryIO) -> Tuple[int, bytes]:
    """``(offset, bytes)`` after the file's last newline: empty unless a write was cut short."""
    end = f.seek(0, os.SEEK_END)
    pos = end
    tail = b""
    while pos > 0:
        start = max(0, pos - _CHUNK)
        f.seek(start)
        block = f.read(pos - start)
        i = block.rfind(b"\n")
        if i >= 0:
            cut = start + i + 1
            f.seek(cut)
            return cut, f.read(end - cut)
        pos = start
        tail = block + tail
    f.seek(0)
    return 0, f.read(end)


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
