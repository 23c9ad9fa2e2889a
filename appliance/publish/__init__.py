"""Publish stage: typed messages -> egress policy -> durable outbox -> MQTT (or stdout).

Only the message classes exported here can leave the device. See ``publisher.py`` for the exact
calls the pipeline makes, and ``docs/control-room.md`` for what a subscriber receives.
"""

from __future__ import annotations

from appliance.errors import AlreadyRunning, BrokerError, DeliveryFailed
from appliance.publish.backoff import FullJitterBackoff
from appliance.publish.client import BrokerRejected, BrokerUnreachable, check_broker
from appliance.publish.egress import ApprovedPayload, EgressError, EgressPolicy, RetainedDocument
from appliance.publish.lifecycle import make_birth
from appliance.publish.messages import (
    AnomalyMessage,
    AuditHead,
    CameraHealth,
    CountsMessage,
    CountStats,
    FrameCounters,
    HealthMessage,
    Heatmap,
    LatencyStats,
    LineCounts,
    LinkHealth,
    LostChain,
    Message,
    ModelInfo,
    OutboxHealth,
    StatusMessage,
    ZoneStats,
    export_schemas,
    utcnow,
)
from appliance.publish.outbox.rows import OutboxStats
from appliance.publish.outbox.store import Outbox, outbox_path
from appliance.publish.publisher import MqttPublisher, Publisher, StdoutPublisher, make_publisher
from appliance.publish.stats import PublisherStats

__all__ = [
    "AlreadyRunning",
    "AnomalyMessage",
    "ApprovedPayload",
    "AuditHead",
    "BrokerError",
    "BrokerRejected",
    "BrokerUnreachable",
    "CameraHealth",
    "CountStats",
    "CountsMessage",
    "DeliveryFailed",
    "EgressError",
    "EgressPolicy",
    "FrameCounters",
    "FullJitterBackoff",
    "HealthMessage",
    "Heatmap",
    "LatencyStats",
    "LineCounts",
    "LinkHealth",
    "LostChain",
    "Message",
    "ModelInfo",
    "MqttPublisher",
    "Outbox",
    "OutboxHealth",
    "OutboxStats",
    "Publisher",
    "PublisherStats",
    "RetainedDocument",
    "StatusMessage",
    "StdoutPublisher",
    "ZoneStats",
    "check_broker",
    "export_schemas",
    "make_birth",
    "make_publisher",
    "outbox_path",
    "utcnow",
]
