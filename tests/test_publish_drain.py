"""Draining a backlog, on a real Mosquitto and a real SQLite file: acknowledged messages are deleted
in batches, each exactly once; a backlog larger than what is read or handed to paho at once arrives
complete and in order; a crash between the broker's PUBACK and the delete only sends again."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import List

import pytest
from support.brokers import Broker
from support.publishing import (
    DEVICE,
    LockHolder,
    cfg_for,
    counts,
    first_occurrences,
    record_deletes,
    seqs,
    start_driver,
    started,
)
from support.waiting import wait_until

from appliance.publish import Outbox
from appliance.publish.delivery import WINDOW

pytestmark = pytest.mark.mqtt


def stored_seqs(path: Path, kind: str = "counts") -> List[int]:
    box = Outbox(path, max_bytes=1 << 30, max_age_s=1e9)
    try:
        return [row.seq for row in box.pending(limit=100_000) if row.kind == kind]
    finally:
        box.close()


@pytest.mark.slow
def test_a_backlog_drains_in_order_and_each_acked_message_is_deleted_once_in_batches(
    mosquitto: Broker, tmp_path: Path, subscribe, publishers, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 2 * WINDOW + 37  # more than one page read and one hand-off window
    sub = subscribe(mosquitto, f"crowdmon/{DEVICE}/#", client_id="control-room", persistent=True)
    mosquitto.stop()
    pub = started(cfg_for(mosquitto.url, tmp_path / "o.db"), publishers)
    for i in range(n):
        pub.publish(counts(i))
    queued = [row.seq for row in pub.outbox.pending(limit=100_000)]  # the birth, the anomaly state, the counts
    assert len(queued) == n + 2

    deletes = record_deletes(pub, monkeypatch)
    mosquitto.start()

    got = sub.wait_for(lambda ms: len(set(seqs(ms))) == n, timeout_s=60)
    data = queued[2:]  # after the birth and the anomaly state
    assert first_occurrences(seqs(got)) == data, "every seq, in order"
    wait_until(lambda: pub.stats().pending == 0, timeout_s=30)
    deleted = Counter(seq for batch in deletes for seq in batch)
    assert sorted(deleted) == queued, "every queued message was deleted after its PUBACK"
    assert max(deleted.values()) == 1, "and none twice"
    assert len(deletes) < n / 10, "in batches, not one transaction per message"
    assert pub.stats().pending_bytes == 0


@pytest.mark.slow
def test_a_crash_after_the_puback_and_before_the_delete_sends_again_and_loses_nothing(
    mosquitto: Broker, tmp_path: Path, subscribe
) -> None:
    """The state a power cut can leave (the delete after PUBACK is not fsync'd), made without
    racing the clock: another process holds the file's write lock while the broker acknowledges
    everything, so no delete can be committed, then the publisher is SIGKILLed."""
    outbox = tmp_path / "outbox.sqlite3"
    sub = subscribe(mosquitto, f"crowdmon/{DEVICE}/#", client_id="control-room", persistent=True)
    base = ["--broker", mosquitto.url, "--device-id", DEVICE, "--outbox", str(outbox)]
    mosquitto.stop()
    filler = start_driver(*base, "--count", "30", "--period", "0")
    _, err = filler.communicate(timeout=60)
    assert filler.returncode == 0, err
    data = stored_seqs(outbox)
    assert len(data) == 30

    crashed = start_driver(*base, "--drain")
    assert crashed.stdout is not None
    assert crashed.stdout.readline().startswith("ready")
    lock = LockHolder(outbox)
    try:
        mosquitto.start()
        sub.wait_for(lambda ms: set(seqs(ms)) >= set(data), timeout_s=60)  # every PUBACK sent
        crashed.send_signal(signal.SIGKILL)
        crashed.communicate(timeout=20)
    finally:
        lock.release()
    assert stored_seqs(outbox) == data, "acknowledged, but still stored: nothing was deleted"

    final = start_driver(*base, "--drain")
    _, err = final.communicate(timeout=60)
    assert final.returncode == 0, err
    got = sub.wait_for(lambda ms: all(n >= 2 for n in Counter(seqs(ms)).values()), timeout_s=60)
    received = seqs(got)
    assert sorted(set(received)) == data, "no seq lost and none invented"
    assert first_occurrences(received) == data, "in seq order"
    assert all(n >= 2 for n in Counter(received).values()), "sent again after the crash"
    assert stored_seqs(outbox) == []
