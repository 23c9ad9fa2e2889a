"""Where ``blur`` and ``preview`` may write, and how: never through a symlink, never over an existing
file unless asked (``--overwrite``), never into the device's state folder (its outbox and audit
log live there), and atomically.

The file is written in a private folder made next to the destination (``mkdtemp``: mode 0700,
created exclusively, so nobody can plant a link in it), synced, then moved into place: ``link``
(which refuses an existing name) or, with ``--overwrite``, ``rename`` (which replaces a name, never
follows it). A reader sees the old file or the whole new one, never half of one, and a crash
leaves at most a ``.appliance-*`` folder beside it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, List, Literal, Sequence

import cv2
import numpy as np

from appliance.audit import AuditLog, ImageWritten
from appliance.audit.log import audit_log_path
from appliance.config import ApplianceConfig
from appliance.config.transport import state_path
from appliance.errors import ApplianceError, InputError
from appliance.publish.outbox.store import outbox_path

log = logging.getLogger(__name__)


def device_state_folders(cfg: ApplianceConfig) -> List[Path]:
    """The folders holding the device's own state: the state directory, the outbox's and the audit log's."""
    return [
        state_path("{state_dir}", cfg.device_id),
        outbox_path(cfg.outbox, cfg.device_id).parent,
        audit_log_path(cfg).parent,
    ]


def _inside(path: Path, folder: Path) -> bool:
    real = Path(os.path.realpath(folder))
    return path == real or real in path.parents


def check_output(dst: Path, *, overwrite: bool, protected: Sequence[Path]) -> None:
    """Refuse, in one line naming the file, an output that would follow a link, replace a file
    without ``overwrite``, replace something that is not a file, or land in a protected folder."""
    if dst.name in ("", ".", ".."):
        raise InputError("not a file name", path=str(dst))
    if os.path.islink(dst):
        raise InputError("is a symbolic link; outputs never follow one (write to another name)", path=str(dst))
    if os.path.lexists(dst):
        if not os.path.isfile(dst):
            raise InputError("exists and is not a regular file", path=str(dst))
        if not overwrite:
            raise InputError("exists; add --overwrite to replace it", path=str(dst))
    parent = dst.parent
    if not parent.is_dir():
        raise InputError("folder does not exist", path=str(parent))
    real_parent = Path(os.path.realpath(parent))
    for folder in protected:
        if _inside(real_parent, folder):
            raise InputError(
                f"inside the device's state folder {folder} (its outbox and audit log); write elsewhere",
                path=str(dst),
            )


@contextlib.contextmanager
def atomic_output(dst: Path, *, overwrite: bool) -> Iterator[Path]:
    """Yields a path in a private folder beside ``dst`` to write the whole output to (same suffix,
    for OpenCV's choice of format); moved to ``dst`` when the block ends without an exception and
    the file exists. Nothing is left behind either way."""
    private = Path(tempfile.mkdtemp(prefix=".appliance-", dir=dst.parent))
    tmp = private / f"output{dst.suffix}"
    try:
        yield tmp
        if os.path.isfile(tmp):
            _sync(tmp)
            _move_into_place(tmp, dst, overwrite=overwrite)
            _sync(dst.parent)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _move_into_place(tmp: Path, dst: Path, *, overwrite: bool) -> None:
    if overwrite:
        if os.path.islink(dst):  # planted since the check: rename would replace the link, not follow it; still refuse
            raise InputError("is a symbolic link; outputs never follow one (write to another name)", path=str(dst))
        os.replace(tmp, dst)
        return
    try:
        os.link(tmp, dst)  # fails if the name exists, whatever it is (file, link, dangling link)
    except FileExistsError:
        raise InputError("exists; add --overwrite to replace it", path=str(dst)) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise InputError(f"cannot write: {exc.strerror}", path=str(dst)) from None
        # A file system without hard links (FAT on a USB stick): claim the name exclusively, then replace it.
        try:
            os.close(os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
        except FileExistsError:
            raise InputError("exists; add --overwrite to replace it", path=str(dst)) from None
        os.replace(tmp, dst)


def write_image(path: Path, image: np.ndarray) -> None:
    """Encode ``image`` in the format of ``path``'s suffix and write it to a new file (never an existing one)."""
    ok, data = cv2.imencode(path.suffix, image)
    if not ok:
        raise InputError("cannot encode an image of this type (use .jpg, .png or .bmp)", path=str(path))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data.tobytes())


def video_writer(path: Path, fps: float, width: int, height: int, *, shown_as: Path) -> cv2.VideoWriter:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise InputError("cannot open for writing as video (use .mp4 or .avi)", path=str(shown_as))
    return writer


def record_image(cfg: ApplianceConfig, command: Literal["blur", "preview"], dst: Path, frames: int) -> None:
    """Anonymized image data written to disk is an audit entry, where the device keeps a log."""
    if frames <= 0:
        return
    try:
        audit = AuditLog.from_config(cfg)
        audit.append(ImageWritten(command=command, output_path=str(dst.resolve()), frames=frames))
    except ApplianceError as exc:
        log.warning("%s; the image written is not in an audit log", exc)
