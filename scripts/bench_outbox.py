#!/usr/bin/env python3
"""Benchmark: how fast a store-and-forward backlog drains to a local broker, against publishing
the same payloads directly with a bare paho client (no outbox, no egress re-check, nothing durable).

    python scripts/bench_outbox.py [--messages 10000] [--broker mqtt://127.0.0.1:PORT] [--json]

Without ``--broker`` it starts a throw-away ``mosquitto`` on a free loopback port. Both runs use
MQTT 5, QoS 1, the same payloads (stamped counts messages) and the same in-flight window. The
outbox run counts until every message is acknowledged *and* deleted from SQLite. One run each;
this is a benchmark, not a timed test.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from appliance.config import config_hash, load_config
from appliance.publish import CountsMessage, CountStats, EgressPolicy, Outbox, make_birth, make_publisher, utcnow
from appliance.publish.delivery import DELIVERY_WINDOW
from appliance.publish.envelope import Envelope
from appliance.publish.writer import OutboxWriter


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_mosquitto(workdir: Path) -> Tuple[subprocess.Popen, int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = _free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 100\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("mosquitto did not start")


def _message(i: int) -> CountsMessage:
    end = utcnow()
    return CountsMessage(window_start=end - timedelta(seconds=10), window_end=end, frames_analyzed=50,
                         total=CountStats(min=i % 3, mean=(i % 3) + 0.5, max=(i % 3) + 1, last=i % 3))


def bench_outbox(url: str, workdir: Path, n: int) -> Dict[str, float]:
    cfg = load_config(overrides={"device_id": "bench-0001", "mqtt": {"url": url},
                                 "outbox": {"path": str(workdir / "bench-outbox.sqlite3")}})
    # The backlog an outage leaves behind: n messages committed while the broker was away.
    box = Outbox(workdir / "bench-outbox.sqlite3", max_bytes=1 << 30, max_age_s=1e9, owner=cfg.device_id)
    writer = OutboxWriter(box, max_queued=n)
    policy = EgressPolicy(topic_prefix=cfg.mqtt.topic_prefix, device_id=cfg.device_id,
                          max_payload_bytes=cfg.publish.max_payload_bytes)
    envelope = Envelope(policy, cfg.device_id)
    t0 = time.perf_counter()
    for i in range(n):
        msg = _message(i)
        writer.submit(lambda seq, msg=msg: envelope.seal(msg, boot_id=1, seq=seq))
    fill_s = time.perf_counter() - t0
    box.close()

    birth = make_birth(config_hash=config_hash(cfg), board=cfg.profile.name, models=())
    pub = make_publisher(device_id=cfg.device_id, mqtt=cfg.mqtt, publish=cfg.publish, outbox=cfg.outbox, birth=birth)
    t0 = time.perf_counter()
    pub.start()
    while pub.stats().pending:
        time.sleep(0.005)
    drain_s = time.perf_counter() - t0
    pub.close(clean=True)
    return {"messages": n, "fill_s": fill_s, "drain_s": drain_s, "drain_msgs_per_s": n / drain_s,
            "enqueue_msgs_per_s": n / fill_s}


def bench_direct(url: str, n: int) -> Dict[str, float]:
    parts = urlsplit(url)
    payloads: List[bytes] = [
        _message(i).stamp(device_id="bench-0002", boot_id=1, seq=i + 1).to_json_bytes() for i in range(n)
    ]
    done = threading.Event()
    acked = [0]

    def on_publish(client: paho.Client, userdata: object, mid: int, reason: object, props: object) -> None:
        acked[0] += 1
        if acked[0] == n:
            done.set()

    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-direct",
                         protocol=paho.MQTTv5)
    client.max_inflight_messages_set(DELIVERY_WINDOW)
    client.on_publish = on_publish
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    client.loop_start()
    t0 = time.perf_counter()
    for payload in payloads:
        client.publish("crowdmon/bench-0002/counts", payload, qos=1)
    done.wait(600)
    elapsed = time.perf_counter() - t0
    client.disconnect()
    client.loop_stop()
    return {"messages": n, "drain_s": elapsed, "drain_msgs_per_s": n / elapsed}


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--broker", help="mqtt://host:port (default: start a local mosquitto)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        proc = None
        url = args.broker
        if url is None:
            proc, port = _start_mosquitto(workdir)
            url = f"mqtt://127.0.0.1:{port}"
        try:
            outbox = bench_outbox(url, workdir, args.messages)
            direct = bench_direct(url, args.messages)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait()
    result = {"outbox": outbox, "direct": direct, "ratio": outbox["drain_msgs_per_s"] / direct["drain_msgs_per_s"]}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{'':28}{'msgs':>8}{'seconds':>10}{'msgs/s':>10}")
        for label, row in (("outbox backlog drain", outbox), ("direct paho (no outbox)", direct)):
            print(f"{label:28}{args.messages:>8}{row['drain_s']:>10.2f}{row['drain_msgs_per_s']:>10.0f}")
        print(f"outbox / direct: {result['ratio']:.2f}  "
              f"(filling the backlog: {outbox['enqueue_msgs_per_s']:.0f} msgs/s, one fsync'd commit each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
