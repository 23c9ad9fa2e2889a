"""docs/technician.md's camera recipes, as written: each ``capture:`` block is validated as ``run``
validates it and read by the self-test's camera check, against a real camera of its kind where this
machine can have one (an RTSP server on loopback; the byte stream of rpicam-vid and gst-launch-1.0).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Dict

import pytest
import yaml
from support.cameras import RtspCamera, StandIn
from support.repo import REPO

from appliance.config.preflight import load_runnable_config
from appliance.errors import SourceError
from appliance.selftest import check_camera

DOC = REPO / "docs" / "technician.md"
KINDS = {
    "usb": "### USB camera",
    "ip": "### IP camera (RTSP, ONVIF)",
    "pi": "### Raspberry Pi camera module",
    "jetson": "### Jetson CSI camera",
}


def recipe(kind: str) -> Dict[str, Any]:
    """The first ```yaml block under the recipe's heading."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index(KINDS[kind]) :]
    block = re.search(r"^```yaml\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert block is not None, f"no yaml block under {KINDS[kind]}"
    loaded = yaml.safe_load(block.group(1))
    assert list(loaded) == ["capture"]
    return loaded["capture"]


def runnable(tmp_path: Path, capture: Dict[str, Any]) -> Any:
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({"device_id": "recipe-1", "capture": {**capture, "read_timeout_s": 10}}))
    return load_runnable_config(site)  # what `config validate` and `run` check


def test_the_usb_recipe_names_a_v4l2_camera(tmp_path: Path) -> None:
    cfg = runnable(tmp_path, recipe("usb"))
    # No camera on the test machine: the check gets as far as opening the V4L2 device it names.
    with pytest.raises(SourceError, match=r"^/dev/video0: cannot open camera or stream$"):
        check_camera(cfg, timeout_s=5)


@pytest.mark.slow
def test_the_ip_camera_recipe_reads_an_rtsp_camera_with_its_password_in_a_file(
    tmp_path: Path, rtsp_camera_factory: Callable[..., RtspCamera]
) -> None:
    capture = recipe("ip")
    user = re.match(r"rtsp://([^@:]+)@", capture["source"])
    assert user is not None  # the user in the URL, the password not
    camera = rtsp_camera_factory(user=user.group(1), password="from-the-file")
    camera.start()
    (tmp_path / "camera.pw").write_text("from-the-file\n")
    capture["source"] = re.sub(r"@[^/]+/.*$", "@" + camera.url.removeprefix("rtsp://"), capture["source"])
    capture["password_file"] = str(tmp_path / "camera.pw")
    found = check_camera(runnable(tmp_path, capture), timeout_s=30)
    assert found.startswith(f"rtsp://{user.group(1)}@127.0.0.1:{camera.port}/cam: ") and "changing" in found


@pytest.mark.parametrize(("kind", "program"), [("pi", "rpicam-vid"), ("jetson", "gst-launch-1.0")])
def test_the_board_camera_recipes_read_the_board_camera_program(
    tmp_path: Path, standin: StandIn, kind: str, program: str
) -> None:
    found = check_camera(runnable(tmp_path, recipe(kind)), timeout_s=30)
    assert re.match(r"(libcamera|argus):0: 768x576, \d+ frames, mean grey \d+, changing$", found), found
    assert standin.runs()[0]["argv"][0] == program
