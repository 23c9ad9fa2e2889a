"""Stamping and sealing: a content message gets its envelope and becomes stored bytes for one seq.

Sealing is stamping (``device_id``, ``boot_id``, ``seq``, ``sent_at``, ``clock_synced``) followed by
the egress check, so nothing reaches the outbox or stdout that the policy has not approved. An
egress refusal raises :class:`EgressError` before any seq is consumed.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

from appliance.publish.clock import Clock
from appliance.publish.egress import ApprovedPayload, EgressPolicy
from appliance.publish.messages import Message
from appliance.publish.outbox.rows import Sealed


class Stamper:
    def __init__(self, policy: EgressPolicy, device_id: str, clock: Optional[Clock] = None) -> None:
        self.policy = policy
        self.device_id = device_id
        self.clock = clock or Clock()

    def stamp(self, msg: Message, *, boot_id: int, seq: int, sent_at: Optional[datetime] = None) -> Message:
        # The wall clock labels the message; the flag says whether that label is real time.
        synced = self.clock.synced()
        if sent_at is None:
            sent_at = datetime.fromtimestamp(self.clock.wall(), timezone.utc)
        return msg.stamp(device_id=self.device_id, boot_id=boot_id, seq=seq, sent_at=sent_at, clock_synced=synced)

    def approve(self, msg: Message, *, boot_id: int, seq: int, sent_at: Optional[datetime] = None) -> ApprovedPayload:
        return self.policy.approve(self.stamp(msg, boot_id=boot_id, seq=seq, sent_at=sent_at))

    def seal(self, msg: Message, *, boot_id: int, seq: int) -> Sealed:
        approved = self.approve(msg, boot_id=boot_id, seq=seq)
        return Sealed(seq, approved.kind, approved.topic, approved.payload)
