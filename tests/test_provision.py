"""``appliance provision``: site PKI, device bundles, batch mode, and faults once seen
(a re-provisioned key kept a loose mode, a device key was silently replaced, a missing --dir
gave a traceback)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from appliance.cli import main
from appliance.config import load_config
from appliance.errors import InputError
from appliance.provision.pki import init_site, make_ca, mint_client, write_pem
from appliance.provision.site import device_site_config, render_site_yaml
from appliance.resources import systemd_dir

BROKER = "mqtts://broker.example.org:8883"
CAMERA = "rtsp://10.0.1.7/stream1"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def site_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site") / "pki"
    init_site(root, ["broker.example.org"], ["10.0.0.5"])
    return root


def zones_file(tmp_path: Path, text: str = "") -> Path:
    path = tmp_path / "zones.yaml"
    path.write_text(text or (
        "zones:\n  - name: entrance\n    polygon: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]\n"
        "lines:\n  - name: gate\n    start: [0.5, 0]\n    end: [0.5, 1]\n"
    ))
    return path


def bundle_members(path: Path) -> dict:
    with tarfile.open(path) as tar:
        return {m.name: (m, tar.extractfile(m).read() if m.isfile() else b"") for m in tar.getmembers()}


# --------------------------------------------------------------------------- faults once seen


def test_write_pem_tightens_an_existing_key_file_to_0600(tmp_path: Path) -> None:
    key_path = tmp_path / "dev.key"
    key_path.write_text("old key, world-readable")
    os.chmod(key_path, 0o644)
    key, _ = make_ca()
    write_pem(key_path, key)
    assert mode(key_path) == 0o600
    assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_reprovisioning_refuses_to_replace_a_device_key_unless_forced(site_pki: Path, tmp_path: Path) -> None:
    out = tmp_path / "dev"
    crt, key = mint_client(site_pki, "cam-refuse", out=out)
    first = key.read_bytes()
    with pytest.raises(InputError, match="refusing to replace"):
        mint_client(site_pki, "cam-refuse", out=out)
    assert key.read_bytes() == first
    os.chmod(key, 0o644)  # e.g. copied around with a loose umask
    mint_client(site_pki, "cam-refuse", out=out, force=True)
    assert key.read_bytes() != first and mode(key) == 0o600
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    assert cert.subject.rfc4514_string().startswith("CN=cam-refuse")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True, timeout=120)


def test_missing_pki_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-pki"
    for args in (["device", "cam-1", "--board", "rpi4", "--source", CAMERA, "--broker-url", BROKER],
                 ["client", "control-room"]):
        proc = run_cli("provision", *args, "--dir", str(missing), "-o", str(tmp_path / "b")) if args[0] == "device" \
            else run_cli("provision", *args, "--dir", str(missing))
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and str(missing) in lines[0] and "provision init" in lines[0]


def test_the_legacy_script_forwards_to_the_same_checks(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "scripts/provision_device.py", "client", "x", "--dir", str(tmp_path / "nope")],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "no such folder" in proc.stderr


# --------------------------------------------------------------------------- bundles


def test_init_writes_keys_0600_and_refuses_a_second_ca(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    assert main(["provision", "init", "--dir", str(pki), "--broker-name", "localhost"]) == 0
    assert mode(pki / "ca.key") == 0o600 and mode(pki / "server.key") == 0o600
    assert mode(pki / "ca.crt") == 0o644
    before = (pki / "ca.key").read_bytes()
    assert main(["provision", "init", "--dir", str(pki)]) == 2
    assert (pki / "ca.key").read_bytes() == before


def test_device_bundle_holds_a_validated_config_keys_unit_acl_and_installer(site_pki: Path, tmp_path: Path) -> None:
    zones = zones_file(tmp_path)
    out = tmp_path / "bundles"
    assert main(["provision", "device", "cam-0007", "--dir", str(site_pki), "--board", "rpi4", "--source", CAMERA,
                 "--zones", str(zones), "--broker-url", BROKER, "-o", str(out)]) == 0
    bundle = out / "cam-0007.tar.gz"
    assert mode(bundle) == 0o600  # it carries the private key
    members = bundle_members(bundle)
    assert set(members) == {f"cam-0007/{n}" for n in (
        "install.sh", "site.yaml", "tls/ca.crt", "tls/cam-0007.crt", "tls/cam-0007.key", "appliance.service",
        "broker.acl")}
    assert members["cam-0007/tls/cam-0007.key"][0].mode == 0o600
    assert members["cam-0007/install.sh"][0].mode == 0o755
    assert members["cam-0007/tls/cam-0007.key"][1] == (site_pki / "devices/cam-0007/cam-0007.key").read_bytes()
    assert members["cam-0007/tls/ca.crt"][1] == (site_pki / "ca.crt").read_bytes()
    # The unit is the shipped file, copied at bundle time (not a second copy to keep in sync).
    assert members["cam-0007/appliance.service"][1] == (systemd_dir() / "appliance.service").read_bytes()

    site_path = tmp_path / "site.yaml"
    site_path.write_bytes(members["cam-0007/site.yaml"][1])
    cfg = load_config(site_path)
    assert cfg.device_id == "cam-0007" and cfg.profile.name == "rpi4"
    assert cfg.capture.source == CAMERA  # the camera is part of the bundle, named explicitly
    assert [z.name for z in cfg.zones] == ["entrance"] and [ln.name for ln in cfg.lines] == ["gate"]
    assert cfg.mqtt.url == BROKER
    assert cfg.mqtt.tls.key_file == "/etc/crowd-appliance/tls/cam-0007.key"
    assert cfg.outbox.path.startswith("/var/lib/crowd-appliance/")

    acl = members["cam-0007/broker.acl"][1].decode()
    assert "user cam-0007\ntopic write crowdmon/cam-0007/#\n" in acl
    script = members["cam-0007/install.sh"][1].decode()
    assert 'DEVICE_ID="cam-0007"' in script and "@" not in script.split("\n", 1)[0]
    assert "@DEVICE_ID@" not in script and "@APPLIANCE_VERSION@" not in script


@pytest.mark.parametrize(
    ("zones_text", "expected"),
    [
        ("zones:\n  - name: a\n    polygon: [[0, 0], [1, 0]]\n", "zones.yaml: zones.0"),
        ("capture:\n  source: \"0\"\n", "zones.yaml: capture: unknown key"),
        ("zones: [\n", "zones.yaml: line"),
    ],
)
def test_a_bad_zones_file_is_named_and_nothing_is_minted(
    site_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture, zones_text: str, expected: str
) -> None:
    zones = zones_file(tmp_path, zones_text)
    code = main(["provision", "device", "cam-badzones", "--dir", str(site_pki), "--board", "rpi4", "--source", CAMERA,
                 "--zones", str(zones), "--broker-url", BROKER, "-o", str(tmp_path / "b")])
    assert code == 2
    assert expected in capsys.readouterr().err
    assert not (site_pki / "devices" / "cam-badzones").exists()


def test_unknown_board_lists_the_known_ones(site_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["provision", "device", "cam-x", "--dir", str(site_pki), "--board", "rpi9", "--source", CAMERA,
                 "--broker-url", BROKER, "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "rpi9" in err and "rpi4" in err
    assert not (site_pki / "devices" / "cam-x").exists()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--broker-url", "http://x"], "--broker-url: 'http://x': must be mqtts://host:port"),
        # A plain mqtt:// device would connect without its certificate, i.e. without any identity.
        (["--broker-url", "mqtt://broker.example.org"], "--broker-url: 'mqtt://broker.example.org': must be mqtts://"),
        (["--broker-url", "mqtts://b.example.org:99999"], "--broker-url: 'mqtts://b.example.org:99999': port must be"),
        (["--broker-url", "mqtts://:8883"], "--broker-url: 'mqtts://:8883': has no host"),
        (["--broker-url", BROKER, "--topic-prefix", "city/#"], "--topic-prefix: 'city/#': must be 1-64 of"),
        (["--broker-url", BROKER, "--source", ""], "--source: '': is empty"),
        (["--broker-url", BROKER, "--source", " "], "--source: ' ': is empty (the camera this device counts"),
    ],
)
def test_a_bad_option_is_named_as_typed_not_as_a_field_of_the_generated_site_file(
    site_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture, options: list, expected: str
) -> None:
    code = main(["provision", "device", "cam-opt", "--dir", str(site_pki), "--board", "rpi4", "--source", CAMERA,
                 *options, "-o", str(tmp_path / "b")])
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"appliance: error: {expected}"), lines
    assert "site.yaml" not in lines[0]
    assert not (site_pki / "devices" / "cam-opt").exists() and not (tmp_path / "b").exists()


def test_a_device_without_a_camera_is_refused_and_only_an_explicit_sample_is_a_bench_device(
    site_pki: Path, tmp_path: Path
) -> None:
    """Without --source the bundle would run the demo clip and publish its counts as the square's."""
    args = ["provision", "device", "cam-nocam", "--dir", str(site_pki), "--board", "rpi4", "--broker-url", BROKER,
            "-o", str(tmp_path / "b")]
    proc = run_cli(*args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == ["appliance: error: --source: is required (the camera this device counts: /dev/video0, "
                     "rtsp://user@camera/stream, a pipeline; 'sample' only on a bench)"]
    assert not (site_pki / "devices" / "cam-nocam").exists() and not (tmp_path / "b").exists()

    assert main([*args, "--source", "sample"]) == 0
    site = yaml.safe_load(bundle_members(tmp_path / "b" / "cam-nocam.tar.gz")["cam-nocam/site.yaml"][1])
    assert site["capture"] == {"source": "sample"}


def test_the_help_says_the_source_is_required() -> None:
    proc = run_cli("provision", "device", "--help")
    assert "default: the board's" not in proc.stdout
    assert "required: this device's camera" in " ".join(proc.stdout.split())


def test_a_generated_site_file_that_fails_a_rule_across_options_names_the_bundle_file_not_a_temporary_one() -> None:
    site = device_site_config("cam-rule", "rpi4", BROKER, source=CAMERA)
    site["zones"] = [{"name": "a", "polygon": [[0, 0], [1, 0]]}]  # as if two valid inputs clashed
    with pytest.raises(InputError) as err:
        render_site_yaml(site)
    assert str(err.value).startswith("the site.yaml built for cam-rule: zones.0.polygon: ")


def test_rebuilding_a_bundle_needs_force_and_then_rekeys(site_pki: Path, tmp_path: Path) -> None:
    args = ["provision", "device", "cam-again", "--dir", str(site_pki), "--board", "rpi5", "--source", CAMERA,
            "--broker-url", BROKER, "-o", str(tmp_path)]
    assert main(args) == 0
    key = site_pki / "devices/cam-again/cam-again.key"
    first = key.read_bytes()
    assert main(args) == 2
    assert key.read_bytes() == first
    assert main([*args, "--force"]) == 0
    assert key.read_bytes() != first
    assert bundle_members(tmp_path / "cam-again.tar.gz")["cam-again/tls/cam-again.key"][1] == key.read_bytes()


def test_the_site_transparency_file_goes_into_every_bundle_and_a_bad_one_is_named(
    site_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    notice = tmp_path / "transparency.yaml"
    notice.write_text("transparency:\n  operator_name: City of Example\n  contact_url: https://example.org/cams\n")
    csv_path = tmp_path / "devices.csv"
    csv_path.write_text("id,board,source,zones\nsq-1,rpi4,/dev/video0,\nsq-2,rpi5,/dev/video0,\n")
    out = tmp_path / "bundles"
    assert main(["provision", "batch", str(csv_path), "--dir", str(site_pki), "--broker-url", BROKER,
                 "-o", str(out), "--transparency", str(notice)]) == 0
    for dev in ("sq-1", "sq-2"):
        site = yaml.safe_load(bundle_members(out / f"{dev}.tar.gz")[f"{dev}/site.yaml"][1])
        assert site["transparency"] == {"operator_name": "City of Example", "contact_url": "https://example.org/cams"}

    # The file holds the transparency section only, validated like any site file.
    notice.write_text("transparency:\n  operator_name: City of Example\nzones: []\n")
    code = main(["provision", "device", "sq-3", "--dir", str(site_pki), "--board", "rpi4", "--source", CAMERA,
                 "--broker-url", BROKER, "-o", str(out), "--transparency", str(notice)])
    assert code == 2 and f"{notice}: zones: unknown key" in capsys.readouterr().err
    notice.write_text("transparency:\n  operator: City of Example\n")
    code = main(["provision", "device", "sq-3", "--dir", str(site_pki), "--board", "rpi4", "--source", CAMERA,
                 "--broker-url", BROKER, "-o", str(out), "--transparency", str(notice)])
    assert code == 2 and f"{notice}: transparency.operator" in capsys.readouterr().err
    assert not (site_pki / "devices" / "sq-3").exists()


def test_batch_checks_every_row_before_minting_any(
    site_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    zones_file(tmp_path)
    csv_path = tmp_path / "devices.csv"
    csv_path.write_text("id,board,source,zones\nlot-1,rpi4,/dev/video0,zones.yaml\n"
                        "lot-2,jetson-orin,rtsp://10.0.1.8/s,\nlot-3,rpi9,/dev/video0,\n")
    out = tmp_path / "bundles"
    args = ["provision", "batch", str(csv_path), "--dir", str(site_pki), "--broker-url", BROKER, "-o", str(out)]
    assert main(args) == 2
    assert "rpi9" in capsys.readouterr().err
    assert not (site_pki / "devices" / "lot-1").exists() and not out.exists()

    csv_path.write_text("id,board,source,zones\nlot-1,rpi4,/dev/video0,zones.yaml\nlot-2,jetson-orin,rtsp://10.0.1.8/s,\n")
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["lot-1.tar.gz", "lot-2.tar.gz"]
    site = yaml.safe_load(bundle_members(out / "lot-1.tar.gz")["lot-1/site.yaml"][1])
    assert site["board"] == "rpi4" and site["zones"][0]["name"] == "entrance"
    assert site["capture"] == {"source": "/dev/video0"}
    lot2 = yaml.safe_load(bundle_members(out / "lot-2.tar.gz")["lot-2/site.yaml"][1])
    assert lot2["capture"] == {"source": "rtsp://10.0.1.8/s"}
    assert "zones" not in yaml.safe_load(bundle_members(out / "lot-2.tar.gz")["lot-2/site.yaml"][1])
    # A second run would re-key all 50 cameras: refused as a whole.
    assert main(args) == 2


@pytest.mark.parametrize(
    ("csv_text", "expected"),
    [
        ("name,board\na,rpi4\n", "missing column 'id'"),
        ("id,board,source,zones\na,rpi4,0,\na,rpi5,0,\n", "line 3: duplicate device id 'a'"),
        ("id,board,source,zones\na,rpi4,0,missing.yaml\n", "line 2: zones file not found"),
        ("id,board,source,zones\n", "no devices listed"),
        ("id,board,source,zones\nok,rpi4,0,\nbad id,rpi4,0,\n", "line 3: 'bad id': a device id is"),
        ("id,board,source,zones\nok,rpi9,0,\n", "line 2: board: unknown board profile 'rpi9'"),
        # The camera is part of each device's identity: no column, or an empty cell, is refused.
        ("id,board,zones\nok,rpi4,\n", "missing column 'source' (header must be: id,board,source,zones)"),
        ("id,board,source,zones\nok,rpi4,0,\nnocam,rpi4,,\n", "line 3: source: is required (the camera"),
        ("id,board,source\nbench,rpi4,sample\nnocam,rpi4, \n", "line 3: source: is required"),
    ],
)
def test_batch_csv_errors_name_the_file_and_line(
    site_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture, csv_text: str, expected: str
) -> None:
    csv_path = tmp_path / "devices.csv"
    csv_path.write_text(csv_text)
    assert main(["provision", "batch", str(csv_path), "--dir", str(site_pki), "--broker-url", BROKER]) == 2
    err = capsys.readouterr().err
    assert str(csv_path) in err and expected in err
