"""A bundle from ``appliance provision`` installs with its ``install.sh`` into a temporary root
(``--root``: no useradd, chown or systemctl), from a release built here without the network,
and the installed appliance passes ``selftest`` with the bundled config and key against a real
Mosquitto with mutual TLS whose ACL holds only the bundle's ``broker.acl`` lines for the device.
Installing again upgrades in place and keeps the outbox."""

from __future__ import annotations

import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Callable, Iterator

import pytest
from support.brokers import Broker, Subscriber, free_port, require_mosquitto, run_user_line
from support.repo import REPO
from support.wheelhouse import build_local_release

from appliance.cli import main

DEVICE = "cam-install-1"
FRAME = REPO / "tests" / "data" / "vtest_frame300.jpg"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_python_package_is_in_the_wheel() -> None:
    """An installed wheel (what install.sh puts on a device) must carry every subpackage."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "appliance").rglob("__init__.py")}
    assert on_disk <= listed, f"missing from pyproject.toml packages: {sorted(on_disk - listed)}"


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_local_release(REPO, tmp_path_factory.mktemp("release"))


@pytest.fixture
def site(tmp_path: Path) -> Path:
    pki = tmp_path / "pki"
    assert main(["provision", "init", "--dir", str(pki), "--broker-name", "localhost"]) == 0
    assert main(["provision", "client", "control-room", "--dir", str(pki)]) == 0
    return pki


@pytest.fixture
def acl_broker(tmp_path: Path, site: Path) -> Iterator[Callable[[str], Broker]]:
    """The shipped deploy/mosquitto config with the site's PKI and an ACL we write: the control
    room's read line plus whatever device lines the test appends (no pattern line)."""
    require_mosquitto()
    made = []

    def start(device_acl: str) -> Broker:
        work = tmp_path / "broker"
        work.mkdir()
        acl = work / "acl"
        acl.write_text("user control-room\ntopic read crowdmon/#\n" + device_acl)
        port = free_port()
        conf_text = (
            (REPO / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
            .replace("listener 8883", f"listener {port} 127.0.0.1")
            .replace("/etc/mosquitto/certs/", f"{site}/")
            .replace("/etc/mosquitto/crowd-appliance.acl", str(acl))
            .replace("/var/lib/mosquitto/", f"{work}/")
        )
        conf = work / "mosquitto.conf"
        conf.write_text(run_user_line() + conf_text)
        broker = Broker(port, conf, work, scheme="mqtts", host="localhost")
        broker.start()
        made.append(broker)
        return broker

    yield start
    for broker in made:
        broker.stop()


def install(bundle_dir: Path, root: Path, release: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(bundle_dir / "install.sh"), "--root", str(root), "--release", str(release),
         # No camera and no NTP in CI: those two checks are left out (and named SKIP), the rest must pass.
         "--skip", "camera", "--skip", "time"],
        capture_output=True, text=True, timeout=600, cwd=root,
    )


@pytest.mark.slow
@pytest.mark.mqtt
def test_bundle_installs_into_a_root_and_passes_selftest_over_mtls(
    tmp_path: Path, site: Path, release: Path, acl_broker: Callable[[str], Broker]
) -> None:
    # The broker must be up (for its port) before the bundle names it; its ACL is the bundle's.
    out = tmp_path / "bundles"
    port = free_port()
    notice = tmp_path / "transparency.yaml"
    notice.write_text("transparency:\n  operator_name: City of Example\n  contact_email: privacy@example.org\n")
    assert main(["provision", "device", DEVICE, "--dir", str(site), "--board", "rpi4", "--source", "sample",
                 "--broker-url", f"mqtts://localhost:{port}", "-o", str(out), "--transparency", str(notice)]) == 0
    unpacked = tmp_path / "unpacked"
    with tarfile.open(out / f"{DEVICE}.tar.gz") as tar:
        tar.extractall(unpacked, filter="data")
    bundle_dir = unpacked / DEVICE
    broker = acl_broker((bundle_dir / "broker.acl").read_text())
    # The site config names the port we reserved; point it at the broker's actual one.
    site_yaml = bundle_dir / "site.yaml"
    site_yaml.write_text(site_yaml.read_text().replace(f":{port}", f":{broker.port}"))

    root = tmp_path / "root"
    root.mkdir()
    proc = install(bundle_dir, root, release)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "skipping useradd" in proc.stdout
    assert "[PASS] broker" in proc.stdout and "[SKIP] camera" in proc.stdout
    assert "[PASS] notice       operator City of Example; contact privacy@example.org" in proc.stdout
    # Skipped checks: installed, but not "ready to deploy", so the service is not started for it.
    assert f"GREEN, but not ready to deploy: {DEVICE} installed" in proc.stdout
    assert "self-test passed" not in proc.stdout and "service appliance started" not in proc.stdout

    etc = root / "etc" / "crowd-appliance"
    assert mode(etc / "tls" / f"{DEVICE}.key") == 0o600
    assert mode(etc / "site.yaml") == 0o640 and mode(etc / "tls") == 0o750
    assert mode(root / "var" / "lib" / "crowd-appliance") == 0o750
    unit = root / "etc" / "systemd" / "system" / "appliance.service"
    assert unit.read_bytes() == (bundle_dir / "appliance.service").read_bytes()
    assert (etc / "tls" / f"{DEVICE}.key").read_bytes() == (site / "devices" / DEVICE / f"{DEVICE}.key").read_bytes()
    assert str(etc) in (etc / "site.yaml").read_text()  # --root rewrote the device paths into the root
    appliance = root / "opt" / "crowd-appliance" / ".venv" / "bin" / "appliance"
    installed = subprocess.run(
        [str(root / "opt/crowd-appliance/.venv/bin/python"), "-c", "import appliance; print(appliance.__file__)"],
        capture_output=True, text=True, check=True, cwd=tmp_path,  # not the checkout: python -c imports from cwd
    ).stdout
    assert str(root) in installed and str(REPO) not in installed  # a real install, not the checkout

    # The device's identity and ACL line work for real: the control room sees its status.
    room = Subscriber(broker, f"crowdmon/{DEVICE}/#", tls={"cert": site / "clients/control-room/control-room.crt",
                                                           "key": site / "clients/control-room/control-room.key"},
                      ca=site / "ca.crt")
    try:
        run = subprocess.run([str(appliance), "run", "--config", str(etc / "site.yaml"), "--source", str(FRAME),
                              "--max-frames", "3"], capture_output=True, text=True, timeout=300,
                             cwd=root / "var" / "lib" / "crowd-appliance")
        assert run.returncode == 0, run.stderr
        room.wait_for(lambda msgs: any(m.topic == f"crowdmon/{DEVICE}/status" for m in msgs), timeout_s=30)
    finally:
        room.close()
    outbox = root / "var" / "lib" / "crowd-appliance" / "outbox.sqlite3"
    assert outbox.is_file()
    before = outbox.read_bytes()

    # Again: upgrades in place, keeps the outbox, still green.
    again = install(bundle_dir, root, release)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"GREEN, but not ready to deploy: {DEVICE} installed" in again.stdout
    assert outbox.read_bytes() == before

    # A bundle from another site's CA over the same install: the broker refuses it, and it says red.
    other = tmp_path / "other-pki"
    assert main(["provision", "init", "--dir", str(other), "--broker-name", "localhost"]) == 0
    assert main(["provision", "device", DEVICE, "--dir", str(other), "--board", "rpi4", "--source", "sample",
                 "--broker-url", f"mqtts://localhost:{broker.port}", "-o", str(tmp_path / "other")]) == 0
    with tarfile.open(tmp_path / "other" / f"{DEVICE}.tar.gz") as tar:
        tar.extractall(tmp_path / "other-unpacked", filter="data")
    red = install(tmp_path / "other-unpacked" / DEVICE, root, release)
    assert red.returncode == 1, red.stdout + red.stderr
    assert "[FAIL] broker" in red.stdout and f"RED: {DEVICE} installed" in red.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [(["--bogus"], "unknown option --bogus"),
     (["--release", "/no/such/release", "--root", "/no/such/root"], "--root /no/such/root: no such folder"),
     (["--release", "/no/such/release"], "--release /no/such/release: no such folder")],
)
def test_install_script_usage_errors_exit_2(tmp_path: Path, site: Path, args: list, expected: str) -> None:
    assert main(["provision", "device", "cam-u", "--dir", str(site), "--board", "rpi4", "--source", "sample",
                 "--broker-url", "mqtts://localhost:8883", "-o", str(tmp_path)]) == 0
    with tarfile.open(tmp_path / "cam-u.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    proc = subprocess.run(["bash", str(tmp_path / "cam-u" / "install.sh"), *args], capture_output=True, text=True)
    assert proc.returncode == 2 and expected in proc.stderr


def test_install_script_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(REPO / "appliance" / "provision" / "install.sh")], check=True)

