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
from typing import Dict, Optional

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
    """The newest anomaly state this delivery loop has sent. Delivery thread only.

    Rows go out in seq order, except that a reconnect resends what was not acknowledged: an older
    state resent after a newer one must not replace the retained value, so it goes out unretained.
    """

    def __init__(self) -> None:
        self.current: Optional[ApprovedPayload] = None

    def retain(self, approved: ApprovedPayload) -> bool:
        """Whether to send this state row retained; remembers it when it is the newest."""
        if self.current is not None and approved.seq < self.current.seq:
            return False
        self.current = approved
        return True
