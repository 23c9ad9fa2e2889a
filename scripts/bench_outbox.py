#!/usr/bin/env python3
"""Benchmark: how fast a store-and-forward backlog drains to a local broker, against publishing
the same payloads directly with a bare paho client (no outbox, no egress re-check, nothing durable).

    python scripts/bench_outbox.py [--messages 10000] [--rounds 3] [--restart] [--fast-fill]
                                   [--broker mqtt://127.0.0.1:PORT] [--json]

A week's backlog is about 60,000 counts messages; it must drain within two minutes:

    python scripts/bench_outbox.py --messages 60000 --rounds 1 --restart --fast-fill

Without ``--broker`` it starts a throw-away ``mosquitto`` on a free loopback port. Both arms use
MQTT 5, QoS 1, the same payloads (stamped counts messages) and the same in-flight window at the
broker. The backlog is what an outage leaves behind: ``--messages`` committed (one fsync'd commit
each) while the broker was away. The outbox arm counts from the publisher's start until every
message is acknowledged *and* deleted from SQLite.

* default: the broker or the link was away, the appliance kept running. The same publisher stored
  the backlog, then starts and drains it. Each round stores its own backlog.
* ``--restart``: the appliance was restarted during the outage. The backlog was stored by an
  earlier process (written once, a fresh copy per round).

Either way every row is checked against its checksum and by the egress policy in full before it is
sent. ``--fast-fill`` (with ``--restart``) stores the backlog without an fsync per message: the
file drained is the same, and filling 60,000 fsync'd commits takes a quarter of an hour on a
shared machine.

The machine this runs on is shared, so the arms alternate (direct, outbox, outbox, direct, ...)
and the figure reported is the ratio of the medians over ``--rounds`` rounds; only that ratio,
measured side by side in one run, means anything. Progress goes to stderr, the table (or JSON)
to stdout. This is a benchmark, not a timed test.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
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

import appliance
from appliance.config import config_hash, load_config
from appliance.publish import CountsMessage, CountStats, EgressPolicy, Outbox, make_birth, make_publisher, utcnow
from appliance.publish.outbox.writer import OutboxWriter
from appliance.publish.publisher import MqttPublisher
from appliance.publish.seqs import SeqAllocator
from appliance.publish.stamper import Stamper

DEVICE_ID = "bench-0001"
# What the appliance's paho client allows in flight at the broker (MqttLink); the direct arm uses
# the same, so both arms are held to one window.
BROKER_WINDOW = 64
POLL_S = 0.01


def progress(msg: str) -> None:
    print(f"[bench_outbox] {msg}", file=sys.stderr, flush=True)


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


def fill_backlog(path: Path, n: int, fast: bool = False) -> float:
    """Commit ``n`` counts messages to a fresh outbox at ``path`` the way the pipeline does while the
    broker is away (in another process); returns the seconds it took."""
    cfg = load_config(overrides={"device_id": DEVICE_ID})
    box = Outbox(path, max_bytes=1 << 30, max_age_s=1e9, owner=DEVICE_ID)
    if fast:
        box._db.execute("PRAGMA synchronous=OFF")  # the bench's fill only: same rows, no fsync each
    writer = OutboxWriter(box, seqs=SeqAllocator(last_seq=box.last_seq, last_boot_id=box.boot_id), max_queued=n)
    policy = EgressPolicy(topic_prefix=cfg.mqtt.topic_prefix, device_id=DEVICE_ID,
                          max_payload_bytes=cfg.publish.max_payload_bytes)
    stamper = Stamper(policy, DEVICE_ID)
    t0 = time.perf_counter()
    for i in range(n):
        msg = _message(i)
        writer.submit(lambda seq, msg=msg: stamper.seal(msg, boot_id=1, seq=seq))
        if (i + 1) % max(1, n // 10) == 0:
            progress(f"filling the backlog: {i + 1}/{n}")
    elapsed = time.perf_counter() - t0
    box.close()  # checkpoints the WAL into the main file: one file to copy per round
    return elapsed


def bench_outbox(url: str, backlog: Optional[Path], workdir: Path, n: int) -> Tuple[float, float]:
    """Drain a backlog through the appliance's publisher: a copy of ``backlog`` (stored by another
    process), or, when None, ``n`` messages this publisher stores first. Returns the drain's wall
    and CPU seconds (this process's, all threads)."""
    path = workdir / "outbox.sqlite3"
    for stale in workdir.glob("outbox.sqlite3*"):
        stale.unlink()
    if backlog is not None:
        shutil.copyfile(backlog, path)
    cfg = load_config(overrides={"device_id": DEVICE_ID, "mqtt": {"url": url}, "outbox": {"path": str(path)}})
    birth = make_birth(config_hash=config_hash(cfg), board=cfg.profile.name, models=())
    pub = make_publisher(device_id=cfg.device_id, mqtt=cfg.mqtt, publish=cfg.publish, outbox=cfg.outbox, birth=birth)
    assert isinstance(pub, MqttPublisher)
    if backlog is None:
        # What publish() does while the broker is away, with this publisher's own stamper (before
        # start(), so that nothing is sent yet; the birth then follows the backlog).
        seqs = SeqAllocator(last_seq=pub.outbox.last_seq, last_boot_id=pub.outbox.boot_id)
        writer = OutboxWriter(pub.outbox, seqs=seqs, max_queued=n)
        for i in range(n):
            msg = _message(i)
            writer.submit(lambda seq, msg=msg: pub.stamper.seal(msg, boot_id=1, seq=seq))
            if (i + 1) % max(1, n // 4) == 0:
                progress(f"storing the backlog: {i + 1}/{n}")
    t0, c0 = time.perf_counter(), time.process_time()
    pub.start()
    # Is any row left? One indexed lookup. (pub.stats() also counts the whole backlog: polled
    # every POLL_S it would take CPU from the drain it measures.)
    while pub.outbox.pending(limit=1):
        time.sleep(POLL_S)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    pub.close(clean=True)
    return elapsed, cpu


def bench_direct(url: str, payloads: List[bytes]) -> Tuple[float, float]:
    """Publish the payloads with a bare paho client; returns the wall and CPU seconds until the
    last PUBACK."""
    parts = urlsplit(url)
    n = len(payloads)
    done = threading.Event()
    acked = [0]

    def on_publish(client: paho.Client, userdata: object, mid: int, reason: object, props: object) -> None:
        acked[0] += 1
        if acked[0] == n:
            done.set()

    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-direct",
                         protocol=paho.MQTTv5)
    client.max_inflight_messages_set(BROKER_WINDOW)
    client.on_publish = on_publish
    t0, c0 = time.perf_counter(), time.process_time()  # from before the connect, as the outbox arm
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    client.loop_start()
    for payload in payloads:
        client.publish("crowdmon/bench-0002/counts", payload, qos=1)
    done.wait(600)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    client.disconnect()
    client.loop_stop()
    return elapsed, cpu


def run(url: str, workdir: Path, n: int, rounds: int, restart: bool, fast_fill: bool = False) -> Dict[str, object]:
    progress(f"appliance code from {Path(appliance.__file__).parent}")
    backlog = workdir / "backlog.sqlite3" if restart else None
    fill_s = fill_backlog(backlog, n, fast_fill) if backlog is not None else None
    payloads = [_message(i).stamp(device_id="bench-0002", boot_id=1, seq=i + 1).to_json_bytes() for i in range(n)]
    drain: Dict[str, List[float]] = {"direct": [], "outbox": []}
    cpu: Dict[str, List[float]] = {"direct": [], "outbox": []}
    for r in range(rounds):
        # Alternate which arm goes first, so neither always runs on the warmer or quieter machine.
        for arm in (("direct", "outbox") if r % 2 == 0 else ("outbox", "direct")):
            seconds, cpu_s = bench_direct(url, payloads) if arm == "direct" else bench_outbox(url, backlog, workdir, n)
            drain[arm].append(seconds)
            cpu[arm].append(cpu_s)
            progress(f"round {r + 1}/{rounds} {arm:6}: {n / seconds:8.0f} msgs/s ({seconds:.2f} s, CPU {cpu_s:.2f} s)")
    rate = {arm: n / statistics.median(times) for arm, times in drain.items()}
    cpu_us = {arm: statistics.median(times) / n * 1e6 for arm, times in cpu.items()}
    return {
        "messages": n,
        "rounds": rounds,
        "scenario": "restart" if restart else "same process",
        "fill_msgs_per_s": n / fill_s if fill_s else None,
        "drain_s": drain,
        "cpu_s": cpu,
        "median_msgs_per_s": rate,
        "median_cpu_us_per_msg": cpu_us,
        "ratio": rate["outbox"] / rate["direct"],
        "ratio_per_round": [d / o for d, o in zip(drain["direct"], drain["outbox"])],
        "cpu_ratio": cpu_us["direct"] / cpu_us["outbox"],
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each arm, interleaved (default 3)")
    ap.add_argument("--restart", action="store_true",
                    help="the backlog was stored by an earlier process (every row re-checked in full)")
    ap.add_argument("--fast-fill", action="store_true",
                    help="with --restart: store the backlog without an fsync per message (same file, faster)")
    ap.add_argument("--broker", help="mqtt://host:port (default: start a local mosquitto)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.messages < 1 or args.rounds < 1:
        print("bench_outbox: --messages and --rounds must be at least 1", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        proc = None
        url = args.broker
        if url is None:
            proc, port = _start_mosquitto(workdir)
            url = f"mqtt://127.0.0.1:{port}"
        try:
            result = run(url, workdir, args.messages, args.rounds, args.restart, args.fast_fill)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        rate, cpu_us = result["median_msgs_per_s"], result["median_cpu_us_per_msg"]
        assert isinstance(rate, dict) and isinstance(cpu_us, dict)
        print(f"{args.messages} messages, backlog stored by {'an earlier' if args.restart else 'the same'} "
              f"process, median of {args.rounds} interleaved rounds")
        print(f"{'':28}{'msgs/s':>10}{'CPU us/msg':>12}")
        print(f"{'outbox backlog drain':28}{rate['outbox']:>10.0f}{cpu_us['outbox']:>12.0f}")
        print(f"{'direct paho (no outbox)':28}{rate['direct']:>10.0f}{cpu_us['direct']:>12.0f}")
        per_round = ", ".join(f"{r:.2f}" for r in result["ratio_per_round"])  # type: ignore[attr-defined]
        print(f"outbox / direct: {result['ratio']:.2f} msgs/s, {result['cpu_ratio']:.2f} by CPU per message  "
              f"(msgs/s per round: {per_round})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
