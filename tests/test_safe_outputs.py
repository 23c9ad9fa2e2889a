"""What ``blur`` and ``preview`` write: never through a symbolic link, never over an existing file
without ``--overwrite``, never into the device's state folder (outbox, audit log), and atomically
(a whole new file or the old one, no temporary file left behind)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List

import cv2
import pytest
from support.cli import appliance, one_error_line

from appliance.resources import data_file

FACE = str(data_file("selftest_face.jpg"))


def leftovers(folder: Path) -> List[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".appliance-")]


@pytest.mark.parametrize("command", ["blur", "preview"])
def test_an_output_that_is_a_symlink_is_refused_and_its_target_left_alone(tmp_path: Path, command: str) -> None:
    # The link points at what a hostile or careless user would aim it at: the device's audit log.
    state = tmp_path / "state"
    (state / "cam-1").mkdir(parents=True)
    victim = state / "cam-1" / "audit.jsonl"
    victim.write_bytes(b'{"seq":1}\n')
    link = tmp_path / "out.png"
    link.symlink_to(victim)
    args = ["blur", FACE, "-o", str(link)] if command == "blur" else ["preview", "--source", FACE, "-o", str(link)]
    for extra in ([], ["--overwrite"]):
        proc = appliance(*args, *extra, env={"STATE_DIRECTORY": str(state)})
        assert proc.returncode == 2, proc.stderr
        assert str(link) in one_error_line(proc) and "symbolic link" in proc.stderr
        assert victim.read_bytes() == b'{"seq":1}\n' and link.is_symlink()
    assert leftovers(tmp_path) == []


@pytest.mark.slow  # loads the models and blurs
def test_an_existing_file_is_replaced_only_with_overwrite_and_atomically(tmp_path: Path) -> None:
    out = tmp_path / "blurred.png"
    out.write_bytes(b"the technician's earlier file")
    proc = appliance("blur", FACE, "-o", str(out))
    assert proc.returncode == 2, proc.stderr
    assert "--overwrite" in one_error_line(proc)
    assert out.read_bytes() == b"the technician's earlier file"

    hard_link = tmp_path / "earlier.png"  # another name of the old file: it keeps the old bytes
    os.link(out, hard_link)
    proc = appliance("blur", FACE, "-o", str(out), "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert cv2.imread(str(out)).shape == cv2.imread(FACE).shape
    assert hard_link.read_bytes() == b"the technician's earlier file"  # a new file was moved in, not written over
    assert out.stat().st_ino != hard_link.stat().st_ino
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("where", ["state_dir", "outbox_folder", "link_into_state"])
def test_an_output_in_the_devices_state_folder_is_refused(tmp_path: Path, where: str) -> None:
    state = tmp_path / "state"
    device = state / "cam-1"
    device.mkdir(parents=True)
    site = tmp_path / "site.yaml"
    outbox = tmp_path / "elsewhere" / "outbox.sqlite3"
    outbox.parent.mkdir()
    site.write_text(f"device_id: cam-1\noutbox:\n  path: {outbox}\n")
    target = {
        "state_dir": device / "x.png",
        "outbox_folder": outbox.parent / "x.png",
        "link_into_state": tmp_path / "via" / "x.png",
    }[where]
    if where == "link_into_state":
        (tmp_path / "via").symlink_to(device)  # a folder link: the real folder is what counts
    proc = appliance("blur", FACE, "-o", str(target), "--config", str(site), env={"STATE_DIRECTORY": str(state)})
    assert proc.returncode == 2, proc.stderr
    assert "state folder" in one_error_line(proc)
    assert not (device / "x.png").exists() and not (outbox.parent / "x.png").exists()


def test_an_output_that_is_a_folder_or_in_a_missing_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir.png").mkdir()
    for target, needle in ((tmp_path / "dir.png", "not a regular file"), (tmp_path / "no" / "x.png", "does not exist")):
        proc = appliance("blur", FACE, "-o", str(target), "--overwrite")
        assert proc.returncode == 2, proc.stderr
        assert needle in one_error_line(proc)
