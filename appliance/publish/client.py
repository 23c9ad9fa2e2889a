"""The MQTT link: one paho-mqtt 2.x client per connection, on paho's own network loop, that only
sends approved payloads.

What it adds over a bare paho client:

* ``protocol: auto`` tries MQTT 5 and falls back to 3.1.1 when the broker does not speak 5.
* ``mqtts://`` verifies the broker's certificate and host name by default; mutual TLS when a device
  certificate and key are configured.
* Its identity (password from a file or the environment, never logged or put in errors; TLS
  files and context) is :class:`~appliance.config.broker_identity.BrokerIdentity`.
* The last will (``offline``, retained) is registered *before* every connect.
* Connection failures are classified into a clear one-line :class:`BrokerError`:
  :class:`BrokerRejected` (wrong CA, host name mismatch, bad credentials, not authorised; retried
  only every ``reconnect_max_s`` until someone fixes the config or the broker) and
  :class:`BrokerUnreachable` (network, a server that closes mid-handshake; store-and-forward keeps
  buffering and retrying with backoff, on the next broker when ``mqtt.url`` lists several:
  :mod:`~appliance.publish.brokers`).
* It subscribes to nothing: the device takes no commands over MQTT.

paho's network thread (``loop_start``) reads, writes and pings; the delivery thread that owns the
link publishes into it and takes the broker's acknowledgements in its own thread through
:meth:`MqttLink.wait_for_acks`, so nothing of ours runs in paho's thread but recording an event.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections import deque
from typing import Callable, Deque, Dict, Optional, Tuple

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from appliance.config.broker_identity import BrokerIdentity, parse_url
from appliance.config.broker_url import BrokerAddress
from appliance.config.schema import MqttConfig
from appliance.errors import BrokerError
from appliance.publish.brokers import BrokerList
from appliance.publish.egress import ApprovedPayload, EgressPolicy

log = logging.getLogger(__name__)


class BrokerRejected(BrokerError):
    """The broker (or its TLS identity) is wrong or refuses us. Needs a config or broker fix."""

    fatal = True


class BrokerUnreachable(BrokerError):
    """No connection right now. Messages stay in the outbox; the link keeps retrying."""

    fatal = False


AckCallback = Callable[[int, Optional[str]], None]
"""Called with (mid, None) on a successful PUBACK, or (mid, reason) when the broker refused it."""


# QoS 1 messages paho keeps in flight at the broker (published, PUBACK not yet received); paho
# queues any more it is handed and sends them as PUBACKs free the window.
BROKER_WINDOW = 64

# How long a clean DISCONNECT may take to go out before the socket is closed anyway.
DISCONNECT_WAIT_S = 1.0

# MQTT 5 carries a message expiry as a four-byte integer: 136 years, "never" for any broker. The
# config accepts longer; packing one would raise in the delivery thread, on every restart.
MAX_EXPIRY_S = 2**32 - 1


class MqttLink:
    """Connection management around one paho client. Call everything from one thread.

    Every connection gets a fresh paho client: paho's in-memory retransmission is not used,
    because the outbox already holds every unacknowledged message and resends it in seq order after
    a reconnect. Two copies of the truth would only produce reordering.
    """

    def __init__(self, cfg: MqttConfig, *, client_id: str, on_ack: AckCallback) -> None:
        self.cfg = cfg
        self.identity = BrokerIdentity.from_config(cfg)
        self.identity.check()
        self.brokers = BrokerList([parse_url(url) for url in cfg.urls])  # mqtt.url: one, or a list
        self.client_id = client_id
        self._on_ack = on_ack
        self._password = self.identity.password()
        self._will: Optional[ApprovedPayload] = None
        # MQTT 5 first unless pinned; "auto" falls back to 3.1.1 once and sticks to it.
        self.protocol = MQTTProtocolVersion.MQTTv311 if cfg.protocol == "3.1.1" else MQTTProtocolVersion.MQTTv5
        self._client: Optional[paho.Client] = None
        self._connack: Optional[ReasonCode] = None
        self._lost = False
        self._lost_reason = ""
        self.connected = False
        self.last_error: Optional[BrokerError] = None
        self._closing = False  # we are ending the connection: its end is no loss
        # Called in paho's thread when an established connection ends without us ending it.
        self.on_lost: Optional[Callable[[BrokerError], None]] = None
        # Written by paho's thread, taken by the owner's: (mid, refusal reason or None).
        self._acks: Deque[Tuple[int, Optional[str]]] = deque()
        self._event = threading.Event()  # an ack, the CONNACK or the end of the connection
        # The last expiry's PUBLISH properties: a backlog's counts mostly share one expiry in whole
        # seconds, and paho only reads a message's properties.
        self._expiry_props: Optional[Tuple[int, Properties]] = None

    @property
    def address(self) -> BrokerAddress:
        """The broker this link connects to now (the next in the list after it was unreachable)."""
        return self.brokers.current

    # ------------------------------------------------------------------ setup

    def set_will(self, will: ApprovedPayload) -> None:
        """The message the broker publishes if we vanish. Applied before every connect."""
        self._will = will

    def _new_client(self) -> paho.Client:
        v5 = self.protocol == MQTTProtocolVersion.MQTTv5
        # 3.1.1: a clean session. Redelivery across connections is the outbox's job, not the
        # broker's, so there is no session state worth keeping (and none to leak on the broker).
        # (MQTT 5 takes clean_start at connect instead.)
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=self.protocol,
            clean_session=None if v5 else True,
            # One connection per client: a lost connection ends paho's thread, and the owner
            # reconnects with its own backoff and resends from the outbox.
            reconnect_on_failure=False,
        )
        client.connect_timeout = self.cfg.connect_timeout_s
        client.max_inflight_messages_set(BROKER_WINDOW)
        client.max_queued_messages_set(0)
        if self.cfg.username is not None:
            client.username_pw_set(self.cfg.username, self._password)
        ctx = self.identity.tls_context()
        if ctx is not None:
            client.tls_set_context(ctx)
            if self.identity.insecure_skip_verify:
                client.tls_insecure_set(True)
        if self._will is not None:
            client.will_set(self._will.topic, self._will.payload, qos=1, retain=self._will.retain)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_publish = self._handle_publish
        return client

    # ------------------------------------------------------------------ paho callbacks

    def _handle_connect(
        self, client: paho.Client, userdata: object, flags: object, reason: ReasonCode, props: object
    ) -> None:
        self._connack = reason
        self._event.set()

    def _handle_disconnect(
        self, client: paho.Client, userdata: object, flags: object, reason: ReasonCode, props: object
    ) -> None:
        self._lost_reason = str(reason)
        was_up, self.connected = self.connected, False
        self._lost = True
        self._event.set()
        if was_up and not self._closing and self.on_lost is not None:
            self.on_lost(BrokerUnreachable(f"{self.address}: connection lost ({self._lost_reason})"))

    def _handle_publish(
        self, client: paho.Client, userdata: object, mid: int, reason: ReasonCode, props: object
    ) -> None:
        # MQTT 5 brokers say why a publish was refused (mosquitto: "Not authorized" for an ACL
        # denial); 3.1.1 brokers ack it silently and drop it.
        failed = reason is not None and reason.is_failure
        self._acks.append((mid, str(reason) if failed else None))
        self._event.set()

    # ------------------------------------------------------------------ connecting

    def connect(self, timeout_s: Optional[float] = None) -> None:
        """One connection attempt: TCP, TLS, CONNECT, CONNACK. Raises a classified BrokerError."""
        try:
            self._connect(timeout_s or self.cfg.connect_timeout_s)
        except BrokerUnreachable:
            self.brokers.unreachable()  # a refusal (BrokerRejected) stays: every node would refuse us
            raise

    def _connect(self, timeout_s: float) -> None:
        try:
            self._connect_once(timeout_s)
        except BrokerError as exc:
            auto_v5 = self.cfg.protocol == "auto" and self.protocol == MQTTProtocolVersion.MQTTv5
            if not (auto_v5 and _maybe_v3_only(exc)):
                raise
            log.info("broker %s did not accept MQTT 5; retrying with MQTT 3.1.1", self.address)
            self.protocol = MQTTProtocolVersion.MQTTv311
            try:
                self._connect_once(timeout_s)
            except BrokerError as again:
                if _maybe_v3_only(again):
                    # 3.1.1 fared no better: the protocol was not the problem; report the first error.
                    self.protocol = MQTTProtocolVersion.MQTTv5
                    raise self._fail(exc) from None
                raise

    def _connect_once(self, timeout_s: float) -> None:
        self.close_socket()
        self._client = client = self._new_client()
        self._connack = None
        self._lost = False
        self._closing = False
        self._acks.clear()
        self._event.clear()
        where = str(self.address)
        try:
            if self.protocol == MQTTProtocolVersion.MQTTv5:
                client.connect(self.address.host, self.address.port, self.cfg.keepalive_s, clean_start=True)
            else:
                client.connect(self.address.host, self.address.port, self.cfg.keepalive_s)
        except ssl.SSLCertVerificationError as exc:
            raise self._fail(
                BrokerRejected(
                    f"{where}: TLS: broker certificate not accepted ({exc.verify_message}); "
                    "check mqtt.tls.ca_file and that the URL host matches the certificate"
                )
            ) from None
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError) as exc:
            # The server went away mid-handshake (a load balancer with no backend, a broker
            # restarting): an outage, not a verdict on our identity.
            raise self._fail(
                BrokerUnreachable(f"{where}: connection closed during the TLS handshake ({_ssl_reason(exc)})")
            ) from None
        except ssl.SSLError as exc:
            raise self._fail(BrokerRejected(f"{where}: TLS handshake failed: {_ssl_reason(exc)}")) from None
        except (socket.timeout, TimeoutError):
            raise self._fail(BrokerUnreachable(f"{where}: connection timed out after {timeout_s:g} s")) from None
        except OSError as exc:
            raise self._fail(BrokerUnreachable(f"{where}: cannot connect: {exc.strerror or exc}")) from None
        client.loop_start()

        deadline = time.monotonic() + timeout_s
        while self._connack is None and not self._lost and time.monotonic() < deadline:
            self._event.wait(min(0.05, max(0.0, deadline - time.monotonic())))
            self._event.clear()
        if self._connack is None:
            self.close_socket()
            if self._lost and self.address.tls:
                # With TLS 1.3 the broker checks our certificate after our side of the handshake
                # has completed, so a missing or refused device certificate shows up as the broker
                # closing the connection instead of answering CONNECT. Retrying will not fix that.
                hint = (
                    "is the device certificate signed by the CA the broker trusts, unexpired and not revoked?"
                    if self.cfg.tls.cert_file
                    else "the broker probably requires a device certificate (mqtt.tls.cert_file/key_file)"
                )
                raise self._fail(BrokerRejected(f"{where}: broker closed the TLS connection before CONNACK; {hint}"))
            if self._lost:
                raise self._fail(BrokerUnreachable(f"{where}: connection closed before CONNACK"))
            raise self._fail(BrokerUnreachable(f"{where}: no CONNACK within {timeout_s:g} s"))
        if self._connack.is_failure:
            reason = str(self._connack)
            self.close_socket()
            if "protocol version" in reason.lower():
                raise self._fail(BrokerUnreachable(f"{where}: broker refused the connection: {reason}"))
            raise self._fail(BrokerRejected(f"{where}: broker refused the connection: {reason}"))
        self.connected = not self._lost
        if self.connected:
            self.last_error = None

    def _fail(self, exc: BrokerError) -> BrokerError:
        # The error first: a reader on another thread that sees the link down also sees why.
        self.last_error = exc
        self.connected = False
        return exc

    # ------------------------------------------------------------------ running

    def wait_for_acks(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the broker (an ack, or the connection ending), hand every ack
        that came to ``on_ack`` in this thread, and return whether the connection is still up."""
        if self._client is None:
            return False
        if not self._acks and not self._lost:
            self._event.wait(timeout_s)
        self._event.clear()
        while self._acks:
            mid, refused = self._acks.popleft()
            self._on_ack(mid, refused)
        if self._lost and self._client is not None:
            self._fail(BrokerUnreachable(f"{self.address}: connection lost ({self._lost_reason})"))
            self.close_socket()
            self.brokers.unreachable()
        return self.connected

    def publish(
        self, approved: ApprovedPayload, *, expiry_s: Optional[int] = None, retain: Optional[bool] = None
    ) -> int:
        """Send one approved payload at QoS 1; returns the mid its PUBACK will carry.

        ``retain=False`` sends a retained kind (status) as history, leaving the retained value alone."""
        if self._client is None or not self.connected:
            raise BrokerUnreachable(f"{self.address}: not connected")
        props = None
        if expiry_s is not None and self.protocol == MQTTProtocolVersion.MQTTv5:
            props = self._expiry_properties(min(MAX_EXPIRY_S, max(1, int(expiry_s))))
        info = self._client.publish(
            approved.topic,
            approved.payload,
            qos=self.cfg.qos,
            retain=approved.retain if retain is None else retain and approved.retain,
            properties=props,
        )
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
            raise self._fail(BrokerUnreachable(f"{self.address}: publish failed ({paho.error_string(info.rc)})"))
        return int(info.mid)

    def _expiry_properties(self, expiry_s: int) -> Properties:
        # paho only reads a message's properties (to pack them, again on a resend): one object can
        # serve every message with the same expiry.
        if self._expiry_props is None or self._expiry_props[0] != expiry_s:
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = expiry_s
            self._expiry_props = (expiry_s, props)
        return self._expiry_props[1]

    def disconnect(self, *, send_will: bool = False) -> None:
        """Leave. ``send_will=False`` is a clean DISCONNECT (the broker discards the will)."""
        client = self._client
        if client is None:
            return
        self._closing = True
        if self.connected and (not send_will or self.protocol == MQTTProtocolVersion.MQTTv5):
            if send_will:
                client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))
            else:
                client.disconnect()
            # paho's thread writes the DISCONNECT and ends; a broker that does not read gets the
            # socket closed after a moment instead.
            deadline = time.monotonic() + DISCONNECT_WAIT_S
            while not self._lost and time.monotonic() < deadline:
                self._event.wait(0.02)
        self.close_socket()

    def close_socket(self) -> None:
        """Drop the connection without a DISCONNECT (the broker publishes the will), and end
        paho's thread for it."""
        client, self._client = self._client, None
        self._closing = True
        self.connected = False
        if client is None:
            return
        sock = client.socket()
        if sock is not None:
            # Only shut down here (paho's thread may be in select() on it): it reads the end of the
            # stream, closes the socket itself and its thread ends (no reconnect on failure). The
            # plain socket's shutdown: SSLSocket.shutdown would drop the TLS state under that thread.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # type: ignore[arg-type]
        client.loop_stop()


def _ssl_reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc).lower().replace("_", " ")


def _maybe_v3_only(exc: BrokerError) -> bool:
    # A 3.1.1-only broker answers an MQTT 5 CONNECT with "unacceptable protocol version" or just
    # closes the connection; both show up here as BrokerUnreachable with these words.
    text = str(exc).lower()
    return "protocol version" in text or "before connack" in text


def check_broker(mqtt: MqttConfig, device_id: str, timeout_s: float = 10.0) -> str:
    """Connect once with the configured identity, publish one empty test message on the device's
    own ``{prefix}/{device_id}/selftest`` topic, wait for its PUBACK, disconnect.

    For ``appliance selftest``: returns a one-line description; raises :class:`BrokerRejected`
    (TLS, credentials, or the broker refusing this identity to publish as ``device_id``) or
    :class:`BrokerUnreachable`. MQTT 3.1.1 brokers acknowledge a refused publish silently, so
    there the publish permission cannot be checked (the line says so).
    """
    result: Dict[int, Optional[str]] = {}
    link = MqttLink(
        mqtt,
        client_id=f"{mqtt.client_id or device_id}-selftest",
        on_ack=lambda mid, refused: result.__setitem__(mid, refused),
    )
    for tried in range(1, len(link.brokers.addresses) + 1):
        try:
            link.connect(timeout_s)  # the device's own order: the next broker of a list when one is unreachable
            break
        except BrokerUnreachable:
            if tried == len(link.brokers.addresses):
                raise
    v5 = link.protocol == MQTTProtocolVersion.MQTTv5
    where = f"{link.address}: connected (MQTT {'5' if v5 else '3.1.1'}{', TLS' if link.address.tls else ''})"
    probe = EgressPolicy(topic_prefix=mqtt.topic_prefix, device_id=device_id, max_payload_bytes=1024).probe()
    try:
        mid = link.publish(probe)
        deadline = time.monotonic() + timeout_s
        while mid not in result and link.connected and time.monotonic() < deadline:
            link.wait_for_acks(0.05)
    finally:
        link.disconnect()
    if mid not in result:
        raise BrokerUnreachable(f"{link.address}: no PUBACK for a test publish on {probe.topic} within {timeout_s:g} s")
    refused = result[mid]
    if refused:
        raise BrokerRejected(
            f"{link.address}: broker refused a test publish on {probe.topic}: {refused}; "
            f"the broker does not let this identity publish as {device_id!r} (certificate CN or ACL)"
        )
    if not v5:
        return f"{where}; publish permission not checked (MQTT 3.1.1 brokers drop refused messages silently)"
    return f"{where}; PUBACK for a test publish on {probe.topic}: may publish as {device_id}"
