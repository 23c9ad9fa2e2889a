"""Which broker of ``mqtt.url`` the device uses: one, or the nodes of one cluster in a list.

The link asks :class:`BrokerList` for the broker to connect to. It stays on one while it works;
when a connection attempt fails or an established connection is lost for a network reason
(:class:`BrokerUnreachable`), the next attempt goes to the next broker in the list, wrapping
around. The wait between attempts is the link's full-jitter backoff, so a fleet whose node died
spreads over the others instead of arriving at once. A refusal (bad credentials, a certificate the
broker does not accept, an ACL) does not move it: the same identity would be refused by every node
of the cluster, and hopping would hide the error; it is reported and retried on the same broker.
"""

from __future__ import annotations

from typing import List, Sequence

from appliance.config.broker_url import BrokerAddress


class BrokerList:
    """The configured brokers in order, and the one in use now. One thread (the link's)."""

    def __init__(self, addresses: Sequence[BrokerAddress]) -> None:
        if not addresses:
            raise ValueError("no broker address")
        self.addresses: List[BrokerAddress] = list(addresses)
        self._index = 0
        self.hops = 0  # moves to another broker since start

    @property
    def current(self) -> BrokerAddress:
        return self.addresses[self._index]

    def unreachable(self) -> None:
        """The current broker could not be reached or dropped us: the next attempt goes to the next."""
        if len(self.addresses) > 1:
            self._index = (self._index + 1) % len(self.addresses)
            self.hops += 1
