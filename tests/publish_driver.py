"""A stand-in for the pipeline, in its own process: start a publisher, publish counts, stop.

Used by the tests that SIGKILL the appliance (the real pipeline is wired the same way):

    python tests/publish_driver.py --broker URL --device-id ID --outbox PATH [--count N] [--period S]

Prints ``ready <boot_id>`` once the publisher has started and, with ``--announce``, ``published
<seq>`` after each message is stored (so a test can kill it at a known point instead of racing a
sleep). With ``--zone-limit`` its config has an ``entrance`` zone with a people limit and Home
Assistant discovery on (the retained documents published as ``appliance run`` does); with
``--raise-overcrowding`` it raises overcrowding there first and prints ``raised <seq>`` (the seq of
the anomaly state that lists it). SIGTERM stops it cleanly (``offline`` published). With
``--drain`` it publishes nothing, waits until the outbox is empty and stops cleanly. Like
``appliance run``, an ApplianceError ends it with one line on stderr and the error's exit code, and
it calls ``check()`` on every message.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Optional, Sequence

from appliance.app import retained_documents
from appliance.config import config_hash, load_config
from appliance.errors import ApplianceError
from appliance.publish import AnomalyMessage, CountsMessage, CountStats, MqttPublisher, make_birth, make_publisher
from appliance.transparency import build_notice


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker", required=True)
    ap.add_argument("--device-id", required=True)
    ap.add_argument("--outbox", required=True)
    ap.add_argument("--count", type=int, default=0, help="0: forever")
    ap.add_argument("--period", type=float, default=0.05)
    ap.add_argument("--drain", action="store_true")
    ap.add_argument("--announce", action="store_true")
    ap.add_argument("--zone-limit", action="store_true")
    ap.add_argument("--raise-overcrowding", action="store_true")
    args = ap.parse_args(argv)

    cfg = load_config(
        overrides={
            "device_id": args.device_id,
            "mqtt": {"url": args.broker, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
            "outbox": {"path": args.outbox},
            "publish": {"close_timeout_s": 10},
            **(
                {
                    "zones": [{"name": "entrance", "polygon": [[0, 0], [1, 0], [1, 1]], "max_people": 10}],
                    "home_assistant": {"enabled": True},
                }
                if args.zone_limit
                else {}
            ),
        }
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        return run(cfg, args, stop)
    except ApplianceError as exc:
        print(exc, file=sys.stderr, flush=True)
        return exc.exit_code


def run(cfg, args: argparse.Namespace, stop: threading.Event) -> int:  # type: ignore[no-untyped-def]
    birth = make_birth(config_hash=config_hash(cfg), board=cfg.profile.name, models=())
    documents = retained_documents(cfg, build_notice(cfg)) if args.zone_limit else []
    pub = make_publisher(
        device_id=cfg.device_id, mqtt=cfg.mqtt, publish=cfg.publish, outbox=cfg.outbox, birth=birth,
        documents=documents, discovery_prefix=cfg.home_assistant.discovery_prefix,
    )  # fmt: skip
    assert isinstance(pub, MqttPublisher)
    pub.start()
    print(f"ready {pub.boot_id}", flush=True)
    if args.raise_overcrowding:
        now = datetime.now(timezone.utc)
        pub.publish(
            AnomalyMessage(
                type="overcrowding", event_id=uuid.uuid4().hex, zone="entrance", state="raised", value=14.0,
                threshold=10.0, since=now - timedelta(seconds=20), severity="critical", reason="14 people > limit 10",
            )
        )  # fmt: skip
        print(f"raised {pub.outbox.last_seq}", flush=True)

    if args.drain:
        deadline = time.monotonic() + 60
        while pub.stats().pending and time.monotonic() < deadline:
            pub.check()
            time.sleep(0.05)
    else:
        n = 0
        while not stop.is_set() and (args.count == 0 or n < args.count):
            pub.check()
            end = datetime.now(timezone.utc)
            pub.publish(
                CountsMessage(
                    window_start=end - timedelta(seconds=args.period),
                    window_end=end,
                    frames_analyzed=1,
                    total=CountStats(min=n % 7, mean=n % 7, max=n % 7, last=n % 7),
                )
            )
            if args.announce:
                print(f"published {pub.outbox.last_seq}", flush=True)
            n += 1
            stop.wait(args.period)
    pub.close(clean=True)
    print("closed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
