"""Where results go: an MQTT broker (paho-mqtt 2.x), or stdout when there is no broker.

The MQTT side owns delivery: results wait in a bounded queue while the broker is
away (the oldest dropped and counted beyond the bound), at most MAX_INFLIGHT are
handed to paho at a time, and a result counts as delivered only when its PUBACK
arrives; paho re-sends unacknowledged QoS 1 messages after a reconnect. So within
queue_size + MAX_INFLIGHT results, a broker outage loses nothing.
"""

import json
import logging
import os
import sys
import threading
import time
from collections import deque
from typing import Any, NamedTuple

from serkit.edge.errors import SerkitError
from serkit.edge.mqtt_payloads import OFFLINE, ONLINE, Topics

log = logging.getLogger("serkit")

MAX_INFLIGHT = 20


class BrokerAddress(NamedTuple):
    """Where the broker is, and whether the connection uses TLS."""

    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_broker(url: str) -> BrokerAddress | None:
    """mqtt://HOST[:PORT] or mqtts://HOST[:PORT]; 'none' means no broker (results go to stdout)."""
    if url.strip().lower() == "none":
        return None
    from urllib.parse import urlsplit  # here: with ipaddress, ~3 ms of start-up that --broker none does without

    shape = "'broker' must look like mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (or none)"
    try:
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        port = parts.port
        host = parts.hostname
    except ValueError:  # an unclosed [ of an IPv6 address, a port that is not a number
        raise SerkitError(f"{shape}, got {url!r}") from None
    if parts.username is not None or parts.password is not None:  # never echoed: it may hold a password
        raise SerkitError(
            "'broker': credentials in the URL are not used; give the user as 'username' and the password in "
            "SERKIT_PASSWORD (or 'password')"
        )
    if parts.scheme not in ("mqtt", "mqtts") or not host or parts.path not in ("", "/"):
        raise SerkitError(f"{shape}, got {url!r}")
    if port == 0:
        raise SerkitError(f"'broker': port 0 is not a port to connect to (1 to 65535), got {url!r}")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(host, port or (8883 if tls else 1883), tls)


def connection_problem(exc: OSError, address: BrokerAddress) -> str:
    """Why a connection attempt failed, in words an operator can act on."""
    import socket
    import ssl

    where = f"{address.host}:{address.port}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name {address.host!r} (DNS: {exc.strerror})"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused at {where}: is the broker running, and is the port right?"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS verification failed: {exc.verify_message} (ca_file names the CA that signed the broker)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc.reason or exc}): is {where} a TLS port? (mqtt:// is plain, mqtts:// TLS)"
    if isinstance(exc, TimeoutError):
        return f"no answer from {where} (timed out): a firewall, or the wrong host?"
    return f"{exc.strerror or exc} ({where})"


def refusal_problem(reason: str) -> str:
    """The broker's own refusal (CONNACK), in words."""
    if reason.lower() in ("not authorized", "bad user name or password"):
        return f"authentication failed ({reason}): check username and the password (SERKIT_PASSWORD)"
    return f"the broker refused the connection ({reason})"


class StdoutPublisher:
    """No broker: one JSON line per state (and raw result) on stdout, for pipes and debugging."""

    def __init__(self, out: Any = None) -> None:
        self.out = out or sys.stdout
        self.delivered = 0
        self.dropped = 0
        self.queue_depth = 0
        self.connected = True
        self._lock = threading.Lock()  # stats come from their own thread

    def start(self) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {"broker": "none", "connected": False, "last_error": ""}

    def state(self, payload: dict[str, Any], wait_for_room: bool = False) -> None:
        self._line({"topic": "emotion", **payload})
        self.delivered += 1

    def raw(self, payload: dict[str, Any]) -> None:
        self._line({"topic": "raw", **payload})

    def stats(self, payload: dict[str, Any]) -> None:
        self._line({"topic": "stats", **payload})

    def drain(self, timeout: float, abort: threading.Event | None = None) -> int:
        return 0

    def close(self, timeout: float, abort: threading.Event | None = None) -> int:
        return 0

    def _line(self, payload: dict[str, Any]) -> None:
        with self._lock:
            self.out.write(json.dumps(payload) + "\n")
            self.out.flush()


class Credentials(NamedTuple):
    """Who the agent is to the broker: login and TLS files (empty = not used)."""

    username: str = ""
    password: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    def __repr__(self) -> str:  # without the password, wherever one is printed or logged
        return (
            f"Credentials(username={self.username!r}, ca_file={self.ca_file!r}, cert_file={self.cert_file!r}, "
            f"key_file={self.key_file!r})"
        )


def make_client(address: BrokerAddress, client_id: str, credentials: Credentials = Credentials()) -> Any:
    """A paho 2.x client with the agent's credentials and TLS settings (not yet connected)."""
    import ssl  # here, not at the top: nothing TLS is loaded unless a broker is used

    import paho.mqtt.client as mqtt

    c = credentials
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    if c.username:
        client.username_pw_set(c.username, c.password or None)
    if address.tls:
        for key, path in (("ca_file", c.ca_file), ("cert_file", c.cert_file), ("key_file", c.key_file)):
            if path and not os.path.isfile(path):
                raise SerkitError(f"'{key}': {path}: no such file")
        try:
            client.tls_set(ca_certs=c.ca_file or None, certfile=c.cert_file or None, keyfile=c.key_file or None)
        except (ssl.SSLError, ValueError, OSError) as exc:
            raise SerkitError(f"TLS settings (ca_file/cert_file/key_file) rejected: {exc}") from None
    return client


class MqttPublisher:
    def __init__(
        self,
        address: BrokerAddress,
        topics: Topics,
        client_id: str,
        discovery: list[tuple[str, dict[str, Any]]] | None,
        queue_size: int,
        credentials: Credentials = Credentials(),
        keepalive: int = 30,
    ) -> None:
        import paho.mqtt.client as mqtt

        self._mqtt = mqtt
        self.address = address
        self.topics = topics
        self.discovery = discovery
        self._queue: deque[dict[str, Any]] = deque()
        self.queue_size = queue_size
        self.delivered = 0
        self.dropped = 0
        self.connected = False
        self._keepalive = keepalive
        self._cond = threading.Condition()
        self._inflight: set[int] = set()
        # PUBACKs that beat the sender's bookkeeping (or belong to other messages), by arrival time.
        self._early_acks: dict[int, float] = {}
        self._closing = False
        self.last_error = ""  # the latest connection problem in words, for the live page

        client = make_client(address, client_id, credentials)
        client.will_set(topics.availability, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_inflight_messages_set(MAX_INFLIGHT)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        # paho's network loop retries by itself and hides why a connection failed: this instance's
        # reconnect, which that loop calls, keeps the reason first.
        connect = client.reconnect
        client.reconnect = lambda: self._attempt(connect)
        self._failures = 0
        self._answered = False  # the broker answered (CONNACK) since the last TCP connection
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self.client = client
        self._sender = threading.Thread(target=self._send_loop, name="serkit-mqtt-sender", daemon=True)

    # -- public -------------------------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        with self._cond:
            return len(self._queue) + len(self._inflight)

    def status(self) -> dict[str, Any]:
        return {"broker": str(self.address), "connected": self.connected, "last_error": self.last_error}

    def start(self) -> None:
        """Connect in the background: the agent starts even when the broker is down, and keeps retrying."""
        self.client.connect_async(self.address.host, self.address.port, keepalive=self._keepalive)
        self.client.loop_start()
        self._sender.start()

    def state(self, payload: dict[str, Any], wait_for_room: bool = False) -> None:
        """Queue a state; when the queue is full, wait for room (if asked, and while connected) or drop the oldest."""
        with self._cond:
            while wait_for_room and self.connected and not self._closing and len(self._queue) >= self.queue_size:
                self._cond.wait(0.5)
            if len(self._queue) >= self.queue_size:
                self._queue.popleft()
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 100 == 0:
                    log.warning("queue full (%d results): dropped the oldest, %d so far", self.queue_size, self.dropped)
            self._queue.append(payload)
            self._cond.notify_all()

    def raw(self, payload: dict[str, Any]) -> None:
        if self.connected:  # a diagnostic stream: not queued
            self.client.publish(self.topics.raw, json.dumps(payload), qos=0)

    def stats(self, payload: dict[str, Any]) -> None:
        if self.connected:
            self.client.publish(self.topics.stats, json.dumps(payload), qos=0)

    def drain(self, timeout: float, abort: threading.Event | None = None) -> int:
        """Wait up to `timeout` s (or until `abort` is set) for the queued results; returns those left."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._queue or self._inflight) and time.monotonic() < deadline and not (abort and abort.is_set()):
                self._cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            return len(self._queue) + len(self._inflight)

    def close(self, timeout: float, abort: threading.Event | None = None) -> int:
        """Drain (see drain), announce offline, disconnect; returns the results not delivered."""
        deadline = time.monotonic() + timeout
        undelivered = self.drain(timeout, abort)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self.connected:
            info = self.client.publish(self.topics.availability, OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=max(0.5, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
        self._sender.join(timeout=1)
        return undelivered

    # -- paho callbacks (network thread) ------------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self._answered = True
        if reason_code.is_failure:
            self._failed(refusal_problem(str(reason_code)))
            return
        after = f" after {self._failures} failed attempt(s)" if self._failures else ""
        log.info("connected to %s%s", self.address, after)
        self._failures = 0
        client.publish(self.topics.availability, ONLINE, qos=1, retain=True)
        if self.discovery is not None:
            client.subscribe(self.topics.ha_status, qos=1)
            self._publish_discovery()
        with self._cond:
            self.connected = True
            self._cond.notify_all()

    def _attempt(self, connect: Any) -> Any:
        self._answered = False
        try:
            return connect()
        except OSError as exc:
            self._failed(connection_problem(exc, self.address))
            raise

    def _failed(self, reason: str) -> None:
        """Said once per distinct reason, so a broker away for hours is not a line every 30 s."""
        self._failures += 1
        if reason != self.last_error:
            log.warning("cannot connect to %s: %s (retrying, every 1 to 30 s)", self.address, reason)
        else:
            log.debug("cannot connect to %s: %s (attempt %d)", self.address, reason, self._failures)
        self.last_error = reason

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        with self._cond:
            was = self.connected
            self.connected = False
        if self._closing:
            return
        if was:
            self.last_error = "connection lost (the broker closed it, or the network dropped)"
            log.warning("lost the broker %s: %s; queueing states and reconnecting", self.address, self.last_error)
        elif not self._answered:  # TCP worked, then the broker hung up without a word
            self._failed(
                "the broker closed the connection without answering: a TLS port reached with mqtt://? "
                "(use mqtts://HOST:PORT)"
                if not self.address.tls
                else "the broker closed the connection without answering"
            )

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        # Called with paho's message lock held: only bookkeeping here, never client.publish().
        with self._cond:
            if mid in self._inflight:
                self._inflight.discard(mid)
                self.delivered += 1
            else:
                now = time.monotonic()
                self._early_acks[mid] = now
                # Message ids wrap after 65535 publishes; an ack older than this cannot be a pending result's.
                for old in [m for m, t in self._early_acks.items() if now - t > 30]:
                    del self._early_acks[old]
            self._cond.notify_all()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if message.topic == self.topics.ha_status and message.payload.strip() == b"online":
            log.info("Home Assistant came online: re-publishing discovery")
            self._publish_discovery()

    def _publish_discovery(self) -> None:
        for topic, payload in self.discovery or []:
            self.client.publish(topic, json.dumps(payload), qos=1, retain=True)

    # -- sender thread ------------------------------------------------------------------------------
    def _send_loop(self) -> None:
        while True:
            with self._cond:
                while not self._closing and not (self.connected and self._queue and len(self._inflight) < MAX_INFLIGHT):
                    self._cond.wait(0.5)
                if self._closing:
                    return
                payload = self._queue.popleft()
            # Retained: a Home Assistant that restarts shows the last state instead of "unknown".
            info = self.client.publish(self.topics.emotion, json.dumps(payload), qos=1, retain=True)
            with self._cond:
                if info.rc not in (self._mqtt.MQTT_ERR_SUCCESS, self._mqtt.MQTT_ERR_NO_CONN):
                    self._queue.appendleft(payload)  # paho did not take it: try again later
                    self._cond.wait(0.2)
                elif self._early_acks.pop(info.mid, None) is not None:
                    self.delivered += 1
                else:
                    self._inflight.add(info.mid)
                self._cond.notify_all()
