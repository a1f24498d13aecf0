"""`serkit run --http`: the live page and its API, against the real agent, a real Mosquitto and a real browser."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from brokers import Mosquitto, Recorder, free_port
from conftest import ROOT, assert_one_line_error, run_cli

from serkit.edge.audio import read_wav, write_wav
from serkit.edge.config import parse_http
from serkit.edge.dashboard import MAX_HISTORY, LiveFeed
from serkit.edge.errors import SerkitError

SAMPLES = ROOT / "edge" / "samples"
SCREENSHOT = ROOT / "docs" / "live-page.png"


def _speech_wav(path: Path, repeats: int = 1, gap_s: float = 0.5, clips: int = 6) -> Path:
    """The bundled clips one after another with pauses: speech and silence, as a room hears them."""
    parts = []
    for clip in sorted(SAMPLES.glob("*.wav"))[:clips] * repeats:
        parts += [read_wav(clip, 16000)[0], np.zeros(int(gap_s * 16000), np.float32)]
    write_wav(path, np.concatenate(parts), 16000)
    return path


def _agent(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "serkit", "run", "--device-id", "hall", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )


def _get(url: str, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the live page never listened")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
    if proc.stdin and proc.stdin.closed:
        proc.stdin = None  # communicate() would flush it
    proc.communicate(timeout=20)


# -- the page in a real browser -------------------------------------------------------------------------
@pytest.mark.slow  # starts a browser and plays audio in real time
def test_the_page_shows_a_state_and_a_moving_level_in_a_real_browser(tmp_path):
    from browser import Browser

    broker = Mosquitto(tmp_path / "mq").start()
    port = free_port()
    wav = _speech_wav(tmp_path / "room.wav", repeats=2)
    proc = _agent("--source", f"file:{wav}", "--broker", broker.url, "--http", str(port), "--raw")
    browser = None
    try:
        _wait_listening(port, proc)
        browser = Browser(tmp_path)
        browser.open(f"http://127.0.0.1:{port}/")
        seen = _watch(browser, seconds=12)
        assert seen["link"] == "live"
        assert seen["emotion"] in ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
        assert seen["confidence"].endswith("% confident"), seen
        assert len(set(seen["levels"])) >= 3, seen["levels"]  # the meter moves with the audio
        assert seen["bars"] == 8 and seen["mqtt"].startswith("connected to mqtt://127.0.0.1:")
        assert seen["device"] == "hall" and seen["model"].startswith("serkit-ravdess8-int8")
        browser.screenshot(tmp_path / "live-page.png")
        if os.environ.get("SERKIT_UPDATE_SCREENSHOT") == "1":  # the picture in the README
            SCREENSHOT.parent.mkdir(exist_ok=True)
            shutil.copyfile(tmp_path / "live-page.png", SCREENSHOT)
        assert (tmp_path / "live-page.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        if browser:
            browser.close()
        _stop(proc)
        broker.stop()


def _watch(browser, seconds: float) -> dict:
    """What the rendered DOM says, sampled for `seconds` once a state is shown."""
    read = (
        "const t = (id) => document.getElementById(id).textContent;"
        "return {emotion: t('emotion'), confidence: t('confidence'), level: t('level-value'), link: t('link'),"
        " mqtt: t('mqtt'), device: t('device'), model: t('model'), bars: document.querySelectorAll('.bar').length};"
    )
    deadline = time.monotonic() + 20
    dom = browser.js(read)
    while dom["emotion"] == "—" and time.monotonic() < deadline:
        time.sleep(0.2)
        dom = browser.js(read)
    levels = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        dom = browser.js(read)
        levels.append(dom["level"])
        time.sleep(0.5)
    return {**dom, "levels": levels}


# -- the API against MQTT ---------------------------------------------------------------------------------
def test_the_api_gives_what_mqtt_gets_in_the_same_run(tmp_path):
    broker = Mosquitto(tmp_path / "mq").start()
    rec = Recorder(broker.port, ["serkit/hall/#"])
    port = free_port()
    audio = read_wav(_speech_wav(tmp_path / "room.wav", clips=3), 16000)[0]
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    proc = subprocess.Popen(
        [sys.executable, "-m", "serkit", "run", "--device-id", "hall", "--source", "-", "--rate", "16000",
         "--broker", broker.url, "--http", str(port), "--stats-interval-s", "0.5", "--state-interval-s", "0",
         "--username", "u", "--password", "s3cret"],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    states, stats = [], []
    try:
        _wait_listening(port, proc)
        assert _get(base + "/api/state") == (204, b"")
        second = 32000  # bytes of 16-bit audio
        for i in range(0, len(pcm), second):  # a second of audio at a time, the API read in between
            proc.stdin.write(pcm[i : i + second])
            proc.stdin.flush()
            time.sleep(0.15)
            code, body = _get(base + "/api/state")
            if code == 200:
                states.append(json.loads(body))
            if (body := _get(base + "/api/stats")[1]) != b"{}":
                stats.append(json.loads(body))
        config = json.loads(_get(base + "/api/config")[1])
        proc.stdin.close()
        assert proc.wait(30) == 0, proc.stderr.read().decode()
    finally:
        _stop(proc)
    rec.wait_for(lambda: rec.on("serkit/hall/availability")[-1:] == [b"offline"])
    rec.close()
    broker.stop()
    mqtt_states = rec.json_on("serkit/hall/emotion")
    assert len(states) > 5 and all(s in mqtt_states for s in states)  # the same keys, the same values
    mqtt_stats = rec.json_on("serkit/hall/stats")
    assert stats and mqtt_stats and all(set(s) == set(mqtt_stats[0]) for s in stats)
    assert config["password"] == "********" and config["username"] == "u" and config["http"] == str(port)


def test_api_state_is_204_before_the_first_state_and_nothing_is_writable(tmp_path):
    port = free_port()
    silence = tmp_path / "quiet.wav"
    write_wav(silence, np.zeros(16000 * 30, np.float32), 16000)
    proc = _agent("--source", f"file:{silence}", "--broker", "none", "--http", str(port))
    try:
        _wait_listening(port, proc)
        base = f"http://127.0.0.1:{port}"
        assert _get(base + "/api/state") == (204, b"")
        for method in ("POST", "PUT", "DELETE"):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request(method, "/api/state", body=b"{}")
            assert conn.getresponse().status == 405
            conn.close()
        assert _get(base + "/nothing")[0] == 404
    finally:
        _stop(proc)


# -- two event streams, one of them stalled -------------------------------------------------------------
def test_a_stalled_browser_is_dropped_and_the_other_gets_every_window(tmp_path):
    port = free_port()
    audio = read_wav(_speech_wav(tmp_path / "room.wav", repeats=4), 16000)[0]
    # Raw PCM on stdin, sent once both clients are connected, at full speed and a window every 10 ms:
    # thousands of events, far more than a stalled client may fall behind.
    proc = subprocess.Popen(
        [sys.executable, "-m", "serkit", "run", "--source", "-", "--rate", "16000", "--broker", "none",
         "--http", str(port), "--raw", "--hop-s", "0.01"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    _wait_listening(port, proc)
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", port))
    stalled.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")  # and then never reads
    reader = _EventReader(port)
    assert reader.hello.wait(10)
    time.sleep(0.5)  # the stalled client's request is being served too
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    out, err = proc.communicate(input=pcm, timeout=180)
    assert proc.returncode == 0, err.decode()
    reader.join(30)
    windows = sum(1 for line in out.decode().splitlines() if json.loads(line)["topic"] == "raw")
    assert windows > 8000
    assert reader.windows == windows  # the reading client missed nothing
    got = b""
    stalled.settimeout(40)
    while chunk := stalled.recv(65536):  # reading now, it finds its stream was ended early
        got += chunk
    stalled.close()
    # It had what the socket buffers held plus its queue; far from all of it.
    assert got.count(b"event: window") < windows - 2000


class _EventReader(threading.Thread):
    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.windows, self.hello = port, 0, threading.Event()
        self.start()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request("GET", "/events")
        resp = conn.getresponse()
        try:
            for line in resp:
                self.windows += line == b"event: window\n"
                if line == b"event: hello\n":
                    self.hello.set()
        except (OSError, http.client.HTTPException):
            pass


# -- token, bad addresses ----------------------------------------------------------------------------------
def test_a_token_is_required_when_set_and_masked_in_the_config(tmp_path):
    port = free_port()
    silence = tmp_path / "quiet.wav"
    write_wav(silence, np.zeros(16000 * 30, np.float32), 16000)
    proc = _agent("--source", f"file:{silence}", "--broker", "none", "--http", f"0.0.0.0:{port}",
                  "--http-token", "let-me-in")  # fmt: skip
    try:
        _wait_listening(port, proc)
        base = f"http://127.0.0.1:{port}"
        for path in ("/", "/api/state", "/api/stats", "/api/config", "/events"):
            assert _get(base + path)[0] == 401, path
            assert _get(base + path + "?token=wrong")[0] == 401, path
        assert _get(base + "/?token=let-me-in")[0] == 200
        code, body = _get(base + "/api/config", {"Authorization": "Bearer let-me-in"})
        assert code == 200 and json.loads(body)["http_token"] == "********"
    finally:
        _stop(proc)


def test_without_a_token_beyond_loopback_the_agent_warns(tmp_path):
    port = free_port()
    proc = _agent("--source", f"file:{SAMPLES / '01-angry-espeak.wav'}", "--broker", "none",
                  "--http", f"0.0.0.0:{port}", "--pace", "fast")  # fmt: skip
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "open to anyone who can reach this address: set http_token" in err.decode()


def test_a_port_in_use_is_one_line_at_start_up(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_cli("run", "--source", f"file:{SAMPLES / '01-angry-espeak.wav'}", "--broker", "none",
                       "--http", str(port))  # fmt: skip
    line = assert_one_line_error(proc, f"'http': cannot serve the live page on 127.0.0.1:{port}", "in use")
    assert line.startswith("serkit: error: ")
    assert_one_line_error(run_cli("run", "--http", "eighty"), "'http'", "PORT or HOST:PORT")
    assert_one_line_error(run_cli("run", "--http", "127.0.0.1:70000"), "'http'", "0 (any free) to 65535")


def test_http_addresses():
    assert parse_http("") is None
    assert parse_http("8080") == ("127.0.0.1", 8080)
    assert parse_http("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_http("[::1]:8080") == ("::1", 8080)
    with pytest.raises(SerkitError, match="'http'"):
        parse_http(":8080x")


# -- bounded memory -----------------------------------------------------------------------------------------
def test_the_history_is_bounded_in_count_and_bytes_whatever_the_uptime():
    labels = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    feed = LiveFeed({"labels": labels}, history_s=1e9)  # time alone would keep everything
    rng = np.random.default_rng(0)
    for seq in range(3 * MAX_HISTORY):
        p = rng.dirichlet(np.ones(8))
        probs = {lab: float(x) for lab, x in zip(labels, p, strict=True)}
        event = {"seq": seq, "offset_s": seq * 0.5, "speech": True, "level_dbfs": -23.4, "emotion": "happy",
                 "probabilities": probs, "timestamp": "2026-12-02T03:49:03.652Z", "device": "living-room-speaker",
                 "floor_dbfs": -61.2, "threshold_dbfs": -51.2}  # fmt: skip
        feed.window(event)
        feed.state({**event, "confidence": 0.5, "window_s": 3.005})
    stored = [data for kind in (feed._windows, feed._states) for _, data in kind]
    assert len(feed._windows) == len(feed._states) == MAX_HISTORY
    assert sum(len(d) for d in stored) < 5_000_000
    _, hello = feed.subscribe()
    assert len(hello) < 5_000_000 and json.loads(hello.decode().split("data: ", 1)[1])["windows"][-1]["seq"] == seq
