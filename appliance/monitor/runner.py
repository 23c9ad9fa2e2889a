"""``appliance monitor``: subscribe to ``{prefix}/+/#`` read-only and keep the fleet view current.

paho's network thread only queues what arrives; the calling thread parses, updates the
:class:`FleetState` and renders, so the state needs no lock.

Under the prefix a device publishes its four message kinds, its retained ``notice``, the empty
``selftest`` probe of ``appliance selftest`` and, when ``home_assistant.discovery_prefix`` is the
same as the topic prefix, Home Assistant discovery configs. The first two are shown, the last two
ignored quietly; anything else under the prefix is flagged once per topic.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import re
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, List, Optional, TextIO, Tuple

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from appliance.config.broker_identity import MONITOR_FLAGS, BrokerIdentity, parse_url
from appliance.config.broker_url import BrokerAddress
from appliance.errors import InputError
from appliance.monitor.state import FleetState
from appliance.monitor.view import fleet_table, json_line
from appliance.names import NAME_PATTERN, TOPIC_PREFIX_PATTERN
from appliance.publish.brokers import BrokerList
from appliance.publish.client import BrokerRejected, BrokerUnreachable
from appliance.publish.discovery import COMPONENTS
from appliance.publish.egress import PROBE_KIND
from appliance.publish.messages import MESSAGE_TYPES, parse_payload
from appliance.transparency.notice import NOTICE_KIND, Notice

log = logging.getLogger(__name__)

# (topic, payload, retained, received_at)
_Received = Tuple[str, bytes, bool, datetime]


@dataclass(frozen=True)
class MonitorOptions:
    broker_url: str  # one URL, or several separated by commas: the nodes of one cluster, tried in order
    prefix: str = "crowdmon"
    json: bool = False
    once: bool = False
    duration_s: Optional[float] = None
    client_id: Optional[str] = None
    username: Optional[str] = None
    password_file: Optional[str] = None
    ca_file: Optional[str] = None
    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    connect_timeout_s: float = 10.0
    # Watch only these devices, on their exact topics (no wildcard): RabbitMQ hands retained
    # messages only to subscriptions without one. Comma-separated; empty: every device, {prefix}/+/#.
    devices: str = ""


def subscriptions(opts: MonitorOptions) -> List[str]:
    """The topic filters the monitor subscribes to: ``{prefix}/+/#``, or each listed device's topics."""
    devices = [d.strip() for d in opts.devices.split(",") if d.strip()]
    for device in devices:
        if not re.fullmatch(NAME_PATTERN, device):
            raise InputError(f"{device[:40]!r} is not a device id ([A-Za-z0-9_-]{{1,64}})", field="--device")
    if not devices:
        return [f"{opts.prefix}/+/#"]
    return [f"{opts.prefix}/{d}/{kind}" for d in devices for kind in (*MESSAGE_TYPES, NOTICE_KIND)]


def check_prefix(prefix: str) -> str:
    """``--prefix`` as the devices' ``mqtt.topic_prefix`` allows it: plain topic levels, no wildcard,
    NUL or space, bounded length. Anything else would subscribe to more (``#``) or fail in paho's
    thread, where no error reaches the user."""
    if not re.fullmatch(TOPIC_PREFIX_PATTERN, prefix):
        shown = repr(prefix[:40]) + ("..." if len(prefix) > 40 else "")
        raise InputError(
            f"must be 1-64 letters, digits, '_', '-' or '/' (a device's mqtt.topic_prefix), not {shown}",
            field="--prefix",
        )
    return prefix


def broker_addresses(urls: str) -> List[BrokerAddress]:
    """``--broker``: one URL or a comma-separated list, one TLS identity for all (as ``mqtt.url``)."""
    addresses = [parse_url(url.strip(), field="--broker") for url in urls.split(",") if url.strip()]
    if not addresses:
        raise InputError("needs a broker URL", field="--broker")
    if len({a.tls for a in addresses}) > 1:
        raise InputError("mixes mqtt:// and mqtts://: one list, one set of TLS files", field="--broker")
    return addresses


def _client(opts: MonitorOptions, inbox: queue.Queue[_Received], connack: queue.Queue[Any]) -> paho.Client:
    check_prefix(opts.prefix)
    brokers = BrokerList(broker_addresses(opts.broker_url))
    identity = BrokerIdentity(
        address=brokers.current,  # one identity for the whole list (one scheme, one set of TLS files)
        username=opts.username,
        password_file=opts.password_file,
        ca_file=opts.ca_file,
        cert_file=opts.cert_file,
        key_file=opts.key_file,
        names=MONITOR_FLAGS,
    )
    identity.check()
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=opts.client_id or "",
        protocol=paho.MQTTv311,  # a reader needs nothing from MQTT 5; 3.1.1 works with every broker
        clean_session=True,
    )
    if opts.username is not None:
        client.username_pw_set(opts.username, identity.password())
    ctx = identity.tls_context()
    if ctx is not None:
        client.tls_set_context(ctx)
    topics = subscriptions(opts)

    def on_connect(c: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            for first in range(0, len(topics), 100):  # a few SUBSCRIBE packets, not one per topic
                c.subscribe([(t, 1) for t in topics[first : first + 100]])
        connack.put(reason)

    def on_message(c: paho.Client, userdata: Any, msg: Any) -> None:
        inbox.put((msg.topic, bytes(msg.payload), bool(msg.retain), datetime.now(timezone.utc)))

    def on_disconnect(c: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        # Lost: paho's loop reconnects, to the next broker of the list (a cluster's other node).
        if len(brokers.addresses) > 1 and getattr(reason, "is_failure", False):  # not our own disconnect()
            lost = brokers.current
            brokers.unreachable()
            log.warning("lost %s; reconnecting to %s", lost, brokers.current)
            c.connect_async(brokers.current.host, brokers.current.port, keepalive=30)

    client.on_connect = on_connect
    client.on_message = on_message
    client.on_disconnect = on_disconnect
    client.user_data_set(brokers)
    client.reconnect_delay_set(1, 30)
    return client


def _connect(client: paho.Client, opts: MonitorOptions, connack: queue.Queue[Any]) -> None:
    """The first broker of the list that answers; a refusal ends it (every node would refuse)."""
    brokers = client.user_data_get()
    assert isinstance(brokers, BrokerList)
    for _ in brokers.addresses:
        try:
            return _connect_to(client, brokers.current, opts, connack)
        except BrokerUnreachable as exc:
            if len(brokers.addresses) == 1 or brokers.hops + 1 >= len(brokers.addresses):
                raise
            log.warning("%s; trying the next broker", exc)
            brokers.unreachable()


def _connect_to(client: paho.Client, address: BrokerAddress, opts: MonitorOptions, connack: queue.Queue[Any]) -> None:
    try:
        client.connect(address.host, address.port, keepalive=30)
    except ssl.SSLError as exc:
        raise BrokerRejected(f"{address}: TLS: {exc.reason or exc}; check --ca-file and the host name") from None
    except OSError as exc:
        raise BrokerUnreachable(f"{address}: cannot connect ({exc.strerror or exc})") from None
    client.loop_start()
    try:
        reason = connack.get(timeout=opts.connect_timeout_s)
    except queue.Empty:
        client.loop_stop()
        raise BrokerUnreachable(f"{address}: no answer within {opts.connect_timeout_s:g} s") from None
    if reason.is_failure:
        client.loop_stop()
        raise BrokerRejected(f"{address}: broker refused the connection ({reason})")


class _Consumer:
    """Parses received messages into the fleet state; remembers topics it could not read."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.fleet = FleetState()
        self._warned: set[str] = set()

    def take(self, item: _Received) -> Optional[str]:
        topic, payload, retained, received_at = item
        rest = topic[len(self.prefix) + 1 :] if topic.startswith(self.prefix + "/") else ""
        parts = rest.split("/")
        if not payload:
            return None  # a retained message being cleared
        if _not_for_the_monitor(parts):
            log.debug("%s: ignored (a selftest probe or a Home Assistant discovery config)", topic)
            return None
        if len(parts) == 2 and parts[1] == NOTICE_KIND:
            return self._notice(topic, parts[0], payload, received_at)
        if len(parts) != 2 or parts[1] not in MESSAGE_TYPES:
            self._warn(topic, "not a crowd-appliance topic")
            return None
        try:
            msg = parse_payload(parts[1], payload)
        except ValidationError as exc:
            self._warn(topic, f"payload does not match the {parts[1]} schema ({exc.error_count()} error(s))")
            return None
        if msg.device_id != parts[0]:
            self._warn(topic, f"payload says device {msg.device_id!r}")
            return None
        return self.fleet.observe(msg, retained=retained, received_at=received_at)

    def _notice(self, topic: str, device_id: str, payload: bytes, received_at: datetime) -> Optional[str]:
        try:
            notice = Notice.model_validate_json(payload)
        except ValidationError as exc:
            self._warn(topic, f"payload does not match the notice schema ({exc.error_count()} error(s))")
            return None
        if notice.device_id != device_id:
            self._warn(topic, f"payload says device {notice.device_id!r}")
            return None
        digest = hashlib.sha256(payload).hexdigest()
        before = self.fleet.notice_of(device_id)
        if before is None or before.sha256 != digest:
            # Every device's notice arrives once at start (retained): only a change is news.
            level = logging.DEBUG if before is None else logging.INFO
            log.log(
                level,
                "%s: notice %s%s: operator %s, purpose %s",
                topic,
                "" if before is None else f"changed from {before.sha256[:12]} to ",
                digest[:12],
                "not configured" if notice.controller.name is None else repr(notice.controller.name),
                notice.purpose.code,
            )
        return self.fleet.observe_notice(notice, sha256=digest, received_at=received_at)

    def _warn(self, topic: str, why: str) -> None:
        if topic not in self._warned:
            self._warned.add(topic)
            log.warning("%s: ignored: %s", topic, why)


def _not_for_the_monitor(parts: list[str]) -> bool:
    """The selftest probe ``{prefix}/{device_id}/selftest``, or a discovery config
    ``{prefix}/{sensor|binary_sensor}/{device_id}/{object_id}/config`` (discovery prefix = topic prefix)."""
    probe = len(parts) == 2 and parts[1] == PROBE_KIND
    discovery = len(parts) == 4 and parts[0] in COMPONENTS and parts[3] == "config"
    return probe or discovery


def run_monitor(opts: MonitorOptions, stop: threading.Event, out: TextIO = sys.stdout) -> int:
    """Runs until ``stop`` is set or ``duration_s`` has passed. Returns the exit code (0)."""
    inbox: queue.Queue[_Received] = queue.Queue()
    connack: queue.Queue[Any] = queue.Queue()
    client = _client(opts, inbox, connack)
    _connect(client, opts, connack)
    consumer = _Consumer(opts.prefix)
    duration = opts.duration_s if opts.duration_s is not None else (3.0 if opts.once else None)
    deadline = None if duration is None else time.monotonic() + duration
    live = None
    if not opts.json and not opts.once:
        from rich.live import Live

        live = Live(fleet_table([], _now(), _title(opts)), auto_refresh=False, transient=False)
        live.start()
    try:
        next_draw = 0.0
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            try:
                item = inbox.get(timeout=0.2)
            except queue.Empty:
                item = None
            device_id = consumer.take(item) if item is not None else None
            if device_id is not None and opts.json and not opts.once:
                out.write(json_line(consumer.fleet.snapshot(device_id), _now()) + "\n")
                out.flush()
            if live is not None and time.monotonic() >= next_draw:
                # Redrawn at most twice a second: a thousand devices' messages must not flood SSH.
                live.update(fleet_table(consumer.fleet.snapshots(), _now(), _title(opts)), refresh=True)
                next_draw = time.monotonic() + 0.5
        if opts.once:
            # Take in whatever is still queued so the one snapshot is as complete as possible.
            while not inbox.empty() and not stop.is_set():
                consumer.take(inbox.get_nowait())
            now = _now()
            if opts.json:
                for snap in consumer.fleet.snapshots():
                    out.write(json_line(snap, now) + "\n")
                out.flush()
            else:
                from rich.console import Console

                Console(file=out).print(fleet_table(consumer.fleet.snapshots(), now, _title(opts)))
    finally:
        if live is not None:
            live.stop()
        client.disconnect()
        client.loop_stop()
    return 0


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _title(opts: MonitorOptions) -> str:
    watched = len([d for d in opts.devices.split(",") if d.strip()])
    return f"{opts.broker_url} {opts.prefix}/" + (f"<{watched} devices>/+" if watched else "+/#")
