"""Building, starting and watching publishers in tests: configs, messages, the publisher the
composition root makes, the publisher in its own process, and reading what a broker delivered."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterable, List, Optional, Sequence, TextIO

import pytest

from appliance.capture import CaptureStats
from appliance.config import config_hash, load_config
from appliance.config.schema import ApplianceConfig
from appliance.health.monitor import HealthMonitor
from appliance.publish import (
    CountsMessage,
    CountStats,
    HealthMessage,
    ModelInfo,
    MqttPublisher,
    Publisher,
    StdoutPublisher,
    make_birth,
    make_publisher,
    utcnow,
)
from support.brokers import Broker, Pki, Received
from support.repo import REPO

SHA = "ab" * 32
DEVICE = "cam-07"


def make_cfg(broker_url: str, tmp_path: Path, **mqtt: object) -> ApplianceConfig:
    return load_config(
        overrides={
            "device_id": DEVICE,
            "mqtt": {"url": broker_url, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5, **mqtt},
            "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
        }
    )


def cfg_for(url: str, outbox: Path, **outbox_cfg: Any) -> ApplianceConfig:
    return load_config(
        overrides={
            "device_id": DEVICE,
            "mqtt": {"url": url, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
            "outbox": {"path": str(outbox), **outbox_cfg},
        }
    )


def tls_cfg(broker: Broker, tmp_path: Path, device: str, ca: Path, pki: Pki, cert_of: Optional[str] = None,
            **mqtt: object) -> ApplianceConfig:
    tls = {"ca_file": str(ca)}
    if cert_of is not None:
        tls.update(cert_file=str(pki.clients[cert_of]["cert"]), key_file=str(pki.clients[cert_of]["key"]))
    return load_config(
        overrides={
            "device_id": device,
            "mqtt": {"url": broker.url, "tls": tls, "reconnect_min_s": 0.2, "reconnect_max_s": 1, **mqtt},
            "outbox": {"path": str(tmp_path / f"{device}.sqlite3")},
        }
    )


def counts(i: int) -> CountsMessage:
    end = utcnow()
    return CountsMessage(
        window_start=end - timedelta(seconds=1),
        window_end=end,
        frames_analyzed=5,
        total=CountStats(min=0, mean=i % 5, max=4, last=i % 5),
    )


def health_of(pub: Publisher) -> HealthMessage:
    """A health message as the appliance builds one: the health monitor's, from ``pub``'s stats
    (camera fine, no frame dropped), so its state and its outbox and link sections are the real ones."""
    camera = CaptureStats(state="ok", reconnects=0, frames_read=0, frames_skipped=0)
    return HealthMonitor().message(camera, pub.stats())


def publisher_for(cfg: ApplianceConfig, models: Sequence[ModelInfo] = (), stream: Optional[TextIO] = None) -> Publisher:
    """What the composition root does: a birth for this config, then the publisher from its sections."""
    birth = make_birth(config_hash=config_hash(cfg), board=cfg.profile.name, models=models)
    return make_publisher(
        device_id=cfg.device_id, mqtt=cfg.mqtt, publish=cfg.publish, outbox=cfg.outbox, birth=birth, stream=stream
    )


def printing_publisher(cfg: ApplianceConfig, stream: TextIO) -> StdoutPublisher:
    """The publisher ``appliance run`` uses without a broker, printing to ``stream``."""
    birth = make_birth(config_hash=config_hash(cfg), board=cfg.profile.name, models=[])
    return StdoutPublisher(device_id=cfg.device_id, mqtt=cfg.mqtt, publish=cfg.publish, birth=birth, stream=stream)


def started(cfg: ApplianceConfig, made: List[MqttPublisher]) -> MqttPublisher:
    pub = publisher_for(cfg, [ModelInfo(name="ssdlite-person-int8", sha256=SHA)])
    assert isinstance(pub, MqttPublisher)
    made.append(pub)
    pub.start()
    return pub


DRIVER = REPO / "tests" / "publish_driver.py"


def start_driver(*args: str) -> subprocess.Popen:
    """The publisher in its own process, as the pipeline will run it (for kill -9 tests)."""
    return subprocess.Popen(
        [sys.executable, str(DRIVER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(REPO),
    )


class LockHolder:
    """Another process's write lock on the outbox file (a backup tool, a technician's sqlite3)."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(str(path), isolation_level=None, timeout=10)
        self.db.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self.db.execute("COMMIT")
        self.db.close()


def record_deletes(pub: MqttPublisher, monkeypatch: pytest.MonkeyPatch) -> List[List[int]]:
    """Every batch of seqs the outbox is asked to delete after PUBACKs, in order."""
    deletes: List[List[int]] = []
    real_ack = pub.outbox.ack

    def recording_ack(acked: Iterable[int]) -> None:
        acked = list(acked)
        deletes.append(acked)
        real_ack(acked)

    monkeypatch.setattr(pub.outbox, "ack", recording_ack)
    return deletes


def seqs(msgs: List[Received], kind: str = "counts") -> List[int]:
    return [m.payload["seq"] for m in msgs if m.topic.endswith("/" + kind)]


def first_occurrences(values: List[int]) -> List[int]:
    seen, out = set(), []
    for v in values:
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out
