"""The control room's fleet monitor."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any


def cmd_monitor(args: argparse.Namespace) -> int:
    from appliance.monitor.runner import MonitorOptions, run_monitor

    opts = MonitorOptions(
        broker_url=",".join(args.broker),
        devices=",".join(args.device),
        prefix=args.prefix,
        json=args.json,
        once=args.once,
        duration_s=args.duration,
        client_id=args.client_id,
        username=args.username,
        password_file=args.password_file,
        ca_file=args.ca_file,
        cert_file=args.cert_file,
        key_file=args.key_file,
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    return run_monitor(opts, stop)


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text}")
    return value


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("monitor", help="live read-only view of a fleet: status, counts, anomalies, health, seq gaps")
    p.add_argument(
        "--broker",
        metavar="URL",
        required=True,
        action="append",
        help="mqtt://host:port or mqtts://host:port; several (repeated, or comma-separated) for the nodes of one "
        "cluster: tried in order, the next one when the one in use is lost",
    )
    p.add_argument("--prefix", default="crowdmon", metavar="P", help="the devices' mqtt.topic_prefix")
    p.add_argument(
        "--device",
        metavar="ID",
        action="append",
        default=[],
        help="watch only this device (repeated, or comma-separated), on its exact topics: needed for retained "
        "messages on RabbitMQ, which hands none to a wildcard subscription",
    )
    p.add_argument("--json", action="store_true", help="one JSON line per device update instead of the table")
    p.add_argument("--once", action="store_true", help="print one fleet snapshot after --duration (3 s), then exit")
    p.add_argument("--duration", type=_positive_seconds, metavar="S", help="stop after S seconds (default: Ctrl-C)")
    p.add_argument("--client-id", metavar="ID", help="MQTT client id (default: random)")
    p.add_argument("--username", metavar="NAME", help="MQTT user name (default: none)")
    p.add_argument("--password-file", metavar="FILE", help="file holding the MQTT password (with --username)")
    p.add_argument("--ca-file", metavar="FILE", help="CA that signed the broker certificate (mqtts://)")
    p.add_argument("--cert-file", metavar="FILE", help="client certificate (mutual TLS)")
    p.add_argument("--key-file", metavar="FILE", help="client key (mutual TLS)")
    p.set_defaults(func=cmd_monitor)
