"""Debian's chromium, headless, driven over the W3C WebDriver protocol by Debian's chromedriver.

WebDriver is plain HTTP and JSON, so urllib is the whole client: nothing is downloaded, no browser
of its own. Chromium starts with the flags that keep it off the network (background services,
component updates, sync) in a fresh profile.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from brokers import free_port, require_program

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
]


class Browser:
    def __init__(self, workdir: Path) -> None:
        chromium = require_program("chromium", "SERKIT_REQUIRE_BROWSER", "chromium")
        driver = require_program("chromedriver", "SERKIT_REQUIRE_BROWSER", "chromium-driver")
        port = free_port()
        self._driver = subprocess.Popen(
            [driver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if self._call("GET", "/status")["ready"]:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self._driver.kill()
                raise RuntimeError("chromedriver did not start")
            time.sleep(0.1)
        options = {"binary": chromium, "args": [*CHROMIUM_FLAGS, f"--user-data-dir={workdir / 'profile'}"]}
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}}
        self._session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self._base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())["value"]

    def open(self, url: str) -> None:
        self._call("POST", f"/session/{self._session}/url", {"url": url})

    def js(self, script: str) -> Any:
        """The value of a function body run in the page (`return ...`)."""
        return self._call("POST", f"/session/{self._session}/execute/sync", {"script": script, "args": []})

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self._call("GET", f"/session/{self._session}/screenshot")))

    def close(self) -> None:
        try:
            self._call("DELETE", f"/session/{self._session}")
        except OSError:
            pass
        self._driver.terminate()
        self._driver.wait(10)
