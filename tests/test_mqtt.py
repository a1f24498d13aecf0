"""The agent against a real Mosquitto broker on a random loopback port: discovery, availability and the
last will, Home Assistant's online announcement, a broker restart mid-stream, the queue bound, password, TLS."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from brokers import Mosquitto, Recorder, free_port
from conftest import ROOT, pcm16, run_cli

from serkit.edge.agent import default_model_path
from serkit.edge.audio import read_wav
from serkit.edge.features import num_frames
from serkit.edge.mqtt_payloads import Topics
from serkit.edge.publisher import MqttPublisher, parse_broker
from serkit.edge.spec import ModelSpec, spec_path_for
from serkit.edge.windows import window_starts

SAMPLES = ROOT / "edge" / "samples"
DEVICE = "hall"
T = Topics("serkit", DEVICE)
DISCOVERY = [
    "homeassistant/sensor/serkit_hall/emotion/config",
    "homeassistant/sensor/serkit_hall/confidence/config",
    "homeassistant/binary_sensor/serkit_hall/connectivity/config",
]
EVERY_WINDOW = ["--no-gate", "--min-confidence", "0", "--state-interval-s", "0", "--stats-interval-s", "0"]


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.stop()


def pcm(path, seconds: float | None = None) -> bytes:
    x = read_wav(path, 16000)[0]
    if seconds:
        x = np.resize(x, int(seconds * 16000))
    return pcm16(x)


def windows_in(n_samples: int) -> int:
    """How many windows the default model classifies in n_samples at 16 kHz, the closing one included."""
    spec = ModelSpec.load(spec_path_for(default_model_path()))
    return len(window_starts(num_frames(n_samples, spec.features), spec.frames_per_window, spec.hop_frames))


def agent(*args: str, env: dict | None = None) -> subprocess.Popen:
    """The real `serkit run`, reading raw PCM from a pipe the test controls."""
    return subprocess.Popen(
        [sys.executable, "-m", "serkit", "run", "--source", "-", "--device-id", DEVICE, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    if proc.stdin and not proc.stdin.closed:
        proc.stdin.close()
    proc.wait(timeout)
    return proc.returncode, proc.stderr.read().decode()


def test_file_run_publishes_discovery_states_and_availability(broker):
    live = Recorder(broker.port, ["serkit/#"])
    wav = SAMPLES / "01-angry-espeak.wav"
    proc = run_cli(
        "run", "--source", f"file:{wav}", "--pace", "fast", "--broker", broker.url, "--device-id", DEVICE, *EVERY_WINDOW
    )
    assert proc.returncode == 0, proc.stderr.decode()
    n = windows_in(len(read_wav(wav, 16000)[0]))
    live.wait_for(lambda: len(live.on(T.emotion)) >= n and live.on(T.availability)[-1:] == [b"offline"])
    states = live.json_on(T.emotion)
    assert [s["seq"] for s in states] == list(range(n))
    for s in states:
        assert set(s) == {
            "emotion",
            "confidence",
            "probabilities",
            "timestamp",
            "window_s",
            "device",
            "seq",
            "offset_s",
        }
        assert s["device"] == DEVICE and s["emotion"] in s["probabilities"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", s["timestamp"])
        assert abs(sum(s["probabilities"].values()) - 1) < 0.02 and 0 <= s["confidence"] <= 1
    assert live.on(T.availability)[0] == b"online"
    live.close()
    # A late subscriber (Home Assistant starting later) finds discovery and availability retained.
    late = Recorder(broker.port, ["homeassistant/#", T.availability])
    late.wait_for(lambda: all(late.on(t) for t in DISCOVERY) and late.on(T.availability))
    assert late.on(T.availability) == [b"offline"]
    assert all(r for t, _, r in late.messages)
    configs = {t: json.loads(late.on(t)[0]) for t in DISCOVERY}
    for c in configs.values():
        assert re.fullmatch(r"[a-zA-Z0-9_-]+", c["unique_id"])
        # Connectivity reads the availability topic as its state (so it can be off); the others go unavailable.
        assert c.get("availability_topic", T.availability) == T.availability
        assert c["device"]["identifiers"] == [f"serkit_{DEVICE}"]
        assert {"name", "model", "sw_version", "manufacturer"} <= set(c["device"])
    emotion = configs[DISCOVERY[0]]
    assert emotion["state_topic"] == T.emotion and emotion["json_attributes_topic"] == T.emotion
    assert "value_json.emotion" in emotion["value_template"]
    confidence = configs[DISCOVERY[1]]
    assert confidence["unit_of_measurement"] == "%" and confidence["state_class"] == "measurement"
    conn = configs[DISCOVERY[2]]
    assert conn["device_class"] == "connectivity" and conn["state_topic"] == T.availability
    # The last state is retained too: a Home Assistant that starts later shows it, not "unknown".
    retained = Recorder(broker.port, [T.emotion])
    retained.wait_for(lambda: retained.on(T.emotion))
    assert json.loads(retained.on(T.emotion)[0])["seq"] == n - 1 and all(r for _, _, r in retained.messages)
    retained.close()
    late.close()


def test_last_will_says_offline_when_the_agent_is_killed(broker):
    rec = Recorder(broker.port, [T.availability])
    proc = agent("--broker", broker.url)
    try:
        rec.wait_for(lambda: rec.on(T.availability)[-1:] == [b"online"])
        proc.send_signal(signal.SIGKILL)
        rec.wait_for(lambda: rec.on(T.availability)[-1:] == [b"offline"], timeout=10)
    finally:
        proc.kill()
        proc.wait()
        rec.close()


def test_stats_discovery_again_when_home_assistant_comes_online_and_a_clean_sigterm(broker):
    rec = Recorder(broker.port, ["homeassistant/+/serkit_hall/+/config", T.availability, T.stats])
    proc = agent("--broker", broker.url, "--log-level", "info", "--stats-interval-s", "0.3")
    try:
        rec.wait_for(lambda: all(len(rec.on(t)) == 1 for t in DISCOVERY))
        proc.stdin.write(pcm(SAMPLES / "02-happy-espeak.wav"))
        proc.stdin.flush()
        rec.wait_for(lambda: any(s["windows"] > 0 for s in rec.json_on(T.stats)))
        stats = rec.json_on(T.stats)[-1]
        for key in ("windows_per_s", "feature_ms", "inference_ms", "queue_depth", "dropped", "uptime_s"):
            assert isinstance(stats[key], (int, float)) and stats[key] >= 0, key
        assert stats["device"] == DEVICE and stats["dropped"] == 0
        rec.client.publish("homeassistant/status", "online", qos=1)
        rec.wait_for(lambda: all(len(rec.on(t)) == 2 for t in DISCOVERY))
        proc.send_signal(signal.SIGTERM)
        rc, err = finish(proc)
        assert rc == 0, err
        assert "Home Assistant came online" in err
        rec.wait_for(lambda: rec.on(T.availability)[-1:] == [b"offline"])
    finally:
        proc.kill()
        rec.close()


def test_no_discovery_flag(broker):
    rec = Recorder(broker.port, ["homeassistant/#", T.availability])
    proc = agent("--broker", broker.url, "--no-discovery")
    rec.wait_for(lambda: rec.on(T.availability) == [b"online"])
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    rc, err = finish(proc)
    assert rc == 0, err
    assert not [t for t, _, _ in rec.messages if t.startswith("homeassistant/")]
    rec.close()


def test_broker_restart_mid_stream_loses_no_result(tmp_path):
    b = Mosquitto(tmp_path / "broker", persistence=True).start()
    # A persistent session, so results the broker accepts while this subscriber reconnects wait for it.
    rec = Recorder(b.port, [T.emotion], client_id="restart-test", persistent=True)
    audio = pcm(SAMPLES / "03-sad-espeak.wav", seconds=18)
    third = len(audio) // 3 // 2 * 2
    proc = agent("--broker", b.url, "--flush-timeout-s", "30", *EVERY_WINDOW)
    try:
        proc.stdin.write(audio[:third])
        proc.stdin.flush()
        rec.wait_for(lambda: len(rec.on(T.emotion)) >= 5)
        b.stop()
        proc.stdin.write(audio[third : 2 * third])  # classified while the broker is down: queued
        proc.stdin.flush()
        time.sleep(1.5)
        b.start()
        proc.stdin.write(audio[2 * third :])
        rc, err = finish(proc)
        assert rc == 0, err
        assert "lost the broker" in err
        n = windows_in(len(audio) // 2)
        rec.wait_for(lambda: {s["seq"] for s in rec.json_on(T.emotion)} == set(range(n)), timeout=30)
    finally:
        proc.kill()
        rec.close()
        b.stop()


def test_queue_bound_drops_the_oldest_and_counts_them(tmp_path):
    port = free_port()
    pub = MqttPublisher(parse_broker(f"mqtt://127.0.0.1:{port}"), T, "bound-test", None, queue_size=3)
    pub.start()  # the broker is not there yet: the publisher starts anyway and keeps retrying
    for i in range(10):
        pub.state({"seq": i})
    assert pub.dropped == 7 and pub.queue_depth == 3
    b = Mosquitto(tmp_path / "broker", port=port, persistence=True).start()
    try:
        rec = Recorder(port, [T.emotion], client_id="bound-sub", persistent=True)
        deadline = time.monotonic() + 30
        while pub.delivered < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pub.close(5) == 0
        rec.wait_for(lambda: len(rec.on(T.emotion)) == 3)
        assert [m["seq"] for m in rec.json_on(T.emotion)] == [7, 8, 9]
        rec.close()
    finally:
        b.stop()


def test_password_from_the_environment_and_a_wrong_one(tmp_path):
    pwfile = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "serkit", "s3cret"], check=True, capture_output=True)
    b = Mosquitto(tmp_path / "broker", extra=f"allow_anonymous false\npassword_file {pwfile}").start()
    try:
        rec = Recorder(b.port, [T.emotion], username="serkit", password="s3cret")
        wav = SAMPLES / "02-happy-espeak.wav"
        args = ["run", "--source", f"file:{wav}", "--pace", "fast", "--broker", b.url, "--device-id", DEVICE]
        ok = run_cli(*args, "--username", "serkit", *EVERY_WINDOW, env={"SERKIT_PASSWORD": "s3cret"})
        assert ok.returncode == 0, ok.stderr.decode()
        rec.wait_for(lambda: len(rec.on(T.emotion)) >= 1)
        bad = run_cli(
            *args, "--username", "serkit", "--flush-timeout-s", "1", *EVERY_WINDOW, env={"SERKIT_PASSWORD": "wrong"}
        )
        err = bad.stderr.decode()
        assert bad.returncode == 1 and "Traceback" not in err
        last = err.strip().splitlines()[-1]
        assert last.startswith("serkit: error:") and "not delivered" in last
        assert "authentication failed (Not authorized): check username and the password" in last
        rec.close()
    finally:
        b.stop()


def _tls_files(d) -> dict:
    d.mkdir()

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    ssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=serkit test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    )
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr")
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    ssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    )
    return {k: d / f for k, f in (("ca", "ca.crt"), ("cert", "server.crt"), ("key", "server.key"))}


def test_tls_with_a_throwaway_ca(tmp_path):
    f = _tls_files(tmp_path / "tls")
    b = Mosquitto(tmp_path / "broker", extra=f"cafile {f['ca']}\ncertfile {f['cert']}\nkeyfile {f['key']}").start()
    try:
        rec = Recorder(b.port, [T.emotion], tls_ca=str(f["ca"]), host="localhost")
        wav = SAMPLES / "04-neutral-espeak.wav"
        args = ["run", "--source", f"file:{wav}", "--pace", "fast", "--device-id", DEVICE, *EVERY_WINDOW]
        ok = run_cli(*args, "--broker", f"mqtts://localhost:{b.port}", "--ca-file", str(f["ca"]))
        assert ok.returncode == 0, ok.stderr.decode()
        rec.wait_for(lambda: len(rec.on(T.emotion)) >= 1)
        # Without our CA the system's store does not trust the broker: nothing delivered, a clear error.
        bad = run_cli(*args, "--broker", f"mqtts://localhost:{b.port}", "--flush-timeout-s", "1")
        last = bad.stderr.decode().strip().splitlines()[-1]
        assert bad.returncode == 1 and "not delivered" in last and "TLS verification failed" in last
        # Plain MQTT to the TLS port: the broker hangs up without a word, and the agent says what that means.
        plain = run_cli(*args, "--broker", f"mqtt://localhost:{b.port}", "--flush-timeout-s", "1")
        assert plain.returncode == 1 and "a TLS port reached with mqtt://?" in plain.stderr.decode()
        missing = run_cli(*args, "--broker", f"mqtts://localhost:{b.port}", "--ca-file", str(tmp_path / "nope.crt"))
        assert missing.returncode == 1 and "ca_file" in missing.stderr.decode()
        assert "Traceback" not in missing.stderr.decode()
        rec.close()
    finally:
        b.stop()


def test_demo_against_a_given_broker(broker):
    proc = run_cli("demo", "--broker", broker.url, "--pace", "fast", "--http", "", timeout=120)
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode()
    assert "homeassistant/sensor/serkit_demo/emotion/config" in out
    assert "serkit/demo/emotion  {" in out and "serkit/demo/availability  online" in out
    assert "== per clip" in out
