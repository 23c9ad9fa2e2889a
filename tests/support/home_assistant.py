"""Home Assistant as the tests see it: a raw subscriber to its topics, and a binary sensor's state
computed from its discovery config as Home Assistant's MQTT integration computes it."""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Dict, List, Tuple

from jinja2.sandbox import ImmutableSandboxedEnvironment


class RawSubscriber:
    """Keeps the last payload per topic (bytes, possibly empty) and every (topic, payload, retain)."""

    def __init__(self, broker: Any, topic: str) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.log: List[Tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        assert subscribed.wait(10), "could not subscribe"

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.log.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def wait_for(self, predicate: Callable[[List[Tuple[str, bytes, bool]]], bool], timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if predicate(list(self.log)):
                    return
            time.sleep(0.02)
        raise AssertionError(f"timed out; got {[t for t, _, _ in self.log]}")

    def configs(self) -> Dict[str, Dict[str, Any]]:
        """The current config per topic (a later empty payload removes it), as Home Assistant sees it."""
        out: Dict[str, Dict[str, Any]] = {}
        with self._lock:
            for topic, payload, _ in self.log:
                if payload:
                    out[topic] = json.loads(payload)
                else:
                    out.pop(topic, None)
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def ha_binary_state(config: Dict[str, Any], payload: bytes, previous: str = "unknown") -> str:
    """A binary sensor's state as Home Assistant's MQTT integration computes it from one message on
    its state topic: the value template rendered with ``value_json`` (and ``value``), then compared
    with ``payload_on``/``payload_off``; anything else leaves the state as it was."""
    text = payload.decode()
    rendered = ImmutableSandboxedEnvironment().from_string(config["value_template"]).render(
        value_json=json.loads(text), value=text
    )
    return {config["payload_on"]: "on", config["payload_off"]: "off"}.get(rendered, previous)
