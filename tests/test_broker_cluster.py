"""A real three-node RabbitMQ cluster loses a node under a fleet: nothing is lost, nothing reordered.

Twenty simulated devices (the appliance's own publish stack, scripts/simulate_fleet.py) are each
given the three nodes' URLs, rotated so a third start on each node; the node serving a third of
them is killed with SIGKILL mid-run and restarted. The control room's persistent session (a quorum
queue) on another node must receive every counts message, in seq order per device, and the node
each device ends up on must hold its retained birth, notice and anomaly state (RabbitMQ keeps
retained messages per node: the device re-publishes them at every connect). The scenario waits on
conditions with generous timeouts; no timing is asserted (the figures are in docs/control-room.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from support.repo import REPO, load_script

nodes = load_script("rabbitmq_nodes")
MISSING = nodes.rabbitmq_missing()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(MISSING is not None, reason=str(MISSING))]


def test_twenty_devices_ride_through_the_loss_of_a_node_with_nothing_lost_in_seq_order(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "scripts"))  # fleet_cluster imports its sibling scripts by name
    try:
        cluster = load_script("fleet_cluster")
        fleet = sys.modules["simulate_fleet"]
        result = cluster.run_cluster_scenario(
            devices=20,
            nodes=3,
            kill_at_s=3.0,
            restart_after_s=3.0,
            run_after_s=3.0,
            via="list",
            policy=fleet.ReconnectPolicy(min_s=0.5, max_s=4.0),
            interval_s=0.5,
            workdir=tmp_path / "fleet",
            timeout_s=180.0,
        )
    finally:
        sys.path.remove(str(REPO / "scripts"))
    assert result.sent > 20 * 10 and result.lost == 0 and result.received == result.sent
    assert result.in_seq_order
    # The killed node served a third of the fleet (devices 0, 3, 6, ... list it first); all moved on.
    assert result.devices_on_killed_node == 7 and result.reconnected == 7
    assert result.current_node_holds_retained
    # No node holds every device's retained birth: a control room must not read one node's store as the fleet.
    assert all(seen.status_online < result.devices for seen in result.retained)
