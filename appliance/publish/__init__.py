"""Publish stage: typed messages -> egress policy -> durable outbox -> MQTT (or stdout).

Only the message classes exported here can leave the device. See ``publisher.py`` for the exact
calls the pipeline makes, and ``docs/control-room.md`` for what a subscriber receives.
"""

from __future__ import annotations

from appliance.publish.egress import ApprovedPayload, EgressError, EgressPolicy
from appliance.publish.messages import (
    AnomalyMessage,
    CameraHealth,
    CountsMessage,
    CountStats,
    FrameCounters,
    HealthMessage,
    Heatmap,
    LatencyStats,
    LineCounts,
    Message,
    ModelInfo,
    OutboxHealth,
    StatusMessage,
    ZoneStats,
    export_schemas,
    utcnow,
)
from appliance.publish.mqtt_client import BrokerRejected, BrokerUnreachable, check_broker
from appliance.publish.outbox import Outbox, OutboxStats
from appliance.publish.publisher import (
    MqttPublisher,
    Publisher,
    PublisherStats,
    StdoutPublisher,
    make_birth,
    make_publisher,
)

__all__ = [
    "AnomalyMessage",
    "ApprovedPayload",
    "BrokerRejected",
    "BrokerUnreachable",
    "CameraHealth",
    "CountStats",
    "CountsMessage",
    "EgressError",
    "EgressPolicy",
    "FrameCounters",
    "HealthMessage",
    "Heatmap",
    "LatencyStats",
    "LineCounts",
    "Message",
    "ModelInfo",
    "MqttPublisher",
    "Outbox",
    "OutboxHealth",
    "OutboxStats",
    "Publisher",
    "PublisherStats",
    "StatusMessage",
    "StdoutPublisher",
    "ZoneStats",
    "check_broker",
    "export_schemas",
    "make_birth",
    "make_publisher",
    "utcnow",
]
