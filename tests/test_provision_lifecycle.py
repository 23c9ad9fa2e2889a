"""A device's certificate over its whole life: a new bundle around the same key (``--rebundle``), a
renewal before expiry (``rotate``: old and new both valid until the device has switched), and
revocation (``revoke``) onto the site CRL that the shipped Mosquitto config reads, tested against a
real broker: the revoked device is refused at the TLS handshake while the others keep publishing."""

from __future__ import annotations

import datetime as dt
import io
import json
import signal
import ssl
import tarfile
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.enums import CallbackAPIVersion
from support.brokers import Broker, Pki, control_room
from support.publishing import counts, health_of, printing_publisher, started, tls_cfg

from appliance.cli import main
from appliance.config import load_config
from appliance.provision.crl import crl_path, read_crl
from appliance.provision.pki import load_ca, write_pem
from appliance.publish import BrokerRejected, check_broker
from appliance.publish.certificate import days_left
from appliance.selftest import SelftestReport, SkipCheck, _run, check_certificate

BROKER = "mqtts://broker.example.org:8883"


def provision(pki: Path, device: str, out: Path, *extra: str) -> int:
    return main(["provision", "device", device, "--dir", str(pki), "--board", "rpi4", "--source", "/dev/video0",
                 "--broker-url", BROKER, "-o", str(out), *extra])


def bundle_file(bundle: Path, name: str) -> bytes:
    with tarfile.open(bundle) as tar:
        member = tar.extractfile(f"{bundle.name.removesuffix('.tar.gz')}/{name}")
        assert member is not None
        return member.read()


def cert_of(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def revoked_serials(pki: Path) -> set:
    return {r.serial for r in read_crl(pki, load_ca(pki)[1])[0]}


@pytest.fixture
def site(tmp_path: Path) -> Path:
    pki = tmp_path / "pki"
    assert main(["provision", "init", "--dir", str(pki), "--broker-name", "localhost"]) == 0
    return pki


# --------------------------------------------------------------------------- rebundle


def test_rebundle_keeps_the_key_and_certificate_and_takes_the_new_zones_and_notice(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    assert provision(site, "cam-r", out) == 0
    bundle = out / "cam-r.tar.gz"
    key, crt = bundle_file(bundle, "tls/cam-r.key"), bundle_file(bundle, "tls/cam-r.crt")

    zones = tmp_path / "zones.yaml"
    zones.write_text("zones:\n  - name: steps\n    polygon: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]\n")
    notice = tmp_path / "transparency.yaml"
    notice.write_text("transparency:\n  operator_name: City of Example\n  contact_email: new@example.org\n")
    assert provision(site, "cam-r", out, "--rebundle", "--zones", str(zones), "--transparency", str(notice)) == 0
    assert bundle_file(bundle, "tls/cam-r.key") == key and bundle_file(bundle, "tls/cam-r.crt") == crt
    site_yaml = yaml.safe_load(bundle_file(bundle, "site.yaml"))
    assert site_yaml["zones"][0]["name"] == "steps"
    assert site_yaml["transparency"]["contact_email"] == "new@example.org"
    assert site_yaml["capture"] == {"source": "/dev/video0"}


@pytest.mark.parametrize(
    ("setup", "extra", "expected"),
    [
        ("none", ["--rebundle"], "no key and certificate for cam-q in this PKI (provision the device first"),
        ("provisioned", ["--rebundle", "--force"], "--rebundle keeps the device's key, --force replaces it: give one"),
        ("revoked", ["--rebundle"], "cam-q.crt: revoked on "),
        ("expired", ["--rebundle"], "cam-q.crt: expired on 20"),
        ("provisioned", [], "cam-q.key: exists; refusing to replace this device's key (--rebundle: a new bundle"),
    ],
)
def test_rebundle_refuses_what_it_cannot_keep_in_one_line(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture, setup: str, extra: list, expected: str
) -> None:
    out = tmp_path / "b"
    if setup != "none":
        assert provision(site, "cam-q", out) == 0
    if setup == "revoked":
        assert main(["provision", "revoke", "cam-q", "--dir", str(site)]) == 0
    if setup == "expired":
        expire(site, "cam-q")
    before = {p: p.read_bytes() for p in (site / "devices").rglob("*") if p.is_file()} if setup != "none" else {}
    capsys.readouterr()
    assert provision(site, "cam-q", tmp_path / "again", *extra) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
    assert not (tmp_path / "again").exists()
    assert {p: p.read_bytes() for p in (site / "devices").rglob("*") if p.is_file()} == before


def expire(site: Path, device: str) -> None:
    """Replace the device's certificate by one for the same key that expired yesterday."""
    ca_key, ca_cert = load_ca(site)
    folder = site / "devices" / device
    key = serialization.load_pem_private_key((folder / f"{device}.key").read_bytes(), password=None)
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, device)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now - dt.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    write_pem(folder / f"{device}.crt", cert)


# --------------------------------------------------------------------------- rotate and revoke


def test_rotate_signs_a_new_certificate_for_the_same_key_and_keeps_the_old_one_valid(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert provision(site, "cam-t", tmp_path / "b") == 0
    folder = site / "devices" / "cam-t"
    key_before = (folder / "cam-t.key").read_bytes()
    old = cert_of(folder / "cam-t.crt")
    capsys.readouterr()
    renew = tmp_path / "renew"
    assert main(["provision", "rotate", "cam-t", "--dir", str(site), "--days", "400", "-o", str(renew)]) == 0
    out = capsys.readouterr().out
    new = cert_of(folder / "cam-t.crt")
    assert "new certificate for cam-t, valid until" in out and "(399 days left)" in out
    assert (folder / "cam-t.key").read_bytes() == key_before
    assert new.serial_number != old.serial_number and new.public_key() == old.public_key()
    assert days_left(new) == 399 and new.issuer == old.issuer
    assert (tmp_path / "renew" / "cam-t.crt").read_bytes() == (folder / "cam-t.crt").read_bytes()
    # Both stay valid until the device has switched: nothing is revoked by a renewal.
    assert {p.stem for p in (folder / "issued").glob("*.crt")} == {f"{old.serial_number:x}", f"{new.serial_number:x}"}
    assert revoked_serials(site) == set()

    # Once the device runs the new one, the old one is retired; the one in use stays valid.
    assert main(["provision", "revoke", "cam-t", "--dir", str(site), "--superseded"]) == 0
    assert revoked_serials(site) == {old.serial_number}
    # A rebuilt bundle carries the renewed certificate.
    assert provision(site, "cam-t", tmp_path / "b", "--rebundle") == 0
    assert bundle_file(tmp_path / "b" / "cam-t.tar.gz", "tls/cam-t.crt") == (folder / "cam-t.crt").read_bytes()


def test_revoke_puts_every_certificate_of_the_device_on_a_crl_signed_by_the_site_ca(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert provision(site, "cam-v", tmp_path / "b") == 0
    assert provision(site, "cam-w", tmp_path / "b") == 0
    first = cert_of(site / "devices/cam-v/cam-v.crt")
    assert main(["provision", "rotate", "cam-v", "--dir", str(site)]) == 0
    second = cert_of(site / "devices/cam-v/cam-v.crt")
    capsys.readouterr()
    assert main(["provision", "revoke", "cam-v", "--dir", str(site)]) == 0
    out = capsys.readouterr().out
    assert "revoked 2 certificate(s) of cam-v" in out and "systemctl reload mosquitto" in out
    assert revoked_serials(site) == {first.serial_number, second.serial_number}
    crl = x509.load_pem_x509_crl(crl_path(site).read_bytes())
    assert crl.is_signature_valid(load_ca(site)[1].public_key())  # type: ignore[arg-type]
    reasons = {e.extensions.get_extension_for_class(x509.CRLReason).value.reason for e in crl}
    assert reasons == {x509.ReasonFlags.key_compromise}
    # Again: nothing new, the list is unchanged apart from its number; a renewal is refused.
    assert main(["provision", "revoke", "cam-v", "--dir", str(site)]) == 0
    assert "no certificate of cam-v left to revoke" in capsys.readouterr().out
    assert revoked_serials(site) == {first.serial_number, second.serial_number}
    assert main(["provision", "rotate", "cam-v", "--dir", str(site)]) == 2
    assert "revoked on" in capsys.readouterr().err
    # A re-key gives the device a new identity that the CRL does not name.
    assert provision(site, "cam-v", tmp_path / "b", "--force") == 0
    assert cert_of(site / "devices/cam-v/cam-v.crt").serial_number not in revoked_serials(site)


def test_revoke_and_rotate_of_an_unknown_device_are_one_line(
    site: Path, capsys: pytest.CaptureFixture
) -> None:
    for action in ("revoke", "rotate"):
        assert main(["provision", action, "cam-nobody", "--dir", str(site)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "cam-nobody" in err[0] and "Traceback" not in err[0]


def test_a_site_made_before_the_crl_gets_one_with_its_next_bundle(site: Path, tmp_path: Path) -> None:
    crl_path(site).unlink()
    assert provision(site, "cam-old", tmp_path / "b") == 0
    assert crl_path(site).is_file() and revoked_serials(site) == set()
    crl = x509.load_pem_x509_crl(crl_path(site).read_bytes())
    # The broker refuses every client once a CRL's next update has passed: it lasts as long as the CA.
    assert crl.next_update_utc is not None and crl.next_update_utc >= load_ca(site)[1].not_valid_after_utc


# --------------------------------------------------------------------------- a real broker


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """This module's own site (revoking changes it), in the shape the shipped-config broker fixture
    (conftest's tls_mosquitto) takes: devices a, b and the control room, made with the CLI."""
    root = tmp_path / "site"
    assert main(["provision", "init", "--dir", str(root), "--broker-name", "localhost"]) == 0
    assert main(["provision", "client", "control-room", "--dir", str(root)]) == 0
    clients = {"control-room": {"cert": root / "clients/control-room/control-room.crt",
                                "key": root / "clients/control-room/control-room.key"}}
    for device in ("device-a", "device-b"):
        assert provision(root, device, tmp_path / "bundles") == 0
        clients[device] = {"cert": root / f"devices/{device}/{device}.crt",
                           "key": root / f"devices/{device}/{device}.key"}
    return Pki(root, root / "ca.crt", root / "ca.crt", clients)


def handshake(broker: Broker, pki: Pki, cert: Path, key: Path) -> str:
    """One raw TLS connection with this certificate: 'ok' when MQTT connects, else the error."""
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"probe-{cert.stem}",
                         protocol=paho.MQTTv311)
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    ctx.load_cert_chain(str(cert), str(key))
    client.tls_set_context(ctx)
    try:
        client.connect(broker.host, broker.port, keepalive=10)
        for _ in range(100):
            client.loop(0.05)
            if client.is_connected():
                return "ok"
        return "not connected"
    except (ssl.SSLError, OSError) as exc:
        return str(exc)
    finally:
        client.disconnect()


# Mosquitto 2.0 with OpenSSL 3 (what Debian ships) logs a refused client certificate as this.
REFUSAL = "certificate verify failed"


def reload_broker(broker: Broker) -> None:
    """What `systemctl reload mosquitto` does; waits for the broker to log it."""
    assert broker.proc is not None
    seen = broker.log().count("Reloading config")
    broker.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while broker.log().count("Reloading config") == seen:
        assert time.monotonic() < deadline, "mosquitto did not reload"
        time.sleep(0.05)


@pytest.mark.mqtt
def test_a_revoked_device_is_refused_at_the_handshake_while_the_others_keep_publishing(
    tls_mosquitto: Broker, tmp_path: Path, pki: Pki, subscribe, publishers
) -> None:
    room = control_room(subscribe, tls_mosquitto, pki)
    pub_a = started(tls_cfg(tls_mosquitto, tmp_path, "device-a", pki.ca, pki, cert_of="device-a"), publishers)
    pub_b = started(tls_cfg(tls_mosquitto, tmp_path, "device-b", pki.ca, pki, cert_of="device-b"), publishers)
    for pub in (pub_a, pub_b):
        pub.connect(timeout_s=10)
        pub.publish(counts(1))
    room.wait_for(lambda ms: {m.topic for m in ms} >= {"crowdmon/device-a/counts", "crowdmon/device-b/counts"})

    assert main(["provision", "revoke", "device-a", "--dir", str(pki.dir)]) == 0
    reload_broker(tls_mosquitto)

    a = pki.clients["device-a"]
    refused_before = tls_mosquitto.log().count(REFUSAL)
    assert handshake(tls_mosquitto, pki, a["cert"], a["key"]) != "ok"
    cfg_a = tls_cfg(tls_mosquitto, tmp_path, "device-a", pki.ca, pki, cert_of="device-a")
    with pytest.raises(BrokerRejected, match=r"closed the TLS connection before CONNACK; .* not revoked"):
        check_broker(cfg_a.mqtt, "device-a", timeout_s=10)
    # The broker says why in its log, on every refused handshake (the line the integrator looks for).
    assert tls_mosquitto.log().count(REFUSAL) >= refused_before + 2

    # Device B, connected before the reload, keeps publishing; a new connection of B is accepted too.
    pub_b.publish(counts(2))
    room.wait_for(lambda ms: len([m for m in ms if m.topic == "crowdmon/device-b/counts"]) >= 2)
    b = pki.clients["device-b"]
    assert handshake(tls_mosquitto, pki, b["cert"], b["key"]) == "ok"
    room_cert = pki.clients["control-room"]
    assert handshake(tls_mosquitto, pki, room_cert["cert"], room_cert["key"]) == "ok"


@pytest.mark.mqtt
def test_during_a_renewal_old_and_new_certificates_both_work_until_the_old_one_is_retired(
    tls_mosquitto: Broker, tmp_path: Path, pki: Pki
) -> None:
    folder = pki.dir / "devices" / "device-a"
    key = folder / "device-a.key"
    old = tmp_path / "old.crt"
    old.write_bytes((folder / "device-a.crt").read_bytes())
    assert main(["provision", "rotate", "device-a", "--dir", str(pki.dir)]) == 0
    new = folder / "device-a.crt"
    assert handshake(tls_mosquitto, pki, old, key) == "ok"
    assert handshake(tls_mosquitto, pki, new, key) == "ok"

    assert main(["provision", "revoke", "device-a", "--dir", str(pki.dir), "--superseded"]) == 0
    reload_broker(tls_mosquitto)
    assert handshake(tls_mosquitto, pki, old, key) != "ok"
    assert handshake(tls_mosquitto, pki, new, key) == "ok"


# --------------------------------------------------------------------------- expiry, seen on the device


@pytest.mark.mqtt
def test_health_carries_the_days_left_of_the_certificate_the_device_logs_in_with(
    tls_mosquitto: Broker, tmp_path: Path, pki: Pki, subscribe, publishers
) -> None:
    room = control_room(subscribe, tls_mosquitto, pki)
    cert = pki.clients["device-b"]["cert"]
    pub = started(tls_cfg(tls_mosquitto, tmp_path, "device-b", pki.ca, pki, cert_of="device-b"), publishers)
    pub.connect(timeout_s=10)
    pub.publish(health_of(pub))
    got = room.wait_for(lambda ms: any(m.topic == "crowdmon/device-b/health" for m in ms))
    health = next(m.payload for m in got if m.topic == "crowdmon/device-b/health")
    assert health["cert_days_left"] == days_left(cert_of(cert)) and 800 < health["cert_days_left"] <= 825


def test_without_a_client_certificate_health_says_null() -> None:
    stream = io.StringIO()
    pub = printing_publisher(load_config(), stream)
    pub.start()
    pub.publish(health_of(pub))
    health = [json.loads(line)["payload"] for line in stream.getvalue().splitlines() if '/health"' in line]
    assert health[0]["cert_days_left"] is None


def certificate_config(tmp_path: Path, site: Path, days: int):
    """A device config whose client certificate has ``days`` of validity left (negative: expired)."""
    ca_key, ca_cert = load_ca(site)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "cam-exp")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=900))
        .not_valid_after(now + dt.timedelta(days=days, hours=1))
        .sign(ca_key, hashes.SHA256())
    )
    path = write_pem(tmp_path / f"cam-{days}.crt", cert)
    return load_config(overrides={"device_id": "cam-exp", "mqtt": {
        "url": "mqtts://localhost:8883", "tls": {"cert_file": str(path), "key_file": str(path)}}})


@pytest.mark.parametrize(
    ("days", "status", "detail"),
    [
        (400, "pass", "400 days left (valid until "),
        (29, "warn", "29 days left (valid until "),
        (-2, "fail", "expired on "),
    ],
)
def test_selftest_shows_the_days_left_and_warns_under_30(
    site: Path, tmp_path: Path, days: int, status: str, detail: str
) -> None:
    cfg = certificate_config(tmp_path, site, days)
    report = SelftestReport()
    _run(report, "certificate", lambda: check_certificate(cfg))
    check = report.checks[0]
    assert check.status == status and detail in check.detail and str(cfg.mqtt.tls.cert_file) in check.detail
    if status != "pass":
        assert "appliance provision rotate" in check.advice
    # A warning is still ready to deploy, and the verdict says to look at it; an expired one is red.
    assert report.ok is (status != "fail")
    assert report.ready_to_deploy is (status != "fail")
    if status == "warn":
        assert report.text().splitlines()[0].startswith(f"[WARN] certificate  {cfg.mqtt.tls.cert_file}: 29 days")
        assert report.verdict() == "GREEN: ready to deploy, but see the 1 WARN line(s)"


def test_selftest_certificate_check_without_a_certificate_or_a_broker(tmp_path: Path) -> None:
    password_login = load_config(overrides={"mqtt": {"url": "mqtts://localhost:8883", "username": "cam"}})
    assert "no client certificate" in check_certificate(password_login)
    with pytest.raises(SkipCheck, match="no broker configured"):
        check_certificate(load_config())
