"""TLS and identity against the shipped deploy/mosquitto example: per-device certificates, the
pattern ACL, and clear errors when trust or identity is wrong."""

from __future__ import annotations

import contextlib
import ssl
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from support.brokers import Broker, Pki, control_room
from support.publishing import counts, started, tls_cfg

from appliance.publish import BrokerRejected, check_broker

pytestmark = pytest.mark.mqtt


def test_mutual_tls_with_a_valid_device_certificate_works(
    tls_mosquitto: Broker, tmp_path: Path, pki: Pki, subscribe, publishers
) -> None:
    room = control_room(subscribe, tls_mosquitto, pki)
    pub = started(tls_cfg(tls_mosquitto, tmp_path, "device-a", pki.ca, pki, cert_of="device-a"), publishers)
    pub.connect(timeout_s=10)
    pub.publish(counts(1))
    got = room.wait_for(lambda ms: any(m.topic == "crowdmon/device-a/counts" for m in ms))
    assert any(m.topic == "crowdmon/device-a/status" and m.payload["state"] == "online" for m in got)
    cfg = tls_cfg(tls_mosquitto, tmp_path, "device-a", pki.ca, pki, cert_of="device-a")
    assert "TLS" in check_broker(cfg.mqtt, cfg.device_id)


def test_wrong_ca_is_refused_with_a_clear_error(
    tls_mosquitto: Broker, tmp_path: Path, pki: Pki, publishers
) -> None:
    pub = started(tls_cfg(tls_mosquitto, tmp_path, "device-a", pki.wrong_ca, pki, cert_of="device-a"), publishers)
    t0 = time.monotonic()
    with pytest.raises(BrokerRejected) as info:
        pub.connect(timeout_s=10)
    assert time.monotonic() - t0 < 5, "reported at once, not after a silent retry loop"
    message = str(info.value)
    assert "\n" not in message
    assert "certificate not accepted" in message and "mqtt.tls.ca_file" in message


def test_host_name_mismatch_is_refused(tls_mosquitto: Broker, tmp_path: Path, pki: Pki) -> None:
    # The broker's certificate names "localhost" only; 127.0.0.1 reaches it but is not that name.
    cfg = tls_cfg(tls_mosquitto, tmp_path, "device-a", pki.ca, pki, cert_of="device-a")
    cfg.mqtt.url = f"mqtts://127.0.0.1:{tls_mosquitto.port}"
    with pytest.raises(BrokerRejected, match=r"certificate not accepted .*mismatch.*URL host matches"):
        check_broker(cfg.mqtt, cfg.device_id, timeout_s=5)


def test_device_a_cannot_publish_to_device_b(
    tls_mosquitto: Broker, tmp_path: Path, pki: Pki, subscribe, publishers
) -> None:
    """The broker ACL, not the device, is the authority: a device that claims another id (a
    compromised or misconfigured one) gets nothing through."""
    room = control_room(subscribe, tls_mosquitto, pki)

    # A raw client holding device A's certificate, ignoring the appliance's own egress policy.
    raw = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="rogue", protocol=paho.MQTTv311)
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    ctx.load_cert_chain(str(pki.clients["device-a"]["cert"]), str(pki.clients["device-a"]["key"]))
    raw.tls_set_context(ctx)
    raw.connect(tls_mosquitto.host, tls_mosquitto.port)
    raw.loop_start()
    try:
        raw.publish("crowdmon/device-b/counts", b'{"forged": true}', qos=1).wait_for_publish(5)
        raw.publish("crowdmon/device-b/status", b'{"state": "offline"}', qos=1, retain=True).wait_for_publish(5)
        # Control: the same client may write its own topic, so the silence below is the ACL's doing.
        raw.publish("crowdmon/device-a/counts", b'{"own": true}', qos=1).wait_for_publish(5)
        room.wait_for(lambda ms: any(m.topic == "crowdmon/device-a/counts" for m in ms))
    finally:
        raw.loop_stop()
        raw.disconnect()

    # The appliance configured as device-b but holding device-a's certificate: MQTT 5 PUBACKs
    # carry "Not authorized". The publisher keeps every refused message (one ACL mistake must not
    # destroy the buffer), counts the refusals and retries after reconnecting.
    cfg_b = tls_cfg(tls_mosquitto, tmp_path, "device-b", pki.ca, pki, cert_of="device-a")
    pub = started(cfg_b, publishers)
    pub.connect(timeout_s=10)
    pub.publish(counts(1))
    deadline = time.monotonic() + 20
    while pub.stats().rejected < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = pub.stats()
    assert stats.rejected >= 2, "refused again after a reconnect: it is retried, not dropped"
    assert stats.pending == 3, "the birth, the anomaly state and the counts are kept"
    assert "broker refused" in (stats.last_error or "") and "'device-b'" in (stats.last_error or "")
    assert not [m for m in room.snapshot() if m.topic.startswith("crowdmon/device-b/")], "nothing reached B's topics"
    # selftest sees the same mismatch with one test publish.
    with pytest.raises(BrokerRejected, match="refused a test publish on crowdmon/device-b/selftest: Not authorized"):
        check_broker(cfg_b.mqtt, "device-b", timeout_s=10)


def test_anonymous_clients_are_refused_by_the_shipped_config(
    tls_mosquitto: Broker, tmp_path: Path, pki: Pki, publishers
) -> None:
    # Right CA, no client certificate (and no password would help: allow_anonymous false,
    # require_certificate true).
    pub = started(tls_cfg(tls_mosquitto, tmp_path, "device-a", pki.ca, pki, cert_of=None), publishers)
    with pytest.raises(BrokerRejected, match="requires a device certificate") as info:
        pub.connect(timeout_s=5)
    assert str(tls_mosquitto.port) in str(info.value)
    assert not pub.stats().connected

    # A plain-text, anonymous MQTT client gets nowhere either (the only listener is TLS).
    raw = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="anon", protocol=paho.MQTTv311)
    with contextlib.suppress(OSError):
        raw.connect("127.0.0.1", tls_mosquitto.port)
        for _ in range(40):
            raw.loop(0.05)
    assert not raw.is_connected()
