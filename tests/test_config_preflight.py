"""`config validate` and `run` refuse the same configs at start, with the same one line.

The checks that need this machine (files, the password, a place for the outbox) live in
appliance/config/preflight.py and both commands call it, so a config that `config validate`
accepts cannot fail at `run`'s start for a reason it did not say. The command line
itself follows the same rule: a bad flag is one line and exit 2.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import List

import pytest
from support.brokers import Pki
from support.config_fuzz import call_main

from appliance.resources import models_dir

ROOT = Path(__file__).resolve().parent.parent


def the_error(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("appliance: error: ")
    return lines[0]


def site(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


BROKER = "mqtt: {url: 'mqtts://127.0.0.1:8883'"


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("capture: {source: /no/such/clip.mp4}", "capture.source", "/no/such/clip.mp4: no such file or folder"),
        ("capture: {source: TMP/empty-folder}", "capture.source", "no images"),
        ("capture: {source: TMP/not-a-video.mp4}", "capture.source", "cannot open as video"),
        (BROKER + ", tls: {ca_file: /no/ca.crt}}", "mqtt.tls.ca_file", "/no/ca.crt: no such file"),
        (BROKER + ", tls: {ca_file: TMP/ca.crt, cert_file: TMP/ca.crt}}", "mqtt.tls", "needs both cert_file and key"),
        (BROKER + ", tls: {key_file: TMP/empty-folder, cert_file: TMP/ca.crt}}", "mqtt.tls.key_file", "not a regular"),
        (BROKER + ", password_file: /no/password}", "mqtt.password_file", "/no/password: no such file"),
        (BROKER + ", password_env: APPLIANCE_TEST_UNSET_PASSWORD}", "mqtt.password_env", "is not set"),
        (BROKER + "}\noutbox: {path: ''}", "outbox.path", "is empty"),
        (BROKER + "}\noutbox: {path: TMP/empty-folder}", "outbox.path", "is a folder"),
        (BROKER + "}\noutbox: {path: TMP/ca.crt/outbox.sqlite3}", "outbox.path", "is not a folder"),
        # Placeholders are filled before the check and in the message: the path named is the real one.
        (BROKER + "}\ndevice_id: cam-9\noutbox: {path: 'TMP/ca.crt/{device_id}/o.db'}", "outbox.path", "/cam-9/o.db"),
        (
            BROKER + "}\noutbox: {path: TMP/o.db}\ntransparency: {audit_log_path: TMP/ca.crt/audit.jsonl}",
            "transparency.audit_log_path",
            "is not a folder",
        ),
        ("capture: {source: 'libcamera:x'}", "capture.source", "the camera number must be 0, 1, ..."),
        ("capture: {source: 'rtsp://u@cam/s', password_file: /no/pw}", "capture.password_file", "/no/pw: no such"),
        (
            "capture: {source: 'rtsp://u@cam/s', password_env: APPLIANCE_TEST_UNSET_PASSWORD}",
            "capture.password_env",
            "is not set",
        ),
        ("capture: {source: 'rtsp://cam/s', password_file: TMP/ca.crt}", "capture.password_file", "name the camera's"),
        (
            "capture: {source: 'rtsp://u:hunter2@cam/s', password_file: TMP/ca.crt}",
            "capture.password_file",
            "rtsp://u:***@cam/s: the URL has a password of its own",
        ),
        ("capture: {source: /dev/video0, password_file: TMP/ca.crt}", "capture.password_file", "only used with"),
        ("capture: {password_file: TMP/ca.crt, password_env: X}", "capture", "password_file or password_env, not"),
        ("capture: {source: 'libcamerasrc ! videoconvert ! appsink'}", "capture.source", "built without GStreamer"),
        ("board_overrides: {models: {face: no-such-model}}", "models.face", "unknown model 'no-such-model'"),
        ("board_overrides: {models: {face: ssdlite-person-int8}}", "models.face", "is a person model, not a face"),
    ],
)
def test_validate_and_run_refuse_the_same_config_with_the_same_line(
    tmp_path: Path, text: str, field: str, message: str
) -> None:
    (tmp_path / "empty-folder").mkdir()
    (tmp_path / "not-a-video.mp4").write_bytes(b"not a video")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    path = site(tmp_path, text.replace("TMP", str(tmp_path)) + "\n")
    validate = the_error(*call_main(["config", "validate", str(path)])[::2])
    assert f"{path}: {field}: " in validate and message in validate, validate
    # `run` stops on the same line before loading a model or opening anything.
    run = the_error(*call_main(["run", "--config", str(path), "--max-frames", "1"])[::2])
    assert run == validate


def test_a_config_that_validates_passes_the_same_checks_at_run_time(tmp_path: Path, monkeypatch, pki: Pki) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_bytes(pki.ca.read_bytes())
    monkeypatch.setenv("APPLIANCE_TEST_PASSWORD", "secret")
    path = site(
        tmp_path,
        f"mqtt: {{url: 'mqtts://127.0.0.1:8883', password_env: APPLIANCE_TEST_PASSWORD, tls: {{ca_file: {ca}}}}}\n"
        f"outbox: {{path: {tmp_path}/state/outbox.sqlite3}}\n",  # the folder is created at run time
    )
    code, out, err = call_main(["config", "validate", str(path), "--json"])
    assert code == 0, err
    assert json.loads(out)["ok"] is True
    assert not (tmp_path / "state").exists()  # validating creates nothing


@pytest.mark.parametrize(
    ("tls", "field", "message"),
    [
        ("ca_file: TMP/bogus.crt", "mqtt.tls.ca_file", "not a PEM CA certificate"),
        ("ca_file: CA, cert_file: A_CERT, key_file: B_KEY", "mqtt.tls.key_file", "not the key of"),
    ],
)
def test_validate_and_run_refuse_tls_files_a_connection_could_not_use(
    tmp_path: Path, pki: Pki, tls: str, field: str, message: str
) -> None:
    """What the MQTT client would refuse when it connects, validate refuses with the same line:
    a CA file that holds no certificate, a device certificate with another device's key."""
    (tmp_path / "bogus.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    tls = (
        tls.replace("TMP", str(tmp_path))
        .replace("A_CERT", str(pki.clients["device-a"]["cert"]))
        .replace("B_KEY", str(pki.clients["device-b"]["key"]))
        .replace("CA", str(pki.ca))
    )
    path = site(tmp_path, BROKER + f", tls: {{{tls}}}}}\n")
    validate = the_error(*call_main(["config", "validate", str(path)])[::2])
    assert f"{path}: {field}: " in validate and message in validate, validate
    run = the_error(*call_main(["run", "--config", str(path), "--max-frames", "1"])[::2])
    assert run == validate


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--max-frames", "-3"], "argument --max-frames: must be an integer at least 1, got '-3'"),
        (["run", "--max-frames", "0"], "--max-frames: must be an integer at least 1"),
        (["run", "--interval", "0"], "argument --interval: must be a number greater than 0, got '0'"),
        (["run", "--interval", "nan"], "--interval: must be a number greater than 0"),
        (["run", "--interval", "ten"], "--interval: must be a number greater than 0, got 'ten'"),
        (["bench", "--frames", "-1"], "--frames: must be an integer at least 1"),
        (["preview", "--skip", "-1"], "--skip: must be an integer at least 0"),
        (["run", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["run", "--broker", "mqtt://127.0.0.1:99999"], "mqtt.url: port must be a number from 1 to 65535"),
        (["config", "validate", "examples/site.yaml", "--config", "other.yaml"], "two different files"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(args: List[str], message: str) -> None:
    line = the_error(*call_main(args)[::2])
    assert message in line, line


def test_every_config_command_takes_config_and_board() -> None:
    code, out, err = call_main(["config", "validate", "--board", "rpi4", "examples/site.yaml", "--json"])
    assert code == 0, err
    assert json.loads(out)["board"] == "rpi4"
    code, out, err = call_main(["config", "validate", "--config", "examples/site.yaml"])
    assert code == 0 and "examples/site.yaml: ok" in out, err
    code, out, err = call_main(["models", "verify", "--config", "examples/site.yaml", "--board", "rpi4", "--json"])
    assert code == 0, err
    report = json.loads(out)
    assert report["selected"] == {"face": "centerface-int8", "person": "ssdlite-person-int8"}
    code, _, err = call_main(["models", "verify", "--config", "no-such.yaml"])
    assert "no-such.yaml: file not found" in the_error(code, err)


def test_models_verify_json_gives_expected_and_actual_hashes(tmp_path: Path) -> None:
    copy = tmp_path / "models"
    shutil.copytree(models_dir(), copy)
    code, out, err = call_main(["models", "verify", "--json"])
    files = json.loads(out)["files"]
    assert code == 0 and files, err
    assert all(f["ok"] and f["expected_sha256"] == f["actual_sha256"] for f in files)

    from appliance.models.verify import verify_models

    victim = copy / files[0]["file"]
    victim.write_bytes(victim.read_bytes() + b"\0")
    (copy / files[-1]["file"]).unlink()
    report = verify_models(copy).to_dict()
    assert report["ok"] is False
    damaged = report["files"][0]
    assert damaged["ok"] is False and damaged["actual_sha256"] != damaged["expected_sha256"]
    missing = report["files"][-1]
    assert missing["ok"] is False and missing["actual_sha256"] is None and len(missing["expected_sha256"]) == 64
