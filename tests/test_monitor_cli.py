"""``appliance monitor`` against a real Mosquitto: two fake devices built with the real message
classes, one with a seq gap, a late delivery and a raised anomaly, one offline; read with ``--json``.
A device's retained notice is shown; the selftest probe and Home Assistant configs are not news."""

from __future__ import annotations

import json
import os
import queue
import resource
import signal
import ssl
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pytest
from rich.console import Console
from support.brokers import free_port
from support.repo import REPO

from appliance.config import load_config
from appliance.config.schema import HomeAssistantConfig, MqttConfig
from appliance.errors import InputError
from appliance.monitor.runner import MonitorOptions, run_monitor
from appliance.monitor.state import FleetState
from appliance.monitor.view import fleet_table
from appliance.publish import (
    AnomalyMessage,
    CountsMessage,
    CountStats,
    HealthMessage,
    StatusMessage,
    ZoneStats,
    check_broker,
)
from appliance.publish.discovery import discovery_messages
from appliance.publish.egress import EgressPolicy, RetainedDocument
from appliance.publish.messages import CameraHealth, Message
from appliance.transparency import Notice, build_notice, notice_hash, notice_payload

PREFIX = "testfleet"
T0 = datetime.now(timezone.utc).replace(microsecond=0)


def _status(dev: str, boot: int, seq: int, offline: bool = False, notice: Optional[str] = None) -> Message:
    birth = StatusMessage(config_hash="ab" * 8, board="rpi5", started_at=T0, notice_hash=notice)
    return (birth.as_offline() if offline else birth).stamp(device_id=dev, boot_id=boot, seq=seq)


def _counts(dev: str, boot: int, seq: int, total: int, entrance: int) -> Message:
    end = T0 + timedelta(seconds=10 * seq)
    return CountsMessage(
        window_start=end - timedelta(seconds=10),
        window_end=end,
        frames_analyzed=50,
        total=CountStats(min=0, mean=float(total), max=total, last=total),
        zones={"entrance": ZoneStats(min=0, mean=float(entrance), max=entrance, last=entrance)},
    ).stamp(device_id=dev, boot_id=boot, seq=seq)


def _publish(broker: Any, messages: List[Message], prefix: str = PREFIX, tls: Optional[ssl.SSLContext] = None) -> None:
    # Topic and bytes exactly as the device's own egress policy approves them.
    approved = [
        EgressPolicy(topic_prefix=prefix, device_id=m.device_id, max_payload_bytes=16384).approve(m) for m in messages
    ]
    _publish_raw(broker, [(a.topic, a.payload, a.retain) for a in approved], tls=tls)


def _publish_raw(broker: Any, items: Sequence[Tuple[str, bytes, bool]], tls: Optional[ssl.SSLContext] = None) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    if tls is not None:
        client.tls_set_context(tls)
    client.connect(broker.host, broker.port, keepalive=30)
    client.loop_start()
    try:
        for topic, payload, retain in items:  # one at a time: the broker keeps per-client order, the test wants it
            info = client.publish(topic, payload, qos=1, retain=retain)
            info.wait_for_publish(timeout=10)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def _notice(dev: str, operator: str) -> Tuple[Notice, bytes, str]:
    """The notice of a device set up from the example site file, its approved retained payload and its hash."""
    cfg = load_config(REPO / "examples" / "site.yaml", {"device_id": dev, "transparency": {"operator_name": operator}})
    built = build_notice(cfg)
    policy = EgressPolicy(topic_prefix=PREFIX, device_id=dev, max_payload_bytes=16384)
    approved = policy.approve_document(RetainedDocument("notice", notice_payload(built)))
    assert approved.topic == f"{PREFIX}/{dev}/notice" and approved.retain
    return built, approved.payload, notice_hash(built)


class MonitorProcess:
    """``python -m appliance monitor --json`` in its own process; its JSON lines collected by a thread."""

    def __init__(self, *args: str, memory_limit_bytes: Optional[int] = None) -> None:
        def limit_memory() -> None:
            if memory_limit_bytes is not None:  # as a unit's MemoryMax would: fail, never swap the host
                resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appliance", "monitor", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=str(REPO),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=limit_memory,
        )
        self.lines: queue.Queue[Dict[str, Any]] = queue.Queue()
        self.latest: Dict[str, Dict[str, Any]] = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def wait_for(self, predicate: Callable[[Dict[str, Dict[str, Any]]], bool], timeout_s: float = 20.0) -> None:
        """Until the latest line of each device satisfies ``predicate`` (lines stream in per update)."""
        deadline = datetime.now() + timedelta(seconds=timeout_s)
        while not predicate(self.latest):
            remaining = (deadline - datetime.now()).total_seconds()
            if remaining <= 0 or self.proc.poll() is not None:
                raise AssertionError(f"timed out (rc={self.proc.poll()}); latest lines: {self.latest}")
            try:
                line = self.lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            self.latest[line["device_id"]] = line

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=20)

    def log_lines(self) -> List[str]:
        """What it logged on stderr (after :meth:`stop`)."""
        assert self.proc.stderr is not None and self.proc.poll() is not None
        return self.proc.stderr.read().splitlines()


@pytest.fixture
def monitors() -> Any:
    made: List[MonitorProcess] = []

    def factory(*args: str, memory_limit_bytes: Optional[int] = None) -> MonitorProcess:
        m = MonitorProcess(*args, memory_limit_bytes=memory_limit_bytes)
        made.append(m)
        return m

    yield factory
    for m in made:
        if m.proc.poll() is None:
            m.proc.kill()
        m.proc.wait()


@pytest.mark.mqtt
def test_monitor_json_shows_two_devices_with_a_gap_a_late_delivery_an_anomaly_and_one_offline(
    mosquitto: Any, monitors: Any
) -> None:
    # Already on the broker before the monitor starts: the devices' retained statuses.
    _publish(mosquitto, [_status("cam-a", 2, 10), _status("cam-b", 1, 1), _status("cam-b", 1, 2, offline=True)])
    monitor = monitors("--broker", mosquitto.url, "--prefix", PREFIX, "--json")
    monitor.wait_for(lambda d: d.get("cam-a", {}).get("online") is True and d.get("cam-b", {}).get("online") is False)

    raised = AnomalyMessage(
        type="overcrowding", event_id="c" * 32, zone="entrance", state="raised", value=14.0, threshold=10.0, since=T0
    )
    health = HealthMessage(state="ok", fps=4.8, camera=CameraHealth(state="ok"), uptime_s=120.0)
    _publish(
        mosquitto,
        [
            _counts("cam-a", 2, 12, total=7, entrance=3),  # 11 is cam-a's reserved death seq: no gap
            _counts("cam-a", 2, 15, total=9, entrance=5),  # 13 and 14 skipped: a gap
            raised.stamp(device_id="cam-a", boot_id=2, seq=16),
            health.stamp(device_id="cam-a", boot_id=2, seq=17),
            _counts("cam-a", 2, 13, total=1, entrance=1),  # arrives late, fills half the gap
        ],
    )
    monitor.wait_for(lambda d: d["cam-a"]["seq"]["late"] == 1)
    a, b = monitor.latest["cam-a"], monitor.latest["cam-b"]
    assert a["online"] is True and a["boot_id"] == 2 and a["board"] == "rpi5"
    assert a["seq"] == {
        "highest": 17, "gaps": 1, "missing": 1, "late": 1, "duplicates": 0, "reconnects": 0, "resets": 0
    }  # fmt: skip
    # The late window does not replace the newer one on display.
    assert (a["total"], a["zones"]) == (9, {"entrance": 5})
    assert (a["health"], a["fps"]) == ("ok", 4.8)
    [anomaly] = a["anomalies"]
    assert (anomaly["type"], anomaly["zone"], anomaly["severity"]) == ("overcrowding", "entrance", "warning")
    assert anomaly["raised_for_s"] >= 0
    assert b["online"] is False and b["total"] is None and b["anomalies"] == []

    # cam-a's flag clears, and cam-a redelivers seq 16 (a lost PUBACK): a duplicate, not a new event.
    cleared = AnomalyMessage(
        type="overcrowding", event_id="c" * 32, zone="entrance", state="cleared", value=6.0, since=T0
    )
    redelivered = raised.stamp(device_id="cam-a", boot_id=2, seq=16)
    _publish(mosquitto, [redelivered, cleared.stamp(device_id="cam-a", boot_id=2, seq=18)])
    monitor.wait_for(lambda d: d["cam-a"]["seq"]["highest"] == 18)
    assert monitor.latest["cam-a"]["anomalies"] == []
    assert monitor.latest["cam-a"]["seq"]["duplicates"] == 1
    assert monitor.stop() == 0


@pytest.mark.mqtt
def test_monitor_shows_the_notice_ignores_the_selftest_probe_and_discovery_and_flags_an_unknown_topic(
    mosquitto: Any, monitors: Any
) -> None:
    _, payload, digest = _notice("cam-n", "City of Example")
    _publish(mosquitto, [_status("cam-n", 1, 1, notice=digest)])
    monitor = monitors("--broker", mosquitto.url, "--prefix", PREFIX, "--json")
    monitor.wait_for(lambda d: d.get("cam-n", {}).get("online") is True)

    # What else a device puts under the prefix: the probe of `appliance selftest` (the real one),
    # and Home Assistant configs when home_assistant.discovery_prefix is the topic prefix too.
    assert "PUBACK for a test publish on testfleet/cam-n/selftest" in check_broker(
        MqttConfig(url=mosquitto.url, topic_prefix=PREFIX), "cam-n"
    )
    ha = HomeAssistantConfig(enabled=True, discovery_prefix=PREFIX)
    configs = discovery_messages("cam-n", PREFIX, [], [], ha)
    assert configs and all(m.topic.split("/")[1] in ("sensor", "binary_sensor") for m in configs)
    unknown = (f"{PREFIX}/cam-n/bogus", b"{}", False)
    _publish_raw(mosquitto, [*configs, unknown, (f"{PREFIX}/cam-n/notice", payload, True)])
    # Everything above came before the notice, so it has been read once the notice shows.
    monitor.wait_for(lambda d: (d["cam-n"].get("notice") or {}).get("sha256") == digest)
    assert monitor.latest["cam-n"]["notice"] == {
        "sha256": digest, "operator": "City of Example", "purpose": "crowd_safety", "matches_birth": True
    }  # fmt: skip

    # The operator changes the config: the new boot's birth names the new notice, which follows it.
    _, new_payload, new_digest = _notice("cam-n", "City of Example, Parks")
    _publish(mosquitto, [_status("cam-n", 2, 3, notice=new_digest)])
    _publish_raw(mosquitto, [(f"{PREFIX}/cam-n/notice", new_payload, True)])
    monitor.wait_for(lambda d: d["cam-n"]["notice"]["sha256"] == new_digest)
    assert monitor.latest["cam-n"]["notice"]["matches_birth"] is True
    assert monitor.stop() == 0

    logged = monitor.log_lines()
    ignored = [line for line in logged if "ignored" in line]
    assert len(ignored) == 1 and "testfleet/cam-n/bogus: ignored: not a crowd-appliance topic" in ignored[0]
    [changed] = [line for line in logged if "notice changed" in line]
    assert f"from {digest[:12]} to {new_digest[:12]}" in changed and "'City of Example, Parks'" in changed


@pytest.mark.mqtt
def test_monitor_reads_the_fleet_as_the_control_room_user_over_mutual_tls(
    tls_mosquitto: Any, pki: Any, monitors: Any
) -> None:
    # The shipped broker example: device-a may only write crowdmon/device-a/#; control-room only reads.
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    ctx.load_cert_chain(str(pki.clients["device-a"]["cert"]), str(pki.clients["device-a"]["key"]))
    _publish(tls_mosquitto, [_status("device-a", 1, 1)], prefix="crowdmon", tls=ctx)
    room = pki.clients["control-room"]
    monitor = monitors(
        "--broker", tls_mosquitto.url, "--json", "--ca-file", str(pki.ca),
        "--cert-file", str(room["cert"]), "--key-file", str(room["key"]),
    )  # fmt: skip
    monitor.wait_for(lambda d: d.get("device-a", {}).get("online") is True)
    assert monitor.stop() == 0


@pytest.mark.mqtt
def test_a_forged_seq_of_10_to_the_12_is_one_gap_in_bounded_memory_and_sigterm_still_stops_the_monitor(
    mosquitto: Any, monitors: Any
) -> None:
    # 1.5 GiB of address space: the interpreter, paho and rich use a fraction of it; a list of the
    # skipped seqs would need terabytes.
    monitor = monitors("--broker", mosquitto.url, "--prefix", PREFIX, "--json", memory_limit_bytes=1536 << 20)
    _publish(mosquitto, [_status("cam-f", 1, 1)])  # retained: seen once the monitor has subscribed
    monitor.wait_for(lambda d: d.get("cam-f", {}).get("online") is True)
    _publish(mosquitto, [_counts("cam-f", 1, 3, total=1, entrance=1)])
    monitor.wait_for(lambda d: d["cam-f"]["seq"]["highest"] == 3)
    forged = CountsMessage(
        window_start=T0, window_end=T0 + timedelta(seconds=10), frames_analyzed=1
    ).stamp(device_id="cam-f", boot_id=1, seq=10**12)
    _publish(mosquitto, [forged])
    monitor.wait_for(lambda d: d["cam-f"]["seq"]["highest"] == 10**12)
    assert monitor.latest["cam-f"]["seq"]["gaps"] == 1
    assert monitor.latest["cam-f"]["seq"]["missing"] == 10**12 - 4  # 4 .. 10^12 - 1
    monitor.proc.send_signal(signal.SIGTERM)
    assert monitor.proc.wait(timeout=30) == 0


@pytest.mark.parametrize(
    "prefix",
    ["#", "+", "crowdmon/#", "crowd+mon", "", "x" * 70_000, "crowd mon"],
    ids=["hash", "plus", "trailing-hash", "inner-plus", "empty", "70000-chars", "space"],
)
def test_monitor_refuses_a_prefix_that_is_not_a_device_topic_prefix_with_one_line_and_exit_2(prefix: str) -> None:
    # No broker listens there: the prefix is refused before any connection is tried.
    url = f"mqtt://127.0.0.1:{free_port()}"
    proc = subprocess.run(
        [sys.executable, "-m", "appliance", "monitor", "--broker", url, "--prefix", prefix, "--json"],
        capture_output=True, text=True, cwd=str(REPO), timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "--prefix" in proc.stderr
    assert len(proc.stderr) < 300  # a huge prefix is not echoed back


def test_a_prefix_with_a_nul_is_refused_before_it_reaches_the_client() -> None:
    # argv cannot carry a NUL; the Python API can.
    with pytest.raises(InputError, match="--prefix"):
        opts = MonitorOptions(broker_url=f"mqtt://127.0.0.1:{free_port()}", prefix="crowd\0mon")
        run_monitor(opts, threading.Event())


def test_monitor_refuses_a_bad_url_with_one_line_and_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "appliance", "monitor", "--broker", "http://example.org"],
        capture_output=True, text=True, cwd=str(REPO), timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "mqtt:// or mqtts://" in proc.stderr


def test_monitor_without_a_broker_fails_with_one_line_and_exit_1() -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"
    proc = subprocess.run(
        [sys.executable, "-m", "appliance", "monitor", "--broker", url, "--json"],
        capture_output=True, text=True, cwd=str(REPO), timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "cannot connect" in proc.stderr


def test_table_fits_a_small_terminal_and_names_what_matters() -> None:
    fleet = FleetState()
    now = T0 + timedelta(minutes=2)
    for m in (_status("cam-a", 2, 10), _counts("cam-a", 2, 12, total=7, entrance=3), _counts("cam-a", 2, 15, 9, 5)):
        fleet.observe(m, retained=False, received_at=now)
    fleet.observe(_status("cam-b", 1, 2, offline=True), retained=True, received_at=now)
    console = Console(width=80, record=True, color_system=None)
    console.print(fleet_table(fleet.snapshots(), now))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    for expected in ("cam-a", "online", "entrance=5", "miss 2", "cam-b", "OFFLINE"):
        assert expected in text


def _anomaly(dev: str, boot: int, seq: int, kind: str, zone: Optional[str], severity: str) -> Message:
    return AnomalyMessage(
        type=kind, event_id=f"{seq:032x}", zone=zone, state="raised", value=42.0, threshold=30.0,  # type: ignore[arg-type]
        since=T0 + timedelta(seconds=30), severity=severity,  # type: ignore[arg-type]
    ).stamp(device_id=dev, boot_id=boot, seq=seq, sent_at=T0)


def _health(dev: str, boot: int, seq: int, state: str) -> Message:
    return HealthMessage(state=state, fps=4.2, camera=CameraHealth(state="ok"), uptime_s=100).stamp(  # type: ignore[arg-type]
        device_id=dev, boot_id=boot, seq=seq
    )


def test_at_80_columns_every_column_shows_and_an_offline_row_says_its_figures_are_stale() -> None:
    fleet = FleetState()
    now = T0 + timedelta(minutes=12)
    live = now - timedelta(seconds=4)
    for m in (
        _status("campus-square-01", 3, 100), _counts("campus-square-01", 3, 102, total=38, entrance=32),
        _health("campus-square-01", 3, 103, "degraded"),
        _anomaly("campus-square-01", 3, 104, "overcrowding", "entrance", "critical"),
        _anomaly("campus-square-01", 3, 105, "counterflow", "entrance", "warning"),
        _counts("campus-square-01", 3, 109, 38, 32),
    ):  # fmt: skip
        fleet.observe(m, retained=False, received_at=live)
    gone = now - timedelta(minutes=8)
    for m in (_status("station-hall-02", 12, 5000), _counts("station-hall-02", 12, 5002, 120, 80),
              _anomaly("station-hall-02", 12, 5003, "camera_tamper", None, "critical")):  # fmt: skip
        fleet.observe(m, retained=False, received_at=gone - timedelta(minutes=1))
    fleet.observe(_status("station-hall-02", 12, 5001, offline=True), retained=False, received_at=gone)

    console = Console(width=80, record=True, color_system=None)  # no colour: the words must say it all
    console.print(fleet_table(fleet.snapshots(), now))
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[0].split() == ["device", "status", "health", "people", "anomalies", "seq"]
    for expected in ("boot 3, 4s ago", "degraded", "4.2fps", "entrance=32", "CRIT crowd@entrance 11m",
                     "WARN cflow@entrance 11m", "miss 3", "gaps 1", "crowd=overcrowding"):  # fmt: skip
        assert expected in text, expected
    offline = text[text.index("station-hall-02") :]
    assert "OFFLINE" in offline and "stale 8m" in offline, "the offline row's figures are marked stale, with their age"
    # Its flag's timer stopped at its last message (T0 + 4 min; raised at T0 + 30 s), not 11m and counting.
    assert "CRIT tamper 3m" in offline


def test_table_shows_each_notice_hash_as_on_the_sign_and_who_runs_the_devices_in_the_caption() -> None:
    fleet = FleetState()
    now = T0 + timedelta(minutes=2)
    notice, _, digest = _notice("cam-a", "City of Example")
    for m in (_status("cam-a", 2, 10, notice=digest), _counts("cam-a", 2, 12, total=7, entrance=3)):
        fleet.observe(m, retained=False, received_at=now)
    fleet.observe_notice(notice, sha256=digest, received_at=now)
    fleet.observe(_status("cam-b", 1, 2, offline=True, notice="0" * 64), retained=True, received_at=now)
    fleet.observe_notice(notice.model_copy(update={"device_id": "cam-b"}), sha256=digest, received_at=now)
    console = Console(width=80, record=True, color_system=None)
    console.print(fleet_table(fleet.snapshots(), now, f"mqtt://127.0.0.1:1883 {PREFIX}/+/#"))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert digest[:12] in text, "cam-a: the notice hash, 12 digits as the printed sign shows it"
    assert "notice≠birth" in text, "cam-b's birth names another notice than the one retained"
    assert "City of Example (crowd_safety): 2 devices" in " ".join(text.split())


def test_table_caption_shows_an_operator_name_as_written() -> None:
    fleet = FleetState()
    notice, _, digest = _notice("cam-a", "Parks [north] & Co")
    fleet.observe_notice(notice, sha256=digest, received_at=T0)
    console = Console(width=80, record=True, color_system=None)
    console.print(fleet_table(fleet.snapshots(), T0))
    assert "Parks [north] & Co (crowd_safety): 1 device" in " ".join(console.export_text().split())


def test_with_devices_named_the_monitor_subscribes_to_their_exact_topics_only() -> None:
    from appliance.monitor.runner import MonitorOptions, subscriptions

    assert subscriptions(MonitorOptions(broker_url="mqtt://b")) == ["crowdmon/+/#"]
    topics = subscriptions(MonitorOptions(broker_url="mqtt://b", devices="cam-a, cam-b"))
    assert "crowdmon/cam-a/anomaly_state" in topics and "crowdmon/cam-b/notice" in topics
    assert len(topics) == 2 * 6 and not any("+" in t or "#" in t for t in topics)


def test_monitor_refuses_a_device_id_that_is_not_one_with_one_line_and_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "appliance", "monitor", "--broker", f"mqtt://127.0.0.1:{free_port()}",
         "--device", "a/#"],
        capture_output=True, text=True, timeout=60, cwd=str(REPO),
    )  # fmt: skip
    assert proc.returncode == 2 and "--device" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
