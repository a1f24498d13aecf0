"""The live page: what the agent hears, served from the agent process with the standard library only.

GET /              the page (dashboard.html beside this file: HTML, CSS and JS inline, no CDN)
GET /api/state     the latest state, the same keys as the MQTT emotion payload (204 before the first)
GET /api/stats     the stats payload (the MQTT stats keys)
GET /api/config    the effective configuration, secrets masked
GET /events        Server-Sent Events: hello (who, what and the recent history), state, window, stats, mqtt

Read-only: no endpoint changes anything, and nothing of the audio or its features leaves the device,
only levels, gate decisions and probabilities. The audio path never waits for a browser: every client
has a bounded queue that the agent fills without blocking, and a client that falls that far behind is
dropped (its browser reconnects and starts again from the history). The history is bounded in time
and in count.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from serkit.edge.errors import SerkitError

log = logging.getLogger("serkit")

PAGE = Path(__file__).with_name("dashboard.html")
HISTORY_S = 600.0  # the page's timeline: the last 10 minutes
MAX_HISTORY = 3000  # events of each kind kept, whatever the hop (~0.3 KB each: ~2 MB for both kinds at most)
CLIENT_QUEUE = 512  # events a browser may fall behind before it is dropped
KEEPALIVE_S = 15.0  # an SSE comment this often, so proxies and browsers keep an idle stream open
TICK_S = 2.0  # stats and MQTT status for the page, this often


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LiveFeed:
    """The bounded history and the open event streams: the agent's side, which never blocks."""

    def __init__(self, info: dict[str, Any], history_s: float = HISTORY_S, max_history: int = MAX_HISTORY) -> None:
        self.info = info
        self.history_s = history_s
        self._states: deque[tuple[float, str]] = deque(maxlen=max_history)
        self._windows: deque[tuple[float, str]] = deque(maxlen=max_history)
        self._clients: set[_Client] = set()
        self._lock = threading.Lock()
        self.last_state: dict[str, Any] | None = None
        self.last_stats: dict[str, Any] | None = None
        self.mqtt: dict[str, Any] = {}
        self.dropped_clients = 0

    # -- from the agent -------------------------------------------------------------------------
    def window(self, event: dict[str, Any]) -> None:
        self._publish("window", event, self._windows)

    def state(self, payload: dict[str, Any]) -> None:
        self.last_state = payload
        self._publish("state", payload, self._states)

    def stats(self, payload: dict[str, Any]) -> None:
        self.last_stats = payload
        self._publish("stats", payload)

    def connection(self, status: dict[str, Any]) -> None:
        if status != self.mqtt:
            self.mqtt = status
            self._publish("mqtt", status)

    # -- for the streams ------------------------------------------------------------------------
    def subscribe(self) -> tuple[_Client, bytes]:
        """A new client and its first event: hello, with the recent history."""
        client = _Client()
        with self._lock:
            self._prune(time.monotonic())
            hello = {
                **self.info,
                "state": self.last_state,
                "stats": self.last_stats,
                "mqtt": self.mqtt,
                "history_s": self.history_s,
            }
            body = json.dumps(hello)[:-1]  # the history is spliced in as JSON already made
            states = ",".join(s for _, s in self._states)
            windows = ",".join(w for _, w in self._windows)
            self._clients.add(client)
        data = f'{body}, "states": [{states}], "windows": [{windows}]}}'
        return client, _sse("hello", data)

    def unsubscribe(self, client: _Client) -> None:
        with self._lock:
            self._clients.discard(client)

    def end_streams(self) -> None:
        """The agent is stopping: every stream ends (browsers retry, and find the page gone)."""
        with self._lock:
            for client in self._clients:
                client.ended.set()
            self._clients.clear()

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._clients)

    def _publish(self, kind: str, payload: dict[str, Any], history: deque | None = None) -> None:
        data = json.dumps(payload)
        message = _sse(kind, data)
        now = time.monotonic()
        with self._lock:
            if history is not None:
                history.append((now, data))
                self._prune(now)
            for client in list(self._clients):
                try:
                    client.queue.put_nowait(message)
                except queue.Full:  # this browser is not reading: drop it rather than wait or grow
                    self._clients.discard(client)
                    client.ended.set()
                    self.dropped_clients += 1

    def _prune(self, now: float) -> None:
        for history in (self._states, self._windows):
            while history and now - history[0][0] > self.history_s:
                history.popleft()


class _Client:
    """One open event stream: its bounded queue, and the flag that ends it."""

    def __init__(self) -> None:
        self.queue: queue.Queue[bytes] = queue.Queue(CLIENT_QUEUE)
        self.ended = threading.Event()


def _pending(q: queue.Queue) -> bytes:
    """Whatever else is queued already: written in one go, so a burst costs one system call, not one each."""
    out = []
    while True:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            return b"".join(out)


def _sse(kind: str, data: str) -> bytes:
    return f"event: {kind}\ndata: {data}\n\n".encode()


class Dashboard:
    """The HTTP server on its own threads, plus a ticker that sends stats and MQTT status to the page."""

    def __init__(
        self,
        address: tuple[str, int],
        feed: LiveFeed,
        config_view: dict[str, Any],
        token: str = "",
    ) -> None:
        self.feed = feed
        self.token = token
        self.config_view = config_view
        host, port = address
        handler = type("Handler", (_Handler,), {"dashboard": self})
        try:
            self.server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise SerkitError(f"'http': cannot serve the live page on {host}:{port} ({exc.strerror or exc})") from None
        self.server.daemon_threads = True
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        if not token and not _is_loopback(host):
            log.warning(
                "the live page on %s:%d is open to anyone who can reach this address: set http_token", host, port
            )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else host
        return f"http://{shown}:{port}/"

    def start(self, tick: Callable[[], None]) -> None:
        def ticker() -> None:
            while not self._stop.wait(TICK_S):
                tick()

        self._threads = [
            threading.Thread(target=self.server.serve_forever, name="serkit-http", daemon=True),
            threading.Thread(target=ticker, name="serkit-http-tick", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        # Said whatever the log level: it is what the user asked for and needs to open.
        print(f"serkit: live page on {self.url}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self._stop.set()
        self.feed.end_streams()
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    dashboard: Dashboard
    server_version = "serkit"
    timeout = 30  # a client that stops reading for this long is closed, freeing its thread

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("http: %s", format % args)

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        url = urlsplit(self.path)
        if not self._authorised(url.query):
            self._send(401, b'{"error": "token required"}', "application/json", {"WWW-Authenticate": "Bearer"})
            return
        route = {
            "/": self._page,
            "/api/state": self._state,
            "/api/stats": lambda: self._json(self.dashboard.feed.last_stats or {}),
            "/api/config": lambda: self._json(self.dashboard.config_view),
            "/events": self._events,
        }.get(url.path)
        if route is None:
            self._send(404, b'{"error": "not found"}', "application/json")
            return
        route()

    def do_POST(self) -> None:  # noqa: N802
        self._send(405, b'{"error": "read-only"}', "application/json", {"Allow": "GET"})

    do_PUT = do_DELETE = do_PATCH = do_POST  # noqa: N815

    def _authorised(self, query: str) -> bool:
        token = self.dashboard.token
        if not token:
            return True
        given = parse_qs(query).get("token", [""])[0]
        header = self.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            given = header[len("Bearer ") :].strip()
        return hmac.compare_digest(given.encode(), token.encode())

    def _page(self) -> None:
        self._send(200, PAGE.read_bytes(), "text/html; charset=utf-8")

    def _state(self) -> None:
        state = self.dashboard.feed.last_state
        if state is None:
            self._send(204, b"", "application/json")
        else:
            self._json(state)

    def _json(self, payload: dict[str, Any]) -> None:
        self._send(200, json.dumps(payload).encode(), "application/json")

    def _send(self, code: int, body: bytes, kind: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if code != 204:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if code != 204:
            self.wfile.write(body)

    def _events(self) -> None:
        feed = self.dashboard.feed
        client, hello = feed.subscribe()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(b"retry: 2000\n\n" + hello)
            self.wfile.flush()
            last = time.monotonic()
            while not client.ended.is_set():  # set when it fell behind, or the agent is stopping
                try:
                    message = client.queue.get(timeout=min(KEEPALIVE_S, 0.5)) + _pending(client.queue)
                except queue.Empty:
                    message = b": keepalive\n\n" if time.monotonic() - last > KEEPALIVE_S else b""
                if message:
                    self.wfile.write(message)
                    self.wfile.flush()
                    last = time.monotonic()
        except OSError:  # the browser went away (or stopped reading past the socket timeout)
            return
        finally:
            feed.unsubscribe(client)
            self.close_connection = True
