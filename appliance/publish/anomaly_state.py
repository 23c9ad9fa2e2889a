"""The device's one anomaly state: the flags raised and not yet cleared in this boot.

The publisher feeds it every ``anomalies`` message it publishes and publishes the
:class:`AnomalyStateMessage` it returns right after (retained), so the broker always holds what is
active now. :meth:`ActiveAnomalies.reset` is the state of a new boot (nothing raised): published
right after the birth, it replaces the old boot's retained flags for every late subscriber.

On the delivery side :class:`LatestState` decides which state rows are sent retained and which
one is re-published at every connect (a clustered broker keeps retained messages per node, and a
broker restarted without persistence keeps none).
"""

from __future__ import annotations

import threading
from typing import Dict, List, Optional

from appliance.publish.egress import ApprovedPayload
from appliance.publish.messages import MAX_ACTIVE_LISTED, ActiveAnomaly, AnomalyMessage, AnomalyStateMessage


class ActiveAnomalies:
    """Raises and clears in, the state to publish out. Thread-safe; :attr:`lock` is held by the
    publisher across publishing an event and its state, so states enter the outbox in order."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._active: Dict[str, ActiveAnomaly] = {}  # event_id -> its raise, in raise order

    def reset(self) -> AnomalyStateMessage:
        with self.lock:
            self._active.clear()
            return self.state()

    def apply(self, event: AnomalyMessage) -> AnomalyStateMessage:
        with self.lock:
            if event.state == "raised":
                # One flag per (type, zone): a raise that was never cleared is replaced, not doubled.
                for event_id, flag in list(self._active.items()):
                    if (flag.type, flag.zone) == (event.type, event.zone):
                        del self._active[event_id]
                self._active[event.event_id] = ActiveAnomaly(
                    type=event.type,
                    event_id=event.event_id,
                    zone=event.zone,
                    since=event.since,
                    severity=event.severity,
                    value=event.value,
                    threshold=event.threshold,
                    baseline=event.baseline,
                    reason=event.reason,
                )
            else:
                self._active.pop(event.event_id, None)
            return self.state()

    def state(self) -> AnomalyStateMessage:
        with self.lock:
            flags = list(self._active.values())
        return AnomalyStateMessage(active=flags[:MAX_ACTIVE_LISTED], not_listed=max(0, len(flags) - MAX_ACTIVE_LISTED))


class LatestState:
    """Which anomaly state rows go out retained, and which one is re-published at every connect.
    Delivery thread only.

    Rows go out in seq order, except that a reconnect resends what was not acknowledged: an older
    state resent after a newer one went out must not replace the retained value, so it goes out
    unretained. Only an acknowledged state is re-published at a connect, ahead of the backlog: every
    row before it has been acknowledged too, so subscribers still receive states in seq order.
    """

    def __init__(self) -> None:
        self.current: Optional[ApprovedPayload] = None  # the newest state the broker acknowledged
        self._newest_sent = 0
        self._unacked: Dict[int, ApprovedPayload] = {}

    def republish(self) -> List[ApprovedPayload]:
        return [] if self.current is None else [self.current]

    def retain(self, approved: ApprovedPayload) -> bool:
        """Whether to send this row retained as the anomaly state: the newest state sent so far.
        False for every other kind (their own rule applies)."""
        if approved.kind != AnomalyStateMessage.kind:
            return False
        self._unacked[approved.seq] = approved
        if approved.seq < self._newest_sent:
            return False
        self._newest_sent = approved.seq
        return True

    def acked(self, seq: int) -> None:
        approved = self._unacked.pop(seq, None)
        if approved is None:
            return
        for older in [s for s in self._unacked if s < seq]:
            del self._unacked[older]
        if self.current is None or seq > self.current.seq:
            self.current = approved
