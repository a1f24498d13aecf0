"""Is the agent up? Wait for its retained availability message to say online.

`serkit deploy` runs this on the Pi after a restart, with the agent's own config
(same broker, credentials, TLS and device id), so the check proves what Home
Assistant will see rather than just that a process exists.
"""

from __future__ import annotations

import threading
import time

from serkit.edge.config import AgentConfig
from serkit.edge.errors import SerkitError
from serkit.edge.mqtt_payloads import ONLINE, Topics
from serkit.edge.publisher import make_client, parse_broker


def wait_online(config: AgentConfig, timeout_s: float) -> str | None:
    """Block until <prefix>/<device>/availability reads online and return that topic; None when the broker is
    'none' (there is nothing to wait for); SerkitError on timeout."""
    address = parse_broker(config.broker)
    if address is None:
        return None
    topic = Topics(config.topic_prefix, config.effective_device_id(), config.discovery_prefix).availability
    client = make_client(
        address, f"serkit-check-{config.effective_device_id()}-{int(time.time())}", config.credentials()
    )
    online = threading.Event()
    last: dict[str, str] = {}

    def on_connect(c, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        if reason_code.is_failure:
            last["error"] = f"broker refused the connection: {reason_code}"
        else:
            c.subscribe(topic, qos=1)

    def on_message(c, userdata, message) -> None:  # noqa: ANN001
        last["payload"] = message.payload.decode("utf-8", "replace")
        if last["payload"] == ONLINE:
            online.set()

    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect_async(address.host, address.port, keepalive=30)
    except (OSError, ValueError) as exc:
        raise SerkitError(f"cannot reach broker {address}: {exc}") from None
    client.loop_start()
    try:
        if online.wait(timeout_s):
            return topic
    finally:
        client.loop_stop()
        client.disconnect()
    seen = last.get("error") or (f"last value {last['payload']!r}" if "payload" in last else "no message")
    raise SerkitError(f"{topic} did not say online within {timeout_s:g} s on {address} ({seen})")
