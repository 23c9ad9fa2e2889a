"""The command line as scripts see it: stdout, one-line errors on stderr, exit codes 0 / 1 / 2."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from typing import List

import cv2
import jsonschema
import pytest
from support.cli import appliance, one_error_line
from support.independent_face_detector import detect_faces as independent_faces

from appliance.config import load_config
from appliance.models.manifest import load_manifest
from appliance.resources import data_file, models_dir

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "docs" / "schemas"


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_run_without_broker_prints_what_it_would_publish_and_every_payload_is_schema_valid() -> None:
    proc = appliance("run", "--max-frames", "120", "--interval", "5", "--device-id", "cli-test")
    assert proc.returncode == 0, proc.stderr
    messages = [json.loads(line) for line in proc.stdout.splitlines()]
    topics = [m["topic"] for m in messages]
    assert topics[0] == "crowdmon/cli-test/status" and messages[0]["payload"]["state"] == "online"
    assert topics[-1] == "crowdmon/cli-test/status" and messages[-1]["payload"]["state"] == "offline"
    # The retained notice follows the birth; it is a document, not a message: no envelope (no seq).
    assert topics[1] == "crowdmon/cli-test/notice"
    notice_schema = json.loads((SCHEMAS / "notice.json").read_text())
    jsonschema.validate(messages[1]["payload"], notice_schema)
    messages = [m for m in messages if not m["topic"].endswith("/notice")]
    counts = [m["payload"] for m in messages if m["topic"].endswith("/counts")]
    # 12 s of 10 fps video in [start, end) windows of 5 s: every frame in exactly one window.
    assert [c["frames_analyzed"] for c in counts] == [50, 50, 20]
    assert [c["window_end"] for c in counts[:-1]] == [c["window_start"] for c in counts[1:]]
    assert all(c["total"]["max"] >= 1 for c in counts)  # people walk through the sample clip
    assert any(m["topic"].endswith("/health") for m in messages)
    # One seq per message; the 'offline' status carries the seq reserved at birth (birth + 1) so the
    # last will could be registered before connecting (docs/control-room.md).
    seqs = [m["payload"]["seq"] for m in messages[:-1]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert messages[-1]["payload"]["seq"] == messages[0]["payload"]["seq"] + 1
    for message in messages:
        kind = message["topic"].rsplit("/", 1)[1]
        schema = json.loads((SCHEMAS / f"{kind}.json").read_text())
        jsonschema.validate(message["payload"], schema)


@pytest.mark.slow
def test_count_json_gives_one_object_per_frame() -> None:
    proc = appliance("count", str(data_file("sample_vtest.mp4")), "--json", "--config", "examples/site.yaml")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["frame"] for r in rows] == list(range(300))
    assert all(isinstance(r["count"], int) for r in rows)
    assert max(r["count"] for r in rows) >= 3
    assert any(r.get("zones", {}).get("walkway", 0) > 0 for r in rows)


def test_blur_writes_an_image_of_the_same_size_with_no_face_left(tmp_path: Path) -> None:
    out = tmp_path / "blurred.png"
    proc = appliance("blur", str(data_file("selftest_face.jpg")), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    original = cv2.imread(str(data_file("selftest_face.jpg")))
    blurred = cv2.imread(str(out))
    assert blurred.shape == original.shape
    assert len(independent_faces(original)) == 1
    assert len(independent_faces(blurred, score_threshold=0.3)) == 0


@pytest.mark.slow
def test_blur_a_video_keeps_size_and_frame_count(tmp_path: Path) -> None:
    clip = tmp_path / "clip.avi"
    cap = cv2.VideoCapture(str(data_file("sample_vtest.mp4")))
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (768, 576))
    for _ in range(8):
        writer.write(cap.read()[1])
    writer.release()
    out = tmp_path / "out.mp4"
    proc = appliance("blur", str(clip), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    check = cv2.VideoCapture(str(out))
    frames = 0
    while True:
        ok, frame = check.read()
        if not ok:
            break
        assert frame.shape == (576, 768, 3)
        frames += 1
    assert frames == 8


def test_models_verify_and_config_commands_are_machine_readable() -> None:
    proc = appliance("models", "verify", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["ok"] is True
    proc = appliance("config", "validate", "examples/site.yaml", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["board"] == "x86-generic"
    proc = appliance("config", "schema")
    jsonschema.Draft202012Validator.check_schema(json.loads(proc.stdout))


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "--config", "no-such-site.yaml"], "no-such-site.yaml: file not found"),
        (["run", "--source", "/no/such/clip.mp4", "--max-frames", "1"], "/no/such/clip.mp4: no such file"),
        (["run", "--broker", "tcp://127.0.0.1:1", "--max-frames", "1"], "mqtt.url"),
        (["run", "--board", "toaster", "--max-frames", "1"], "unknown board profile 'toaster'"),
        (["blur", "/no/such/face.jpg", "-o", "/tmp/x.jpg"], "/no/such/face.jpg"),
        (["config", "validate", "tests/data/does-not-exist.yaml"], "does-not-exist.yaml"),
    ],
)
def test_bad_input_gives_one_line_and_exit_code_2(args: List[str], needle: str) -> None:
    proc = appliance(*args)
    assert proc.returncode == 2, proc.stderr
    assert needle in one_error_line(proc)
    assert proc.stdout == ""  # nothing was published


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        # `appliance config validate "$SITE"` with SITE unset must not pass by checking the defaults.
        (["config", "validate", ""], "FILE: empty file name"),
        (["config", "validate", "--config", " "], "--config: empty file name"),
        (["run", "--config", "", "--max-frames", "1"], "--config: empty file name"),
        (["models", "verify", "--config", ""], "--config: empty file name"),
    ],
)
def test_an_empty_config_file_name_is_refused_not_taken_as_the_defaults(args: List[str], needle: str) -> None:
    proc = appliance(*args)
    assert proc.returncode == 2, proc.stderr
    assert needle in one_error_line(proc)
    assert proc.stdout == ""


def test_validate_without_a_file_says_it_checked_the_built_in_defaults_and_for_which_board() -> None:
    proc = appliance("config", "validate")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("no site file given; the built-in defaults: ok (")
    assert f"board {load_config().profile.name}," in proc.stdout
    proc = appliance("config", "validate", "--board", "rpi4")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("no site file given; the built-in defaults with --board rpi4: ok (")
    assert "board rpi4," in proc.stdout
    proc = appliance("config", "validate", "--json")
    assert json.loads(proc.stdout)["file"] is None  # scripts tell the two cases apart by "file"


def test_bad_field_in_a_site_file_names_file_and_field(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("device_id: pole-1\nzones:\n  - name: gate\n    polygon: [[0, 0], [1, 0]]\n")
    proc = appliance("config", "validate", str(site))
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert str(site) in line and "zones.0.polygon" in line


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["missing", "tampered"])
def test_a_missing_or_modified_model_is_refused_before_any_frame(tmp_path: Path, damage: str) -> None:
    copy = tmp_path / "models"
    shutil.copytree(models_dir(), copy)
    victim = copy / load_manifest().get(load_config().profile.models.face).file  # the face model in use
    if damage == "missing":
        victim.unlink()
    else:
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(bytes(data))
    proc = appliance("run", "--max-frames", "5", env={"APPLIANCE_MODELS_DIR": str(copy)})
    assert proc.returncode in (1, 2), proc.stderr
    assert victim.name in one_error_line(proc) or victim.name in proc.stderr
    assert proc.stdout == ""  # no birth, no counts: the device did not start on a bad model
    proc = appliance("models", "verify", env={"APPLIANCE_MODELS_DIR": str(copy)})
    assert proc.returncode == 1


@pytest.mark.slow
def test_unreachable_broker_is_reported_in_one_line_and_counting_goes_on(tmp_path: Path) -> None:
    port = unused_port()
    site = tmp_path / "site.yaml"
    site.write_text("mqtt: {connect_timeout_s: 1}\npublish: {close_timeout_s: 1}\n")
    proc = appliance(
        "run",
        "--config",
        str(site),
        "--broker",
        f"mqtt://127.0.0.1:{port}",
        "--outbox",
        str(tmp_path / "outbox.sqlite3"),
        "--max-frames",
        "20",
    )
    assert proc.returncode == 0, proc.stderr
    assert f"127.0.0.1:{port}" in proc.stderr
    assert "outbox" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "outbox.sqlite3").exists()  # the counts wait there for the broker
