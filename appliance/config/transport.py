"""Config sections of the publish side: the MQTT link, publishing, the outbox, Home Assistant discovery."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Literal, Optional, Union

from pydantic import Field, field_validator

from appliance.config.base import Strict
from appliance.config.broker_url import BrokerUrlError, parse_broker_url
from appliance.names import NAME_PATTERN, TOPIC_PREFIX_PATTERN


class MqttTlsConfig(Strict):
    ca_file: Optional[str] = Field(None, description="CA bundle that signed the broker's certificate")
    cert_file: Optional[str] = Field(None, description="Device client certificate (mutual TLS)")
    key_file: Optional[str] = Field(None, description="Device private key (mutual TLS)")
    insecure_skip_verify: bool = Field(False, description="Never in production: skips hostname checks")


# Brokers one device may be given (the nodes of one cluster, or a primary and its standby).
MAX_BROKER_URLS = 8


class MqttConfig(Strict):
    url: Optional[Union[str, List[str]]] = Field(
        None,
        description="mqtt://host:port or mqtts://host:port, or a list of them: the nodes of one broker cluster, "
        "all with the same TLS identity, tried in order; the device stays on one while it works. "
        "None: print messages on stdout instead",
    )
    topic_prefix: str = Field(
        "crowdmon", pattern=TOPIC_PREFIX_PATTERN, description="Topics are {prefix}/{device_id}/..."
    )
    protocol: Literal["auto", "5", "3.1.1"] = Field("auto", description="auto: MQTT 5, falling back to 3.1.1")
    client_id: Optional[str] = Field(None, description="Defaults to the device id")
    username: Optional[str] = Field(None, description="Broker user name (mTLS brokers use the certificate)")
    password_file: Optional[str] = Field(None, description="File holding the password (never logged)")
    password_env: Optional[str] = Field(None, description="Environment variable holding the password")
    keepalive_s: int = Field(
        30, ge=5, le=3600, description="MQTT keepalive; the broker declares us dead after 1.5x this"
    )
    connect_timeout_s: float = Field(
        10.0, gt=0, le=300, description="TCP + TLS handshake + CONNACK must complete within this"
    )
    reconnect_min_s: float = Field(1.0, gt=0, description="First wait after a failed or lost connection")
    reconnect_max_s: float = Field(60.0, gt=0, description="The wait doubles up to this")
    qos: Literal[1] = Field(
        1, description="Always 1: delivered at least once (the outbox deletes a message only on its PUBACK)"
    )
    counts_expiry_s: Optional[int] = Field(
        3600, ge=1, description="MQTT 5 message expiry on counts, so a stale backlog is not taken as live"
    )
    tls: MqttTlsConfig = Field(default_factory=MqttTlsConfig)

    @field_validator("url")
    @classmethod
    def _broker_address(cls, v: Optional[Union[str, List[str]]]) -> Optional[Union[str, List[str]]]:
        if v is None:
            return v
        if isinstance(v, str):
            try:
                parse_broker_url(v)
            except BrokerUrlError as exc:
                raise ValueError(str(exc)) from None
            return v
        if not v:
            raise ValueError("is an empty list: give at least one broker URL, or leave mqtt.url out")
        if len(v) > MAX_BROKER_URLS:
            raise ValueError(f"lists {len(v)} brokers; at most {MAX_BROKER_URLS}")
        schemes = set()
        for i, url in enumerate(v):
            try:
                schemes.add(parse_broker_url(url).scheme)
            except BrokerUrlError as exc:
                raise ValueError(f"[{i}] {url!r} {exc}") from None
        if len(schemes) > 1:
            raise ValueError("mixes mqtt:// and mqtts://: every broker of the list uses the same TLS identity")
        if len({parse_broker_url(url) for url in v}) < len(v):
            raise ValueError("names one broker twice")
        return v

    @property
    def urls(self) -> List[str]:
        """Every configured broker URL, in the order the device tries them (empty: none)."""
        return [] if self.url is None else [self.url] if isinstance(self.url, str) else list(self.url)

    @field_validator("qos", mode="before")
    @classmethod
    def _only_qos_1(cls, v: object) -> object:
        if v != 1 or isinstance(v, bool):
            raise ValueError("only 1 is allowed: with QoS 0 nothing acknowledges a message and the outbox loses it")
        return v


class PublishConfig(Strict):
    interval_s: float = Field(10.0, gt=0, le=3600, description="Counts are aggregated over windows this long")
    health_interval_s: float = Field(30.0, gt=0, le=3600, description="A health message this often")
    max_payload_bytes: int = Field(16384, ge=512, le=262144, description="Egress refuses larger payloads")
    close_timeout_s: float = Field(
        5.0, ge=0, le=120, description="On a clean stop, wait this long for the backlog and 'offline' to be acked"
    )


DEFAULT_STATE_DIR = "/var/lib/crowd-appliance"


def state_path(template: str, device_id: str) -> Path:
    """A state file's configured path with its placeholders filled: ``{device_id}``, and
    ``{state_dir}``: ``$STATE_DIRECTORY`` (systemd sets it from the unit's ``StateDirectory=``),
    else /var/lib/crowd-appliance."""
    state_dir = os.environ.get("STATE_DIRECTORY", "").split(":")[0] or DEFAULT_STATE_DIR
    return Path(template.replace("{state_dir}", state_dir).replace("{device_id}", device_id))


class OutboxConfig(Strict):
    path: str = Field(
        "{state_dir}/{device_id}/outbox.sqlite3",
        description="SQLite store-and-forward queue, one per device; {device_id} is replaced by the device id, "
        "{state_dir} by $STATE_DIRECTORY (set by the service's StateDirectory=) or else /var/lib/crowd-appliance",
    )
    # 64 MiB holds about a week of counts at the default 10 s interval (~1 KiB each) plus health:
    # far more than the 24 h a 4G outage should last, and small for any SD card.
    max_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Queued payload bytes; beyond: oldest health, then counts, dropped"
    )
    max_age_s: float = Field(
        7 * 24 * 3600, gt=0, description="Health and counts older than this are dropped (anomalies are not)"
    )
    memory_queue_max: int = Field(
        1000,
        ge=1,
        le=100000,
        description="Messages held in memory while the disk refuses writes; beyond, the oldest is lost",
    )
    storage_give_up_s: float = Field(
        600.0, gt=0, description="Delivery retries storage errors this long, then the appliance exits 1 (restarted)"
    )
    busy_timeout_s: float = Field(5.0, gt=0, le=300, description="Wait this long for a SQLite lock before retrying")


class HomeAssistantConfig(Strict):
    """Home Assistant MQTT discovery: retained config messages so Home Assistant adds the device by itself."""

    enabled: bool = Field(False, description="Publish Home Assistant MQTT discovery config messages (opt-in)")
    discovery_prefix: str = Field(
        "homeassistant",
        pattern=NAME_PATTERN,
        description="Home Assistant's discovery prefix (its MQTT integration's setting)",
    )
