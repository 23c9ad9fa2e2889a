"""A small file beside the outbox that outlives it: a seq and a boot id no outbox file has reached.

The seq and boot counters live in the outbox file. When that file is damaged beyond use it is set
aside, and the fresh file must go on *above* every seq the control room may already have seen
(subscribers drop repeated seqs as duplicates). The outbox reserves seqs here in blocks of
:data:`SEQ_BLOCK` (one small fsync'd write per block, not per message), so the fresh file starts
just above the last reservation; the unused rest of the block is a gap in ``seq`` that health
explains (``outbox.files_set_aside``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SEQ_BLOCK = 1000


@dataclass(frozen=True)
class Floor:
    seq: int = 0  # every seq ever used is at most this
    boot_id: int = 0  # every boot id ever used is at most this
    files_set_aside: int = 0


def floor_path(outbox: Path) -> Path:
    return outbox.with_name(outbox.name + ".seq")


def read_floor(path: Path) -> Floor:
    """The floor recorded at ``path``; an absent or unreadable file is the zero floor."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Floor(int(data["seq"]), int(data["boot_id"]), int(data.get("files_set_aside", 0)))
    except FileNotFoundError:
        return Floor()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.error("%s: unreadable (%s); seq continuity after a damaged outbox relies on the file alone", path, exc)
        return Floor()


def write_floor(path: Path, floor: Floor) -> None:
    """Replace the file atomically and durably (write, fsync, rename, fsync the folder)."""
    tmp = path.with_name(path.name + ".tmp")
    data = json.dumps({"seq": floor.seq, "boot_id": floor.boot_id, "files_set_aside": floor.files_set_aside})
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(data + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
