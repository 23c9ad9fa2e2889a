"""A fleet on a three-node RabbitMQ cluster through the loss of one node (``simulate_fleet.py --cluster``).

Each simulated device runs the appliance's own publish stack (outbox, birth and will, the retained
notice and anomaly state re-published at every connect) and is given every node's URL, rotated so
that a third of the fleet starts on each node; or (``--via haproxy``) the one address of an HAProxy
in front of the nodes. The cluster (scripts/rabbitmq_nodes.py) keeps MQTT sessions in quorum
queues; the control room holds one such session on a node that is not killed.

Scenario::

    all devices connected, publishing -> node 1 (the first URL of a third of the fleet) killed with
    SIGKILL at --kill-node-at s -> restarted --restart-after-s later -> publishing stops, backlogs drain

Measured: messages sent, received and lost (the control room's distinct (device, boot, seq)),
whether each device's counts arrived in seq order, reconnect time of the devices that lost their
node (kill -> first successful CONNECT elsewhere, p50/p95/max), and what a fresh subscriber on each
node finds retained (status online, notice, anomaly state), since RabbitMQ keeps retained messages
per node and replicates none of them.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Literal, Optional

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from rabbitmq_nodes import RabbitCluster, free_port
from simulate_fleet import PREFIX, ControlRoom, DeviceLink, Fleet, ReconnectPolicy, percentile, wait_for

HAPROXY = "/usr/sbin/haproxy"


@dataclass
class RetainedSeen:
    """What a subscriber connecting to one node is handed as retained."""

    node: str
    status_online: int  # devices whose retained status is 'online' of their current boot
    notice: int
    anomaly_state: int


@dataclass
class ClusterResult:
    via: str
    nodes: int
    devices: int
    node_killed: str
    devices_on_killed_node: int
    kill_at_s: float
    restart_after_s: float
    sent: int
    received: int
    lost: int
    duplicates: int
    in_seq_order: bool
    reconnected: int
    reconnect_p50_s: float
    reconnect_p95_s: float
    reconnect_max_s: float
    drained_s: Optional[float]
    retained: List[RetainedSeen] = field(default_factory=list)
    current_node_holds_retained: Optional[bool] = None  # (list) each device's node has its retained documents


class HaProxy:
    """HAProxy in TCP mode in front of the nodes, health-checking them every second."""

    def __init__(self, work: Path, ports: List[int]) -> None:
        self.port = free_port()
        self.conf = work / "haproxy.cfg"
        servers = "\n".join(
            f"    server n{i} 127.0.0.1:{p} check inter 1s fall 2 rise 2" for i, p in enumerate(ports, 1)
        )
        self.conf.write_text(
            "global\n    maxconn 4000\n"
            "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 120s\n    timeout server 120s\n"
            "    retries 3\n    option redispatch\n"
            f"frontend mqtt\n    bind 127.0.0.1:{self.port}\n    default_backend nodes\n"
            f"backend nodes\n    balance roundrobin\n{servers}\n"
        )
        self.proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.conf.with_suffix(".log"), "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen([HAPROXY, "-f", str(self.conf), "-db"], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited: {self.conf.with_suffix('.log').read_text()[-1000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.1)
        raise RuntimeError("haproxy did not listen")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def retained_on(port: int, devices: List[str], quiet_s: float = 1.5) -> Dict[str, Dict[str, Any]]:
    """``{device: {kind: payload}}`` of what a new subscriber on ``port`` is handed retained."""
    seen: Dict[str, Dict[str, Any]] = {d: {} for d in devices}
    lock = threading.Lock()
    last = [time.monotonic()]
    subscribed = threading.Event()

    def on_message(c: Any, userdata: Any, msg: Any) -> None:
        if msg.retain and msg.payload:
            _, device, kind = msg.topic.split("/", 2)
            with lock:
                seen.setdefault(device, {})[kind] = json.loads(msg.payload)
                last[0] = time.monotonic()

    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    client.on_message = on_message
    # One exact topic each: RabbitMQ (3.10) hands retained messages to subscriptions without
    # wildcards only; a "+" or "#" subscription gets none.
    topics = [(f"{PREFIX}/{d}/{kind}", 1) for d in devices for kind in ("status", "notice", "anomaly_state")]
    client.on_connect = lambda c, *a: c.subscribe(topics)
    client.on_subscribe = lambda *a: subscribed.set()
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    try:
        subscribed.wait(30)
        last[0] = time.monotonic()
        while time.monotonic() - last[0] < quiet_s:
            time.sleep(0.1)
    finally:
        client.disconnect()
        client.loop_stop()
    return seen


def count_retained(node: str, seen: Dict[str, Dict[str, Any]], boots: Dict[str, int]) -> RetainedSeen:
    def current(d: str, kind: str) -> bool:
        doc = seen.get(d, {}).get(kind)
        return doc is not None and (kind == "notice" or doc.get("boot_id") == boots.get(d))

    online = sum(1 for d in boots if current(d, "status") and seen[d]["status"]["state"] == "online")
    return RetainedSeen(
        node=node,
        status_online=online,
        notice=sum(1 for d in boots if current(d, "notice")),
        anomaly_state=sum(1 for d in boots if current(d, "anomaly_state")),
    )


def run_cluster_scenario(
    *,
    devices: int,
    nodes: int,
    kill_at_s: float,
    restart_after_s: float,
    run_after_s: float,
    via: Literal["list", "haproxy"],
    policy: ReconnectPolicy,
    interval_s: float,
    workdir: Path,
    timeout_s: float,
    say: Callable[[str], None] = lambda s: None,
) -> ClusterResult:
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = RabbitCluster(workdir / "cluster", nodes)
    proxy: Optional[HaProxy] = None
    fleet: Optional[Fleet] = None
    control: Optional[ControlRoom] = None
    try:
        cluster.start()
        say(f"{nodes} RabbitMQ nodes clustered: {', '.join(cluster.urls)}")
        urls = tuple(cluster.urls)
        if via == "haproxy":
            proxy = HaProxy(workdir, [n.mqtt_port for n in cluster.nodes])
            proxy.start()
            urls = (proxy.url,)
        # The control room's session (a quorum queue) is on the second node, which stays up.
        control = ControlRoom(cluster.nodes[1].mqtt_port, f"{PREFIX}/+/counts", "control-room", mqtt311=True)
        fleet = Fleet(devices, DeviceLink(urls, protocol="3.1.1", notice=True), workdir / "outboxes", policy,
                      True, interval_s)  # fmt: skip
        if not wait_for(lambda: fleet is not None and fleet.connected() == devices, timeout_s, poll_s=0.5):
            raise RuntimeError(f"only {fleet.connected()} of {devices} devices connected within {timeout_s:g} s")
        fleet.ask("publish")
        say(f"{devices} devices publishing every {interval_s:g} s ({via})")
        time.sleep(kill_at_s)  # the scenario: the node dies this far into the run
        victim = cluster.nodes[0]
        on_victim = [d for d, url in fleet.connected_to().items() if url == victim.url]
        t_kill = time.monotonic()
        victim.kill()
        say(f"killed {victim.name} ({len(on_victim)} devices on it)")
        time.sleep(restart_after_s)
        victim.start()
        cluster.wait_clustered(timeout_s)
        say(f"{victim.name} restarted and back in the cluster")
        time.sleep(run_after_s)
        back = fleet.back_after(t_kill)
        ids = [f"sim-{i:04d}" for i in range(devices)]
        by_id = dict(zip(ids, back))
        if via == "haproxy":
            # Behind the proxy every device's broker is the proxy: those that had to reconnect were
            # the ones on the killed node.
            on_victim = [d for d in ids if by_id[d] is not None]
        spread = [by_id[d] - t_kill for d in on_victim if by_id.get(d) is not None]
        final = fleet.published("halt")
        t_halt = time.monotonic()
        drained = wait_for(lambda: all(control.distinct_count(d) >= n for d, n in final.items()), timeout_s, 0.2)
        received, distinct = control.keys()
        lost = sum(max(0, n - control.distinct_count(d)) for d, n in final.items())
        in_order = all(_first_occurrences(seqs) == sorted(set(seqs)) for seqs in control.order.values())
        boots = {d: 1 for d in ids}  # one boot each in this scenario
        per_node = {n.url: retained_on(n.mqtt_port, ids) for n in cluster.nodes}
        retained = [count_retained(n.name, per_node[n.url], boots) for n in cluster.nodes]
        holds = None
        if via == "list":
            # The device side holds: the node each device is on now has its current retained documents.
            now_on = fleet.connected_to()
            holds = all(url is not None and _has_all(per_node[url], d) for d, url in now_on.items())
        return ClusterResult(
            via=via,
            nodes=nodes,
            devices=devices,
            node_killed=victim.name,
            devices_on_killed_node=len(on_victim),
            kill_at_s=kill_at_s,
            restart_after_s=restart_after_s,
            sent=sum(final.values()),
            received=len(distinct),
            lost=lost,
            duplicates=len(received) - len(distinct),
            in_seq_order=in_order,
            reconnected=len(spread),
            reconnect_p50_s=round(percentile(spread, 0.50), 2),
            reconnect_p95_s=round(percentile(spread, 0.95), 2),
            reconnect_max_s=round(max(spread, default=float("nan")), 2),
            drained_s=round(time.monotonic() - t_halt, 2) if drained else None,
            retained=retained,
            current_node_holds_retained=holds,
        )
    finally:
        if fleet is not None:
            fleet.close()
        if control is not None:
            control.close()
        if proxy is not None:
            proxy.stop()
        cluster.stop()


def _has_all(seen: Dict[str, Dict[str, Any]], device: str) -> bool:
    """The node holds the device's online birth, notice and anomaly state, all of boot 1."""
    one = count_retained("", {device: seen.get(device, {})}, {device: 1})
    return (one.status_online, one.notice, one.anomaly_state) == (1, 1, 1)


def _first_occurrences(values: List[int]) -> List[int]:
    seen: set = set()
    out = []
    for v in values:
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out


def cluster_report(r: ClusterResult) -> str:
    retained = "; ".join(
        f"{x.node.split('@')[0]}: status {x.status_online}/{r.devices}, notice {x.notice}/{r.devices}, "
        f"anomaly state {x.anomaly_state}/{r.devices}"
        for x in r.retained
    )
    rows = [
        ("devices reach the cluster", "each given every node's URL" if r.via == "list" else "one HAProxy address"),
        ("nodes / devices", f"{r.nodes} / {r.devices}"),
        ("node killed (devices on it)", f"{r.node_killed} ({r.devices_on_killed_node})"),
        ("sent / received / lost / duplicates", f"{r.sent} / {r.received} / {r.lost} / {r.duplicates}"),
        ("every device's counts in seq order", str(r.in_seq_order)),
        ("reconnect after the kill p50 / p95 / max (s)",
         f"{r.reconnect_p50_s} / {r.reconnect_p95_s} / {r.reconnect_max_s}"),
        ("retained seen by a new subscriber per node", retained),
    ]
    return "\n".join(f"| {name} | {value} |" for name, value in rows)
