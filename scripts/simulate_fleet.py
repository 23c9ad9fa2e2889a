#!/usr/bin/env python3
"""A fleet of simulated appliances through a broker restart, with full jitter on and off.

Each simulated device runs the appliance's own publish stack (:func:`make_publisher` ->
:class:`MqttPublisher`: a real SQLite outbox in its own directory, birth and last will, seq, the
delivery thread and its reconnect backoff); only the models are replaced by synthetic counts. The
broker is a real ``mosquitto`` on a free loopback port, started here with persistence. A control
room subscribes with a persistent MQTT 5 session and counts ``(device_id, boot_id, seq)``; two more
subscribers share one group (``$share/ctl/{prefix}/+/counts``) and must split the load between them.

Scenario, run once with full jitter and once without (the same N, outage and policy)::

    all devices connected and publishing -> broker stopped (SIGTERM) for --outage-s -> restarted

Measured: reconnect spread after the restart (p50/p95/max), peak connection attempts per second
(every call of the device's link ``connect``, successful or not), messages lost (must be 0),
duplicates, and the time until every device's backlog from the outage is delivered.

Example (the figures in docs/control-room.md)::

    python scripts/simulate_fleet.py --devices 1000 --outage-s 30 --json

Outboxes go to /dev/shm when it exists (``--workdir`` to change): SQLite's fsync on a shared disk
would measure the disk, not the broker. Loopback only; everything is bounded in count and time.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import logging
import multiprocessing
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, Dict, List, Literal, Optional, Set, Tuple

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.config import load_config
from appliance.config.transport import MqttConfig, OutboxConfig, PublishConfig
from appliance.publish import CountsMessage, MqttPublisher, RetainedDocument, make_birth, make_publisher
from appliance.publish.backoff import FullJitterBackoff
from appliance.publish.messages import utcnow
from appliance.transparency import build_notice, notice_payload
from appliance.vocabulary import CountStats

PREFIX = "crowdmon"
SHARE_GROUP = "ctl"
Key = Tuple[str, int, int]  # (device_id, boot_id, seq)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (mosquitto, started from here, inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --------------------------------------------------------------------------- broker


class FleetBroker:
    """mosquitto on 127.0.0.1, persistent, no connection limit; stoppable and restartable."""

    def __init__(self, workdir: Path, mosquitto: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.mosquitto = mosquitto
        self.log_path = workdir / "mosquitto.log"
        self.conf = workdir / "mosquitto.conf"
        user = f"user {getpass.getuser()}\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"{user}listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "max_connections -1\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            "max_queued_messages 1000000\n"
            "max_inflight_messages 100\n"
            "set_tcp_nodelay true\n"
        )
        self.proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([self.mosquitto, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout_s} s")

    def stop(self) -> None:
        """SIGTERM: mosquitto saves sessions and queued messages to its persistence file."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def clients_connected_since(self, offset: int) -> int:
        """CONNECTs the broker accepted, from its log after byte ``offset``."""
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().count(b"New client connected")

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0


# --------------------------------------------------------------------------- control room


class ControlRoom:
    """A persistent subscriber that records every counts message by (device, boot, seq): MQTT 5 with
    a session expiry, or (``mqtt311``, for RabbitMQ) 3.1.1 with clean session off."""

    def __init__(self, port: int, topic: str, client_id: str, mqtt311: bool = False) -> None:
        self._lock = threading.Lock()
        self.received: List[Key] = []
        self.distinct: Dict[str, Set[int]] = defaultdict(set)
        self.topic = topic
        self._subscribed = threading.Event()
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv311 if mqtt311 else paho.MQTTv5,
            clean_session=False if mqtt311 else None,
        )
        self.order: Dict[str, List[int]] = defaultdict(list)  # per device, seqs in arrival order
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.reconnect_delay_set(1, 2)
        self.client.max_inflight_messages_set(100)
        if mqtt311:
            self.client.connect("127.0.0.1", port, keepalive=30)
        else:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600  # the session (and what is queued for it) outlives a restart
            self.client.connect("127.0.0.1", port, keepalive=30, clean_start=False, properties=props)
        self.client.loop_start()
        if not self._subscribed.wait(30):
            raise RuntimeError(f"{client_id}: could not subscribe to {topic}")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        payload = json.loads(msg.payload)
        key = (str(payload["device_id"]), int(payload["boot_id"]), int(payload["seq"]))
        with self._lock:
            self.received.append(key)
            self.distinct[key[0]].add(key[2])
            self.order[key[0]].append(key[2])

    def distinct_count(self, device_id: str) -> int:
        with self._lock:
            return len(self.distinct.get(device_id, ()))

    def keys(self) -> Tuple[List[Key], Set[Key]]:
        with self._lock:
            return list(self.received), set(self.received)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --------------------------------------------------------------------------- devices


@dataclass
class Attempts:
    """Every connection attempt of one device's link: (monotonic time, succeeded)."""

    log: List[Tuple[float, bool]] = field(default_factory=list)

    def first_success_after(self, t: float) -> Optional[float]:
        return next((at for at, ok in list(self.log) if ok and at >= t), None)


@dataclass(frozen=True)
class DeviceLink:
    """How each simulated device reaches the broker: ``urls`` rotated by the device's index (so with
    a cluster's nodes, a third of the fleet starts on each), its MQTT version, and whether it
    publishes a public notice (retained, like a real device) beside its birth."""

    urls: Tuple[str, ...]
    protocol: Literal["auto", "5", "3.1.1"] = "5"
    notice: bool = False

    def urls_for(self, index: int) -> List[str]:
        first = index % len(self.urls)
        return list(self.urls[first:] + self.urls[:first])


class SimDevice:
    """One appliance's publish stack with synthetic counts."""

    def __init__(self, index: int, link: DeviceLink, workdir: Path, policy: ReconnectPolicy, jitter: bool) -> None:
        self.device_id = f"sim-{index:04d}"
        urls = link.urls_for(index)
        mqtt = MqttConfig(
            url=urls[0] if len(urls) == 1 else urls,
            protocol=link.protocol,
            reconnect_min_s=policy.min_s,
            reconnect_max_s=policy.max_s,
        )
        outbox = OutboxConfig(path=str(workdir / "{device_id}" / "outbox.sqlite3"))
        documents = []
        if link.notice:
            notice = build_notice(load_config(overrides={"device_id": self.device_id, "mqtt": {"url": mqtt.url}}))
            documents.append(RetainedDocument("notice", notice_payload(notice)))
        birth = make_birth(config_hash="5151" * 4, board="sim", models=[])
        pub = make_publisher(
            device_id=self.device_id, mqtt=mqtt, publish=PublishConfig(), outbox=outbox, birth=birth,
            documents=documents,
        )  # fmt: skip
        assert isinstance(pub, MqttPublisher)
        self.pub = pub
        self.jitter = jitter
        self.policy = policy
        self.attempts = Attempts()
        self.published = 0

    def start(self) -> None:
        self.pub.start()
        delivery = self.pub.delivery
        assert delivery is not None
        # The comparison's only change: the same policy without jitter. Swapped right after start,
        # before the first failure could have drawn a wait (the broker is up).
        delivery.backoff = FullJitterBackoff(self.policy.min_s, self.policy.max_s, jitter=self.jitter)
        link = delivery.link
        original: Callable[..., None] = link.connect

        def counted_connect(timeout_s: Optional[float] = None) -> None:
            try:
                original(timeout_s)
            except BaseException:
                self.attempts.log.append((time.monotonic(), False))
                raise
            self.attempts.log.append((time.monotonic(), True))

        setattr(link, "connect", counted_connect)  # noqa: B010 - wraps the instance's method only

    def connected(self) -> bool:
        delivery = self.pub.delivery
        return delivery is not None and delivery.link.connected

    def broker(self) -> Optional[str]:
        """The broker of its list the device is connected to now (None: not connected)."""
        delivery = self.pub.delivery
        return str(delivery.link.address) if delivery is not None and delivery.link.connected else None

    def publish_counts(self) -> None:
        end = utcnow()
        n = self.published % 7
        self.pub.publish(
            CountsMessage(
                window_start=end - timedelta(seconds=1),
                window_end=end,
                frames_analyzed=5,
                total=CountStats(min=0, mean=n / 2, max=n, last=n),
            )
        )
        self.published += 1

    def close(self) -> None:
        self.pub.close(clean=False)


@dataclass(frozen=True)
class ReconnectPolicy:
    min_s: float
    max_s: float


class Clock(threading.Thread):
    """One thread publishes for every device, spread evenly over each interval."""

    def __init__(self, devices: List[SimDevice], interval_s: float) -> None:
        super().__init__(name="fleet-clock", daemon=True)
        self.devices = devices
        self.interval_s = interval_s
        self.halt = threading.Event()
        self.lock = threading.Lock()  # held while publishing, so a snapshot of 'published' is exact

    def run(self) -> None:
        step = self.interval_s / max(1, len(self.devices))
        next_at = time.monotonic()
        while not self.halt.is_set():
            for device in self.devices:
                if self.halt.is_set():
                    return
                with self.lock:
                    device.publish_counts()
                next_at += step
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -self.interval_s:
                    next_at = time.monotonic()  # fell behind (loaded machine): do not burst to catch up

    def published(self) -> Dict[str, int]:
        with self.lock:
            return {d.device_id: d.published for d in self.devices}


# --------------------------------------------------------------------------- worker processes

# paho waits on its socket with select(), which cannot watch a descriptor numbered 1024 or more,
# and every device holds about six: its socket, paho's wake-up socket pair, and SQLite's database,
# WAL and shared-memory files. With 200 per process devices churned (connect, select() fails,
# close); the fleet is split over processes of this many.
DEVICES_PER_PROCESS = 100


def _worker(
    conn: Connection,
    indices: List[int],
    link: DeviceLink,
    workdir: str,
    policy: ReconnectPolicy,
    jitter: bool,
    interval_s: float,
) -> None:
    """One process's share of the fleet, answering the coordinator's requests over ``conn``."""
    logging.basicConfig(level=logging.ERROR)
    threading.stack_size(512 * 1024)  # one delivery thread per device; paho needs little stack
    fleet = [SimDevice(i, link, Path(workdir), policy, jitter) for i in indices]
    clock = Clock(fleet, interval_s)
    try:
        for device in fleet:
            device.start()
        while True:
            request, arg = conn.recv()
            if request == "connected":
                conn.send(sum(d.connected() for d in fleet))
            elif request == "publish":
                clock.start()
                conn.send(None)
            elif request == "published":
                conn.send(clock.published())
            elif request == "halt":
                clock.halt.set()
                clock.join()
                conn.send(clock.published())
            elif request == "back_after":
                conn.send([d.attempts.first_success_after(arg) for d in fleet])
            elif request == "attempts_since":
                conn.send([at for d in fleet for at, _ in list(d.attempts.log) if at >= arg])
            elif request == "connected_to":
                conn.send({d.device_id: d.broker() for d in fleet})
            elif request == "close":
                break
    finally:
        clock.halt.set()
        for device in fleet:
            device.close()
        conn.send("closed")
        conn.close()


class Fleet:
    """The coordinator's handle on the worker processes (CLOCK_MONOTONIC is shared by all of them)."""

    def __init__(
        self, devices: int, link: DeviceLink, workdir: Path, policy: ReconnectPolicy, jitter: bool, interval_s: float
    ) -> None:
        ctx = multiprocessing.get_context("fork")  # no threads yet in this process; the script need not be importable
        self.conns: List[Connection] = []
        self.procs: List[Any] = []
        for first in range(0, devices, DEVICES_PER_PROCESS):
            ours, theirs = ctx.Pipe()
            indices = list(range(first, min(devices, first + DEVICES_PER_PROCESS)))
            proc = ctx.Process(
                target=_worker,
                args=(theirs, indices, link, str(workdir), policy, jitter, interval_s),
                daemon=True,
            )
            proc.start()
            theirs.close()
            self.conns.append(ours)
            self.procs.append(proc)

    def ask(self, request: str, arg: Any = None) -> List[Any]:
        for conn in self.conns:
            conn.send((request, arg))
        return [conn.recv() for conn in self.conns]

    def connected(self) -> int:
        return sum(self.ask("connected"))

    def connected_to(self) -> Dict[str, Optional[str]]:
        merged: Dict[str, Optional[str]] = {}
        for part in self.ask("connected_to"):
            merged.update(part)
        return merged

    def published(self, request: str = "published") -> Dict[str, int]:
        merged: Dict[str, int] = {}
        for part in self.ask(request):
            merged.update(part)
        return merged

    def back_after(self, t: float) -> List[Optional[float]]:
        return [at for part in self.ask("back_after", t) for at in part]

    def attempts_since(self, t: float) -> List[float]:
        return [at for part in self.ask("attempts_since", t) for at in part]

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(("close", None))
        for conn, proc in zip(self.conns, self.procs):
            with contextlib.suppress(EOFError, OSError):
                if conn.poll(60):
                    conn.recv()
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join()


# --------------------------------------------------------------------------- the scenario


@dataclass
class Result:
    jitter: bool
    devices: int
    outage_s: float
    reconnected: int
    reconnect_p50_s: float
    reconnect_p95_s: float
    reconnect_max_s: float
    peak_attempts_per_s: int
    peak_attempts_after_restart_per_s: int
    attempts_total: int
    broker_connects_after_restart: int
    published: int
    received: int
    lost: int
    duplicates: int
    drained_s: Optional[float]
    steady_messages: int
    steady_split: List[int]
    steady_complete: bool
    shared_split: List[int]
    shared_missing: int


def wait_for(condition: Callable[[], bool], timeout_s: float, poll_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll_s)
    return condition()


def wait_quiet(count: Callable[[], int], quiet_s: float, timeout_s: float) -> None:
    """Until ``count()`` has not changed for ``quiet_s`` (or ``timeout_s`` has passed)."""
    deadline = time.monotonic() + timeout_s
    last, since = count(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        time.sleep(0.1)
        now = count()
        if now != last:
            last, since = now, time.monotonic()


def percentile(values: List[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_scenario(
    *,
    devices: int,
    outage_s: float,
    jitter: bool,
    policy: ReconnectPolicy,
    interval_s: float,
    warmup_s: float,
    workdir: Path,
    mosquitto: str,
    timeout_s: float,
    say: Callable[[str], None] = lambda s: None,
) -> Result:
    workdir.mkdir(parents=True, exist_ok=True)
    broker = FleetBroker(workdir, mosquitto)
    broker.start()
    tag = "on" if jitter else "off"
    # The control room subscribes before any device publishes; the workers are forked first.
    fleet = Fleet(devices, DeviceLink((broker.url,)), workdir / "outboxes", policy, jitter, interval_s)
    control = ControlRoom(broker.port, f"{PREFIX}/+/counts", f"control-room-{tag}")
    shared = [ControlRoom(broker.port, f"$share/{SHARE_GROUP}/{PREFIX}/+/counts", f"ctl-{i}-{tag}") for i in (1, 2)]
    try:
        if not wait_for(lambda: fleet.connected() == devices, timeout_s, poll_s=0.5):
            raise RuntimeError(f"only {fleet.connected()} of {devices} devices connected within {timeout_s:g} s")
        say(f"jitter {tag}: {devices} devices connected; publishing every {interval_s:g} s")
        fleet.ask("publish")
        time.sleep(warmup_s)
        # Steady state: everything the control room has by now must reach the shared group too,
        # each message at exactly one of its two members.
        steady = control.keys()[1]
        wait_for(lambda: steady <= set().union(*(s.keys()[1] for s in shared)), min(timeout_s, 60))
        steady_sets = [s.keys()[1] & steady for s in shared]
        steady_split = [len(k) for k in steady_sets]
        steady_complete = set().union(*steady_sets) == steady

        t_stop = time.monotonic()
        broker.stop()
        say(f"jitter {tag}: broker stopped for {outage_s:g} s")
        time.sleep(outage_s)  # the scenario itself: the broker is away this long
        offset = broker.log_size()
        # Measured from the broker's launch: a device may connect before start() sees the port open.
        t_restart = time.monotonic()
        broker.start()
        backlog = fleet.published()  # what each device had published when the broker came back
        say(f"jitter {tag}: broker restarted; waiting for reconnects and drain")

        wait_for(lambda: None not in fleet.back_after(t_restart), timeout_s, poll_s=0.5)
        back = fleet.back_after(t_restart)  # the broker was down from t_stop: any success is a reconnect
        if None in back:
            say(f"jitter {tag}: {back.count(None)} device(s) did not reconnect within {timeout_s:g} s")
        spread = [t - t_restart for t in back if t is not None]

        drained = wait_for(
            lambda: all(control.distinct_count(d) >= n for d, n in backlog.items()), timeout_s, poll_s=0.1
        )
        drained_s = time.monotonic() - t_restart if drained else None
        if not drained:
            short = {d: n - control.distinct_count(d) for d, n in backlog.items() if control.distinct_count(d) < n}
            say(f"jitter {tag}: backlog not drained within {timeout_s:g} s; missing per device: {short}")

        final = fleet.published("halt")
        wait_for(lambda: all(control.distinct_count(d) >= n for d, n in final.items()), timeout_s)
        # The group gets the same chance to catch up; it may have missed some (see below), so wait
        # for it to fall quiet rather than to be complete.
        wait_quiet(lambda: sum(len(s.keys()[1]) for s in shared), quiet_s=2.0, timeout_s=min(timeout_s, 60))

        received, distinct = control.keys()
        lost = sum(max(0, n - control.distinct_count(d)) for d, n in final.items())
        shared_sets = [s.keys()[1] for s in shared]
        union = set().union(*shared_sets)
        # Mosquitto 2.0 does not restore a shared subscription from its persistence file: what the
        # broker routes between its restart and the members' re-SUBSCRIBE never reaches the group.
        shared_missing = len(distinct - union)
        attempt_times = fleet.attempts_since(t_stop)
        per_second = Counter(int(at - t_stop) for at in attempt_times)
        # Apart: the first retry after the loss (within reconnect_min_s, jitter or not) makes the
        # first second of the outage busy; the reconnects after the broker comes back are what jitter spreads.
        after_restart = Counter(int(at - t_restart) for at in attempt_times if at >= t_restart)
        return Result(
            jitter=jitter,
            devices=devices,
            outage_s=outage_s,
            reconnected=len(spread),
            reconnect_p50_s=round(percentile(spread, 0.50), 2),
            reconnect_p95_s=round(percentile(spread, 0.95), 2),
            reconnect_max_s=round(max(spread, default=float("nan")), 2),
            peak_attempts_per_s=max(per_second.values(), default=0),
            peak_attempts_after_restart_per_s=max(after_restart.values(), default=0),
            attempts_total=len(attempt_times),
            broker_connects_after_restart=broker.clients_connected_since(offset)
            - 1
            - len(shared),  # less the subscribers
            published=sum(final.values()),
            received=len(received),
            lost=lost,
            duplicates=len(received) - len(distinct),
            drained_s=None if drained_s is None else round(drained_s, 2),
            steady_messages=len(steady),
            steady_split=steady_split,
            steady_complete=steady_complete,
            shared_split=[len(s) for s in shared_sets],
            shared_missing=shared_missing,
        )
    finally:
        fleet.close()
        for sub in [control, *shared]:
            sub.close()
        broker.stop()


# --------------------------------------------------------------------------- command line


def report(results: List[Result]) -> str:
    rows = [
        ("jitter", lambda r: "on" if r.jitter else "off"),
        ("devices reconnected", lambda r: f"{r.reconnected}/{r.devices}"),
        (
            "reconnect p50 / p95 / max (s after restart)",
            lambda r: f"{r.reconnect_p50_s} / {r.reconnect_p95_s} / {r.reconnect_max_s}",
        ),
        ("peak connection attempts per second, whole outage", lambda r: str(r.peak_attempts_per_s)),
        ("peak connection attempts per second after the restart", lambda r: str(r.peak_attempts_after_restart_per_s)),
        ("connection attempts (outage + reconnect)", lambda r: str(r.attempts_total)),
        ("device CONNECTs accepted by the broker after restart", lambda r: str(r.broker_connects_after_restart)),
        ("counts messages published", lambda r: str(r.published)),
        ("messages lost", lambda r: str(r.lost)),
        ("duplicates delivered", lambda r: str(r.duplicates)),
        ("every backlog drained (s after restart)", lambda r: str(r.drained_s)),
        (
            "shared group, steady state: messages, split ctl-1 / ctl-2, nothing lost",
            lambda r: f"{r.steady_messages}: {' / '.join(map(str, r.steady_split))}, {r.steady_complete}",
        ),
        ("shared group, whole run: split ctl-1 / ctl-2", lambda r: " / ".join(map(str, r.shared_split))),
        ("shared group, whole run: missed after the broker restart", lambda r: str(r.shared_missing)),
    ]
    lines = ["| | " + " | ".join(f"jitter {'on' if r.jitter else 'off'}" for r in results) + " |"]
    lines.append("|---" * (len(results) + 1) + "|")
    for name, cell in rows[1:]:
        lines.append(f"| {name} | " + " | ".join(cell(r) for r in results) + " |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=1000, help="simulated devices (default 1000)")
    ap.add_argument("--outage-s", type=float, default=30.0, help="how long the broker stays down (default 30)")
    ap.add_argument("--interval-s", type=float, default=1.0, help="each device publishes counts this often")
    ap.add_argument("--warmup-s", type=float, default=5.0, help="publishing before the broker is stopped")
    ap.add_argument("--reconnect-min-s", type=float, default=1.0, help="mqtt.reconnect_min_s of every device")
    ap.add_argument("--reconnect-max-s", type=float, default=30.0, help="mqtt.reconnect_max_s of every device")
    ap.add_argument("--timeout-s", type=float, default=300.0, help="give up waiting for a condition after this")
    ap.add_argument("--jitter", choices=["both", "on", "off"], default="both", help="run with jitter, without, or both")
    ap.add_argument("--workdir", type=Path, default=None, help="outboxes and broker files (default: under /dev/shm)")
    ap.add_argument("--json", action="store_true", help="also print each result as a JSON line")
    cl = ap.add_argument_group("a RabbitMQ cluster instead of one Mosquitto (scripts/fleet_cluster.py)")
    cl.add_argument("--cluster", type=int, metavar="N", help="N RabbitMQ nodes on loopback; a node is killed mid-run")
    cl.add_argument("--kill-node-at", type=float, default=5.0, metavar="S", help="kill a node S s into the run")
    cl.add_argument("--restart-after-s", type=float, default=5.0, help="restart the killed node this much later")
    cl.add_argument("--run-after-s", type=float, default=5.0, help="keep publishing this long after the restart")
    cl.add_argument("--via", choices=["list", "haproxy", "both"], default="list",
                    help="devices get every node's URL (list) or one HAProxy in front of the nodes")  # fmt: skip
    args = ap.parse_args(argv)
    if args.cluster is not None:
        return cluster_main(args)
    if args.devices < 1 or args.outage_s < 0 or args.interval_s <= 0:
        print("simulate_fleet: --devices must be >= 1, --outage-s >= 0, --interval-s > 0", file=sys.stderr)
        return 2
    mosquitto = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if mosquitto is None:
        print("simulate_fleet: mosquitto is not installed (apt-get install -y mosquitto)", file=sys.stderr)
        return 2
    # Every device logs each lost connection; a thousand of them would bury the result.
    logging.basicConfig(level=logging.ERROR)
    fds = raise_fd_limit()
    need = args.devices * 6 + 100  # our side: socket + SQLite db/wal/shm per device; the broker's side: one socket
    if fds < need:
        print(
            f"simulate_fleet: {args.devices} devices need about {need} file descriptors; ulimit -n is {fds}",
            file=sys.stderr,
        )
        return 2
    base = Path("/dev/shm") if args.workdir is None and Path("/dev/shm").is_dir() else args.workdir
    root = Path(tempfile.mkdtemp(prefix="fleet-", dir=base))
    policy = ReconnectPolicy(args.reconnect_min_s, args.reconnect_max_s)
    results = []
    try:
        for jitter in {"both": (True, False), "on": (True,), "off": (False,)}[args.jitter]:
            result = run_scenario(
                devices=args.devices,
                outage_s=args.outage_s,
                jitter=jitter,
                policy=policy,
                interval_s=args.interval_s,
                warmup_s=args.warmup_s,
                workdir=root / ("jitter-on" if jitter else "jitter-off"),
                mosquitto=mosquitto,
                timeout_s=args.timeout_s,
                say=lambda s: print(s, file=sys.stderr, flush=True),
            )
            results.append(result)
            if args.json:
                print(json.dumps(asdict(result)), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(report(results))
    return 0 if all(r.lost == 0 and r.reconnected == r.devices for r in results) else 1


def cluster_main(args: argparse.Namespace) -> int:
    from fleet_cluster import cluster_report, run_cluster_scenario
    from rabbitmq_nodes import rabbitmq_missing

    missing = rabbitmq_missing()
    if missing is not None or args.cluster < 2 or args.devices < 1:
        why = missing or "--cluster needs 2 or more nodes and --devices 1 or more"
        print(f"simulate_fleet: {why}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.ERROR)
    raise_fd_limit()
    base = Path("/dev/shm") if args.workdir is None and Path("/dev/shm").is_dir() else args.workdir
    root = Path(tempfile.mkdtemp(prefix="fleet-cluster-", dir=base))
    ok = True
    try:
        for via in {"both": ("list", "haproxy"), "list": ("list",), "haproxy": ("haproxy",)}[args.via]:
            result = run_cluster_scenario(
                devices=args.devices,
                nodes=args.cluster,
                kill_at_s=args.kill_node_at,
                restart_after_s=args.restart_after_s,
                run_after_s=args.run_after_s,
                via=via,
                policy=ReconnectPolicy(args.reconnect_min_s, args.reconnect_max_s),
                interval_s=args.interval_s,
                workdir=root / via,
                timeout_s=args.timeout_s,
                say=lambda s: print(s, file=sys.stderr, flush=True),
            )
            if args.json:
                print(json.dumps(asdict(result)), flush=True)
            print(cluster_report(result), flush=True)
            ok = ok and result.lost == 0 and result.in_seq_order
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
