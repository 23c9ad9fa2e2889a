"""RabbitMQ nodes with the MQTT plugin on loopback, one or a cluster, for tests and benchmarks.

Debian's ``rabbitmq-server``, each node its own Erlang VM with its own name (``crowdN@localhost``),
data folder and free ports (AMQP, MQTT, distribution), all on 127.0.0.1; the nodes of a cluster
share an Erlang cookie and one epmd on a free port, and find each other by RabbitMQ's
``classic_config`` peer discovery. MQTT sessions that outlive a connection (clean session off) are
quorum queues (``mqtt.durable_queue_type = quorum``), replicated on every node, so a control
room's session survives the loss of any one node.

Used by tests/test_publish_rabbitmq.py (one node), tests/test_broker_cluster.py and
scripts/simulate_fleet.py ``--cluster`` (three). Nothing here listens beyond loopback.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

RABBITMQ = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
RABBITMQCTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")


def rabbitmq_missing() -> Optional[str]:
    """Why RabbitMQ cannot run here, or None."""
    if not RABBITMQ.exists() or shutil.which("erl") is None:
        return "rabbitmq-server is not installed (apt-get install -y rabbitmq-server)"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mqtt_answers(port: int, timeout_s: float = 2.0) -> bool:
    """Whether an MQTT CONNECT on ``port`` gets a successful CONNACK (the listener opens before the
    node can take sessions)."""
    # MQTT 3.1.1 CONNECT, clean session, keepalive 10 s, client id "probe".
    connect = bytes([0x10, 17, 0, 4]) + b"MQTT" + bytes([4, 0x02, 0, 10, 0, 5]) + b"probe"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(connect)
            reply = sock.recv(4)
            with_disconnect = reply[:1] == b"\x20" and len(reply) == 4 and reply[3] == 0
            if with_disconnect:
                sock.sendall(b"\xe0\x00")
            return with_disconnect
    except OSError:
        return False


class RabbitNode:
    """One RabbitMQ node bound to 127.0.0.1; killable, stoppable and restartable with its data."""

    def __init__(
        self,
        work: Path,
        *,
        name: str,
        epmd_port: int,
        cookie_home: Path,
        peers: Sequence[str] = (),
    ) -> None:
        self.work = work
        self.name = name  # crowdN@localhost
        self.mqtt_port = free_port()
        self.amqp_port = free_port()
        self.log = work / "rabbitmq.out"
        config = [
            f"listeners.tcp.1 = 127.0.0.1:{self.amqp_port}",
            f"mqtt.listeners.tcp.1 = 127.0.0.1:{self.mqtt_port}",
            "mqtt.allow_anonymous = true",
            "mqtt.durable_queue_type = quorum",
            "loopback_users = none",
            # Only the broker under test: no management UI, no disk-space alarm on a full CI disk.
            "disk_free_limit.absolute = 1MB",
        ]
        if peers:
            config.append("cluster_formation.peer_discovery_backend = classic_config")
            config += [f"cluster_formation.classic_config.nodes.{i} = {peer}" for i, peer in enumerate(peers, 1)]
        (work / "rabbitmq.conf").write_text("\n".join(config) + "\n")
        (work / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        self.env: Dict[str, str] = {
            **os.environ,
            "HOME": str(cookie_home),  # the Erlang cookie lives here: one per cluster
            "RABBITMQ_CONFIG_FILE": str(work / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(work / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(work / "mnesia"),
            "RABBITMQ_LOG_BASE": str(work / "log"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(work / "plugins-expand"),
            "RABBITMQ_PID_FILE": str(work / "rabbitmq.pid"),
            "RABBITMQ_NODENAME": name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(epmd_port),
        }
        self.proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def launch(self) -> None:
        """Start the node's VM (returns at once; :meth:`wait_ready` waits for MQTT)."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(RABBITMQ)], env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text(errors='replace')[-3000:]}")
            if mqtt_answers(self.mqtt_port):
                return
            time.sleep(0.3)
        tail = self.log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{self.name}: MQTT did not answer within {timeout_s:g} s: {tail}")

    def start(self, timeout_s: float = 180.0) -> None:
        self.launch()
        self.wait_ready(timeout_s)

    def kill(self) -> None:
        """SIGKILL the whole VM: what a crashed or powered-off node looks like to its clients."""
        if self.proc is None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        """SIGTERM to the node: an orderly shutdown that keeps durable queues."""
        if self.proc is None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def ctl(self, *args: str, timeout_s: float = 60.0) -> str:
        """``rabbitmqctl -n NODE ...``; its output."""
        proc = subprocess.run(
            [str(RABBITMQCTL), "-n", self.name, *args],
            env=self.env, capture_output=True, text=True, timeout=timeout_s, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {self.name}: {proc.stderr.strip()[-500:]}")
        return proc.stdout


def _start_epmd(port: int, env: Dict[str, str]) -> None:
    subprocess.run(["epmd", "-daemon", "-port", str(port)], env=env, check=True, capture_output=True)


def _stop_epmd(port: int, env: Dict[str, str]) -> None:
    subprocess.run(["epmd", "-port", str(port), "-kill"], env=env, capture_output=True, check=False)


class RabbitCluster:
    """``size`` nodes on loopback forming one cluster (size 1: a single node)."""

    def __init__(self, work: Path, size: int = 3, *, prefix: str = "crowd") -> None:
        self.work = work
        self.epmd_port = free_port()
        home = work / "home"
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(os.urandom(16).hex().upper())
            cookie.chmod(0o400)
        tag = f"{prefix}{self.epmd_port}"
        names = [f"{tag}n{i}@localhost" for i in range(1, size + 1)]
        self.nodes: List[RabbitNode] = []
        for i, name in enumerate(names):
            node_dir = work / f"node{i + 1}"
            node_dir.mkdir(parents=True, exist_ok=True)
            peers = names if size > 1 else ()
            self.nodes.append(RabbitNode(node_dir, name=name, epmd_port=self.epmd_port, cookie_home=home, peers=peers))
        self._env = {**os.environ, "ERL_EPMD_ADDRESS": "127.0.0.1"}

    @property
    def urls(self) -> List[str]:
        return [n.url for n in self.nodes]

    def start(self, timeout_s: float = 240.0) -> None:
        """The first node forms the cluster; the others then join it (started together)."""
        _start_epmd(self.epmd_port, self._env)
        first, rest = self.nodes[0], self.nodes[1:]
        first.start(timeout_s)
        for node in rest:
            node.launch()
        for node in rest:
            node.wait_ready(timeout_s)
        if len(self.nodes) > 1:
            self.wait_clustered(timeout_s)

    def running_nodes(self, via: Optional[RabbitNode] = None) -> List[str]:
        """The cluster's running nodes as ``via`` (default: the first running node) sees them."""
        node = via or next(n for n in self.nodes if n.running)
        out = node.ctl("eval", "rabbit_nodes:all_running().")
        return sorted(name for name in (n.name for n in self.nodes) if name in out)

    def wait_clustered(self, timeout_s: float = 120.0) -> None:
        want = sorted(n.name for n in self.nodes if n.running)
        deadline = time.monotonic() + timeout_s
        seen: List[str] = []
        while time.monotonic() < deadline:
            try:
                seen = self.running_nodes()
            except RuntimeError:
                seen = []
            if seen == want:
                return
            time.sleep(1.0)
        raise RuntimeError(f"cluster did not form within {timeout_s:g} s: running {seen}, expected {want}")

    def stop(self) -> None:
        for node in reversed(self.nodes):
            if node.running:
                node.stop()
        _stop_epmd(self.epmd_port, self._env)
