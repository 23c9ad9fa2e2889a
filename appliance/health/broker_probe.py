"""``selftest``'s proof that the broker accepts this device's identity for *publishing*.

Connecting is not enough: a broker may accept the certificate and still refuse the device's
topics in its ACL (mosquitto then drops every message). So the probe publishes one tiny,
non-retained message on the device's own ``{prefix}/{device_id}/selftest`` topic at QoS 1 and
waits for the PUBACK. With MQTT 5 a refused publish is acked with a failure reason (mosquitto:
"Not authorized"); MQTT 3.1.1 brokers ack refused messages like accepted ones, which the result
says. The payload is empty: the probe carries no data at all (docs/control-room.md).
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass
from typing import Any, Optional

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from appliance.config.schema import ApplianceConfig
from appliance.errors import BrokerError
from appliance.publish.mqtt_client import parse_url, read_password

SELFTEST_KIND = "selftest"
PROBE_EXPIRY_S = 60  # MQTT 5: a broker drops the probe instead of queueing it for an offline subscriber


@dataclass
class ProbeResult:
    topic: str
    protocol: str  # "5" or "3.1.1"

    def describe(self) -> str:
        proven = "" if self.protocol == "5" else " (MQTT 3.1.1 acks refused messages too: the ACL is not proven)"
        return f"PUBACK for a test message on {self.topic}{proven}"


def probe_topic(cfg: ApplianceConfig) -> str:
    return f"{cfg.mqtt.topic_prefix}/{cfg.device_id}/{SELFTEST_KIND}"


def probe_publish(cfg: ApplianceConfig, timeout_s: float = 10.0) -> ProbeResult:
    """Connect with the configured identity, publish the probe and wait for its PUBACK.

    Raises :class:`BrokerError` with one line when the broker refuses or does not answer."""
    mqtt = cfg.mqtt
    assert mqtt.url is not None
    address = parse_url(mqtt.url)
    v5 = mqtt.protocol != "3.1.1"
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"{mqtt.client_id or cfg.device_id}-selftest",
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
    )
    if mqtt.username is not None:
        client.username_pw_set(mqtt.username, read_password(mqtt))
    if address.tls:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=mqtt.tls.ca_file)
        if mqtt.tls.cert_file and mqtt.tls.key_file:
            ctx.load_cert_chain(mqtt.tls.cert_file, mqtt.tls.key_file)
        if mqtt.tls.insecure_skip_verify:
            ctx.check_hostname = False
        client.tls_set_context(ctx)

    connected = threading.Event()
    acked = threading.Event()
    outcome: dict[str, Any] = {}

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        outcome["connack"] = reason
        connected.set()

    def on_publish(_c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        outcome["puback"] = reason
        acked.set()

    client.on_connect = on_connect
    client.on_publish = on_publish
    topic = probe_topic(cfg)
    try:
        client.connect(address.host, address.port, keepalive=30)
    except (OSError, ssl.SSLError) as exc:
        raise BrokerError(f"{address}: cannot connect: {exc}") from None
    client.loop_start()
    try:
        if not connected.wait(timeout_s):
            raise BrokerError(f"{address}: no CONNACK within {timeout_s:g} s")
        connack = outcome["connack"]
        if connack is not None and getattr(connack, "is_failure", False):
            raise BrokerError(f"{address}: broker refused the connection: {connack}")
        props: Optional[Properties] = None
        if v5:
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = PROBE_EXPIRY_S
        client.publish(topic, b"", qos=1, retain=False, properties=props)
        if not acked.wait(timeout_s):
            raise BrokerError(f"{address}: no PUBACK for {topic} within {timeout_s:g} s")
        puback = outcome["puback"]
        if puback is not None and getattr(puback, "is_failure", False):
            raise BrokerError(f"{address}: broker refused to take {topic}: {puback} (check its ACL for this device)")
        return ProbeResult(topic, "5" if v5 else "3.1.1")
    finally:
        client.disconnect()
        client.loop_stop()
