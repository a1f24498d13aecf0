"""A real Mosquitto broker on a random loopback port, and a recording MQTT subscriber, for the tests."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as mqtt
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_program(name: str, env_var: str, package: str) -> str:
    """The program's path; a skip where it is missing, or a failure when env_var=1 says it must be there."""
    exe = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if exe:
        return exe
    if os.environ.get(env_var) == "1":
        pytest.fail(f"{name} is not installed but {env_var}=1 (scripts/test.sh installs {package})")
    pytest.skip(f"{name} is not installed (apt install {package}; scripts/test.sh does)")


def require_mosquitto() -> str:
    return require_program("mosquitto", "SERKIT_REQUIRE_BROKER", "mosquitto")


class Mosquitto:
    """Started with our own config; the pid is the process we started (Debian's mosquitto drops to its own
    user when run as root, so a pid_file in a root-owned folder would make it exit)."""

    def __init__(self, workdir: Path, port: int | None = None, extra: str = "", persistence: bool = False) -> None:
        self.exe = require_mosquitto()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra = extra
        self.persistence = persistence
        self.proc: subprocess.Popen | None = None

    def config(self) -> str:
        lines = [f"listener {self.port} 127.0.0.1"]
        if "password_file" not in self.extra:
            lines.append("allow_anonymous true")
        if os.geteuid() == 0:
            lines.append("user root")  # keep access to the test's private temp folder
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.dir}/", "autosave_interval 1"]
        lines.append(self.extra)
        return "\n".join(lines) + "\n"

    def start(self) -> Mosquitto:
        conf = self.dir / "mosquitto.conf"
        conf.write_text(self.config())
        log = open(self.dir / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([self.exe, "-c", str(conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.dir / 'mosquitto.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


class Recorder:
    """A subscriber that keeps every message it receives, and can wait for a condition on them."""

    def __init__(
        self, port: int, topics: list[str], client_id: str | None = None, persistent: bool = False, **connect: Any
    ) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"rec-{free_port()}", clean_session=not persistent
        )
        if "tls_ca" in connect:
            self.client.tls_set(ca_certs=connect.pop("tls_ca"))
        if "username" in connect:
            self.client.username_pw_set(connect.pop("username"), connect.pop("password"))
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(connect.pop("host", "127.0.0.1"), port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscription not confirmed"

    def _on_message(self, client: Any, userdata: Any, m: Any) -> None:
        with self._cond:
            self.messages.append((m.topic, m.payload, bool(m.retain)))
            self._cond.notify_all()

    def on(self, topic: str) -> list[bytes]:
        with self._cond:
            return [p for t, p, _ in self.messages if t == topic]

    def json_on(self, topic: str) -> list[dict]:
        return [json.loads(p) for p in self.on(topic)]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; got {[(t, p[:80]) for t, p, _ in self.messages]}")
                self._cond.wait(min(left, 0.2))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
