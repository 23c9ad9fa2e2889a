"""``appliance monitor`` keeps each device's last audit head: a head that goes backwards, or a new
chain that does not start with a reset the device recorded, is flagged and stays flagged."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

from appliance.monitor.state import FleetState
from appliance.monitor.view import json_line
from appliance.publish import AuditHead, HealthMessage, LostChain
from appliance.publish.messages import CameraHealth, Message

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
H1, H2, H3 = "1" * 64, "2" * 64, "3" * 64


def health(boot: int, seq: int, length: int, sha: str, reset: Optional[LostChain] = None) -> Message:
    head = AuditHead(length=length, sha256=sha, reset=reset)
    return HealthMessage(
        state="ok", fps=5.0, camera=CameraHealth(state="ok"), uptime_s=1.0, audit=head
    ).stamp(device_id="cam-a", boot_id=boot, seq=seq, sent_at=T0)


def flags(*messages: Message) -> list:
    fleet = FleetState()
    for m in messages:
        fleet.observe(m, retained=False, received_at=T0)
    seen = fleet.snapshot("cam-a").audit
    assert seen is not None
    return seen.flags


def test_a_growing_head_is_quiet() -> None:
    assert flags(health(1, 3, 10, H1), health(1, 4, 12, H2), health(2, 9, 14, H3)) == []


def test_a_head_that_goes_backwards_without_a_recorded_reset_is_flagged() -> None:
    assert flags(health(1, 3, 500, H1), health(1, 4, 1, H2)) == [
        "audit head went backwards from 500 to 1 with no recorded reset"
    ]


def test_the_same_length_with_another_hash_is_a_rewrite() -> None:
    rewritten = flags(health(1, 3, 10, H1), health(1, 4, 10, H2))
    assert rewritten == ["audit head at 10 changed hash (the log was rewritten)"]


def test_a_new_chain_that_starts_with_the_devices_reset_is_named_as_a_reset() -> None:
    found = flags(health(1, 3, 500, H1), health(1, 4, 1, H2, reset=LostChain(length=500, sha256=H1)))
    assert found == ["audit log reset by the device: chain of 500 entries lost, new chain at 1"]
    short = flags(health(1, 3, 500, H1), health(1, 4, 1, H2, reset=LostChain(length=20, sha256=H3)))
    assert "shorter than the 500 entries published before" in short[0]


def test_a_late_older_message_is_judged_as_older_and_the_head_survives_an_outbox_loss() -> None:
    assert flags(health(1, 5, 12, H2), health(1, 4, 10, H1)) == []  # late delivery of an older health
    assert flags(health(1, 5, 12, H2), health(1, 4, 14, H1)) == [
        "audit head went backwards from 14 to 12 with no recorded reset"
    ]
    # The outbox lost (boot_id and seq restart): the audit head is still remembered.
    assert flags(health(5, 40, 300, H1), health(1, 1, 2, H2)) == [
        "audit head went backwards from 300 to 2 with no recorded reset"
    ]


def test_the_json_line_carries_the_audit_head_and_its_flags() -> None:
    fleet = FleetState()
    for m in (health(1, 3, 500, H1), health(1, 4, 1, H2)):
        fleet.observe(m, retained=False, received_at=T0)
    import json

    audit = json.loads(json_line(fleet.snapshot("cam-a"), T0))["audit"]
    assert audit["length"] == 1 and audit["flags"] and audit["signed"] is False
