"""Topics and payloads: pure builders, no connection (the contract test freezes them).

    <prefix>/<device>/emotion        state JSON, QoS 1, retained (a restarted Home Assistant shows the last one)
    <prefix>/<device>/availability   online / offline, retained; offline is the last will
    <prefix>/<device>/raw            every window's unsmoothed result (when enabled)
    <prefix>/<device>/stats          counters and timings, every stats_interval_s
    <discovery>/sensor/serkit_<device>/emotion/config, .../confidence/config,
    <discovery>/binary_sensor/serkit_<device>/connectivity/config   Home Assistant discovery, retained

Nothing here carries audio or features: only labels, probabilities and counters leave the device.
"""

from datetime import datetime, timezone
from typing import Any, NamedTuple

from serkit.edge import version
from serkit.edge.decision import SILENCE, State

ONLINE, OFFLINE = "online", "offline"
HA_STATUS_TOPIC_SUFFIX = "status"  # Home Assistant announces "online" on <discovery>/status


class Topics(NamedTuple):
    """The MQTT topics of one device under a prefix, and its Home Assistant discovery prefix."""

    prefix: str
    device: str
    discovery_prefix: str = "homeassistant"

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device}"

    @property
    def emotion(self) -> str:
        return f"{self.base}/emotion"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def raw(self) -> str:
        return f"{self.base}/raw"

    @property
    def stats(self) -> str:
        return f"{self.base}/stats"

    @property
    def ha_status(self) -> str:
        return f"{self.discovery_prefix}/{HA_STATUS_TOPIC_SUFFIX}"

    @property
    def device_filter(self) -> str:
        """Every topic of this device (a subscription filter)."""
        return f"{self.base}/#"

    @property
    def discovery_filter(self) -> str:
        """Every discovery config of this device (a subscription filter)."""
        return self.discovery("+", "+")

    def discovery(self, component: str, object_id: str) -> str:
        return f"{self.discovery_prefix}/{component}/{node_id(self.device)}/{object_id}/config"


def iso_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def state_payload(state: State, device: str, window_s: float, timestamp: str) -> dict[str, Any]:
    return {
        "emotion": state.emotion,
        "confidence": state.confidence,
        "probabilities": state.probabilities,
        "timestamp": timestamp,
        "window_s": round(window_s, 3),
        "device": device,
        "seq": state.seq,
        "offset_s": round(state.start_s, 3),
    }


def raw_payload(
    seq: int,
    start_s: float,
    speech: bool,
    level_dbfs: float,
    probabilities: dict[str, float] | None,
    device: str,
    timestamp: str,
) -> dict[str, Any]:
    top = max(probabilities, key=probabilities.get) if probabilities else None
    return {
        "seq": seq,
        "offset_s": round(start_s, 3),
        "speech": speech,
        "level_dbfs": level_dbfs,
        "emotion": top,
        "probabilities": probabilities,
        "timestamp": timestamp,
        "device": device,
    }


def node_id(device: str) -> str:
    """The discovery node: serkit_<device>, so another publisher's "hall" cannot collide with ours."""
    return f"serkit_{device}"


def device_block(device: str, model_name: str) -> dict[str, Any]:
    return {
        "identifiers": [node_id(device)],
        "name": f"serkit {device}",
        "manufacturer": "serkit",
        "model": f"speech emotion ({model_name})",
        "sw_version": version(),
    }


def _entity(device: str, component: str, key: str) -> dict[str, str]:
    """Names and ids, the same on every Home Assistant version: default_entity_id from 2025.10, object_id
    before it (removed in 2026.4; each version ignores the key it does not know). Friendly names read
    "serkit <device> <key>", all lower case."""
    ident = f"{node_id(device)}_{key}"
    return {"name": key, "unique_id": ident, "object_id": ident, "default_entity_id": f"{component}.{ident}"}


def discovery_messages(topics: Topics, labels: tuple[str, ...], model_name: str) -> list[tuple[str, dict[str, Any]]]:
    """(topic, payload) for the emotion sensor, the confidence sensor and the connectivity binary sensor."""
    d = topics.device
    shared = {"device": device_block(d, model_name), "origin": {"name": "serkit", "sw_version": version()}}
    available = {
        "availability_topic": topics.availability,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
    }
    emotion = {
        **shared,
        **available,
        **_entity(d, "sensor", "emotion"),
        "state_topic": topics.emotion,
        "value_template": "{{ value_json.emotion }}",
        "json_attributes_topic": topics.emotion,
        "json_attributes_template": "{{ value_json.probabilities | tojson }}",
        "device_class": "enum",
        "options": [*labels, SILENCE],
        "icon": "mdi:emoticon-outline",
    }
    confidence = {
        **shared,
        **available,
        **_entity(d, "sensor", "confidence"),
        "state_topic": topics.emotion,
        # Silence has no confidence: "None" makes the state unknown, which long-term statistics skip.
        "value_template": f"{{{{ 'None' if value_json.emotion == '{SILENCE}' else "
        "(value_json.confidence * 100) | round(1) }}",
        "unit_of_measurement": "%",
        "state_class": "measurement",
        "icon": "mdi:gauge",
    }
    # No availability topic of its own: it reads that topic as its state, so it can be off.
    connectivity = {
        **shared,
        **_entity(d, "binary_sensor", "connectivity"),
        "state_topic": topics.availability,
        "payload_on": ONLINE,
        "payload_off": OFFLINE,
        "device_class": "connectivity",
        "entity_category": "diagnostic",
    }
    return [
        (topics.discovery("sensor", "emotion"), emotion),
        (topics.discovery("sensor", "confidence"), confidence),
        (topics.discovery("binary_sensor", "connectivity"), connectivity),
    ]
