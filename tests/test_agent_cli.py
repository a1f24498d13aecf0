"""`serkit run` / `devices` / `demo` as a user meets them: configuration, clear errors, the microphone path
through a virtual ALSA capture device, and the MQTT contract frozen."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, assert_one_line_error, cli, pcm16, run_cli

from serkit.edge.audio import read_wav
from serkit.edge.config import KEYS, AgentConfig, build_config, load_toml
from serkit.edge.decision import State
from serkit.edge.errors import SerkitError
from serkit.edge.mqtt_payloads import Topics, discovery_messages, raw_payload, state_payload

SAMPLES = ROOT / "edge" / "samples"
WAV = SAMPLES / "01-angry-espeak.wav"
MODEL = ROOT / "models" / "serkit-ravdess8-int8.tflite"


# -- configuration ---------------------------------------------------------------------------------------
def test_toml_then_environment_then_flags(tmp_path):
    cfg = tmp_path / "pi4.toml"
    cfg.write_text('threads = 2\nhop_s = 1.0\ngate_dbfs = -50\nbroker = "mqtt://pi.local"\npassword = "fromfile"\n')
    c = build_config(str(cfg), {"threads": "3"}, environ={"SERKIT_PASSWORD": "fromenv", "SERKIT_HOP_S": "0.75"})
    assert (c.threads, c.hop_s, c.gate_dbfs, c.broker, c.password) == (3, 0.75, -50.0, "mqtt://pi.local", "fromenv")


def test_print_config_masks_secrets_and_reads_back(tmp_path):
    cfg = tmp_path / "a.toml"
    cfg.write_text('username = "u"\npassword = "hunter2"\nqueue_size = 50\n')
    proc = cli("run", "--config", str(cfg), "--print-config", "--raw")
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode()
    assert "hunter2" not in out and 'password = "********"' in out
    assert "queue_size = 50" in out and "raw = true" in out
    printed = tmp_path / "printed.toml"
    printed.write_text(out)
    assert load_toml(printed)["queue_size"] == 50


def test_no_repr_shows_a_secret():
    config = AgentConfig(username="u", password="hunter2", http_token="t0ken")
    for shown in (repr(config), str(config), repr(config.credentials())):
        assert "hunter2" not in shown and "t0ken" not in shown and "'u'" in shown


@pytest.mark.parametrize(
    "toml, needles",
    [
        ("treads = 2\n", ["unknown key 'treads'"]),
        ("threads = 0\n", ["'threads'", "between 1 and 16"]),
        ('threads = "two"\n', ["'threads'", "integer"]),
        ('pace = "slow"\n', ["'pace'", "realtime, fast"]),
        ("gate = 1\n", ["'gate'", "true or false"]),
        ("[mqtt]\nbroker = 'x'\n", ["[mqtt]", "plain 'key = value'"]),
        ("threads = \n", ["not valid TOML"]),
        ('device_id = "living room"\n', ["'device_id'", "letters, digits"]),
        ('broker = "http://x"\n', ["'broker'", "mqtt://HOST"]),
        ('source = "microphone"\n', ["'source'", "mic:NAME"]),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path, toml, needles):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    # Flags override the file: the broker and source cases go without them (and so run nothing when accepted).
    safe = [] if "broker" in toml or "source" in toml else ["--broker", "none", "--source", f"file:{WAV}"]
    assert_one_line_error(cli("run", "--config", str(cfg), *safe), *needles)


def test_bad_flag_values_and_missing_config_file(tmp_path):
    assert_one_line_error(cli("run", "--threads", "many"), "--threads", "integer")
    assert_one_line_error(cli("run", "--smoothing", "2"), "'smoothing'", "between")
    assert_one_line_error(cli("run", "--config", str(tmp_path / "none.toml")), "no such config file")
    with pytest.raises(SerkitError, match="SERKIT_QUEUE_SIZE"):
        build_config(None, {}, environ={"SERKIT_QUEUE_SIZE": "lots"})


# -- model and source errors, before any audio is opened ----------------------------------------------------
def test_bad_models_are_refused_in_one_line(tmp_path):
    common = ["--source", f"file:{WAV}", "--broker", "none"]
    assert_one_line_error(cli("run", "--model", str(tmp_path / "x.tflite"), *common), "no such file")
    assert_one_line_error(cli("run", "--model", str(tmp_path), *common), "is a folder")
    assert_one_line_error(cli("run", "--model", str(WAV), *common), "not a .tflite model")
    lonely = tmp_path / "lonely.tflite"
    shutil.copy(MODEL, lonely)
    assert_one_line_error(cli("run", "--model", str(lonely), *common), "no spec beside it", "lonely.json")
    (tmp_path / "lonely.json").write_text("{not json")
    assert_one_line_error(cli("run", "--model", str(lonely), *common), "lonely.json")
    spec = json.loads(MODEL.with_suffix(".json").read_text())
    spec["labels"] = spec["labels"][:3]
    (tmp_path / "lonely.json").write_text(json.dumps(spec))
    assert_one_line_error(cli("run", "--model", str(lonely), *common), "lonely")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer" * 10)
    shutil.copy(MODEL.with_suffix(".json"), tmp_path / "junk.json")
    assert_one_line_error(cli("run", "--model", str(junk), *common), "junk.tflite", "cannot load")


def test_bad_sources_are_one_line_errors(tmp_path):
    assert_one_line_error(cli("run", "--source", f"file:{tmp_path / 'no.wav'}", "--broker", "none"), "no such file")
    (tmp_path / "bad.wav").write_bytes(b"RIFF0000WAVEjunk")
    assert_one_line_error(cli("run", "--source", f"file:{tmp_path / 'bad.wav'}", "--broker", "none"), "bad.wav")


# -- the microphone path, through a virtual ALSA capture device ------------------------------------------
def _alsa_config(tmp_path, samples: bytes) -> dict:
    """An ALSA `file` plugin over the `null` device that plays raw PCM as if it were a microphone."""
    pytest.importorskip("pyaudio", reason="the 'mic' extra (pyaudio) is not installed")
    raw = tmp_path / "capture.raw"
    raw.write_bytes(samples)
    conf = tmp_path / "xdg" / "alsa" / "asoundrc"
    conf.parent.mkdir(parents=True)
    conf.write_text(
        'pcm.serkit_test {\n  type file\n  slave.pcm "null"\n  file "/dev/null"\n'
        f'  infile "{raw}"\n  format "raw"\n  hint {{ show on description "serkit test capture" }}\n}}\n'
    )
    return {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}


@pytest.fixture
def alsa_capture(tmp_path):
    x = read_wav(WAV, 16000)[0]
    # The WAV's own 16-bit samples, so the microphone path can be compared with the file path exactly.
    return _alsa_config(tmp_path, pcm16(x))


def test_devices_lists_the_virtual_microphone(alsa_capture):
    proc = run_cli("devices", "--json", env=alsa_capture)
    assert proc.returncode == 0, proc.stderr.decode()
    devices = json.loads(proc.stdout)
    dev = next(d for d in devices if d["name"] == "serkit_test")
    assert 16000 in dev["rates"] and dev["channels"] >= 1
    table = run_cli("devices", env=alsa_capture).stdout.decode()
    assert "serkit_test" in table and "16000" in table


def test_microphone_source_gives_what_the_file_source_gives(alsa_capture):
    common = ["--broker", "none", "--raw", "--no-gate", "--stats-interval-s", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "serkit", "run", "--source", "mic:serkit_test", *common],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, **alsa_capture},
    )
    # The null device runs faster than real time; a few seconds give many windows.
    lines = []
    deadline = time.monotonic() + 60
    while len(lines) < 3 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if b'"topic": "raw"' in line:
            lines.append(json.loads(line))
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    assert proc.returncode == 0, proc.stderr.read().decode()
    ref = run_cli("run", "--source", f"file:{WAV}", "--pace", "fast", *common)
    want = [json.loads(x) for x in ref.stdout.decode().splitlines() if '"topic": "raw"' in x]
    assert len(lines) == 3 and len(want) >= 3
    for got, exp in zip(lines, want[:3], strict=True):
        assert got["seq"] == exp["seq"]
        assert max(abs(got["probabilities"][k] - exp["probabilities"][k]) for k in exp["probabilities"]) <= 1e-6


def test_watchdog_reports_a_microphone_that_delivers_only_zeros(tmp_path):
    env = _alsa_config(tmp_path, bytes(16000 * 2 * 2))  # 2 s of digital silence, then the null device's zeros
    proc = subprocess.Popen(
        [sys.executable, "-m", "serkit", "run", "--source", "mic:serkit_test", "--broker", "none", "--watchdog-s", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, **env},
    )
    err = b""
    deadline = time.monotonic() + 30
    while b"only zeros" not in err and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        err += line
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    assert b"has delivered only zeros" in err and b"serkit_test" in err


def test_missing_microphone_is_a_clear_error(alsa_capture):
    assert_one_line_error(
        run_cli("run", "--source", "mic:no-such-mic", "--broker", "none", env=alsa_capture),
        "no input device matches 'no-such-mic'",
        "serkit_test",
    )


# -- the MQTT contract: topics and payload keys are an API; changing them breaks users' automations ----------
def test_mqtt_contract_is_frozen():
    t = Topics("serkit", "kitchen")
    assert (t.emotion, t.availability, t.raw, t.stats, t.ha_status) == (
        "serkit/kitchen/emotion",
        "serkit/kitchen/availability",
        "serkit/kitchen/raw",
        "serkit/kitchen/stats",
        "homeassistant/status",
    )
    s = State("happy", 0.8, {"happy": 0.8, "sad": 0.2}, 4, 2.0, 5.0, True)
    assert sorted(state_payload(s, "kitchen", 3.0, "2026-01-01T00:00:00.000Z")) == sorted(
        ["emotion", "confidence", "probabilities", "timestamp", "window_s", "device", "seq", "offset_s"]
    )
    assert sorted(raw_payload(1, 0.5, True, -20.0, {"a": 1.0}, "kitchen", "ts")) == sorted(
        ["seq", "offset_s", "speech", "level_dbfs", "emotion", "probabilities", "timestamp", "device"]
    )
    msgs = dict(discovery_messages(t, ("happy", "sad"), "m"))
    assert sorted(msgs) == [
        "homeassistant/binary_sensor/serkit_kitchen/connectivity/config",
        "homeassistant/sensor/serkit_kitchen/confidence/config",
        "homeassistant/sensor/serkit_kitchen/emotion/config",
    ]
    # Audio never leaves the device: no payload key can carry samples or features.
    assert not any(k in json.dumps(msgs) for k in ("samples", "mfcc", 'features"'))


GOLDEN = ROOT / "tests" / "golden"


def _golden_payloads() -> dict[str, dict]:
    """Every payload the agent publishes, built by the same pure functions the agent uses."""
    t = Topics("serkit", "kitchen")
    labels = ("neutral", "happy", "sad", "angry")
    s = State("happy", 0.8, {"neutral": 0.1, "happy": 0.8, "sad": 0.05, "angry": 0.05}, 4, 2.0, 5.0, True)
    silence = State("silence", 0.0, {}, 9, 4.5, 7.5, True)
    out = {
        "state.json": state_payload(s, "kitchen", 3.005, "2026-01-01T00:00:00.000Z"),
        "state-silence.json": state_payload(silence, "kitchen", 3.005, "2026-01-01T00:00:05.000Z"),
        "raw.json": raw_payload(1, 0.5, True, -20.0, {"neutral": 0.2, "happy": 0.8}, "kitchen", "2026-01-01T00:00:00Z"),
    }
    for topic, payload in discovery_messages(t, labels, "serkit-ravdess8-int8"):
        out[f"discovery-{topic.split('/')[1]}-{topic.split('/')[3]}.json"] = {"topic": topic, **payload}
    return out


@pytest.mark.parametrize("name", sorted(_golden_payloads()))
def test_payloads_match_their_golden_files_byte_for_byte(name):
    """The contract Home Assistant and automations depend on; SERKIT_UPDATE_GOLDEN=1 rewrites the files
    (then read the diff: a change here is a change for every user's automations)."""
    text = json.dumps(_golden_payloads()[name], indent=2, sort_keys=True) + "\n"
    path = GOLDEN / name
    if os.environ.get("SERKIT_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.read_text() == text


def test_the_golden_discovery_says_what_home_assistant_needs():
    emo = json.loads((GOLDEN / "discovery-sensor-emotion.json").read_text())
    conf = json.loads((GOLDEN / "discovery-sensor-confidence.json").read_text())
    conn = json.loads((GOLDEN / "discovery-binary_sensor-connectivity.json").read_text())
    assert emo["options"] == ["neutral", "happy", "sad", "angry", "silence"]
    # The same entity ids on old and new Home Assistant.
    for payload, entity in ((emo, "sensor.serkit_kitchen_emotion"), (conf, "sensor.serkit_kitchen_confidence"),
                            (conn, "binary_sensor.serkit_kitchen_connectivity")):  # fmt: skip
        assert payload["default_entity_id"] == entity and payload["object_id"] == entity.split(".")[1]
        assert payload["name"] == payload["name"].lower()
    # Connectivity can be off: its availability is not its own state topic.
    assert "availability_topic" not in conn and conn["state_topic"] == "serkit/kitchen/availability"
    assert "'None' if value_json.emotion == 'silence'" in conf["value_template"]


def test_default_device_id_is_the_cleaned_host_name():
    c = AgentConfig()
    assert c.effective_device_id() and all(ch.isalnum() or ch in "_-" for ch in c.effective_device_id())


def test_demo_with_its_embedded_broker():
    pytest.importorskip("amqtt", reason="the 'demo' extra (amqtt) is not installed")
    proc = run_cli("demo", "--pace", "fast", "--http", "0", timeout=180)
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode()
    assert "serkit/demo/availability  online" in out and "serkit/demo/emotion  {" in out
    assert out.count("wav:") == len(list(SAMPLES.glob("*.wav")))
    # It says plainly what the clips are, and where the live page is.
    assert "synthetic espeak-ng voices with no acted emotion" in out and "not how accurate" in out
    assert re.search(r"^serkit: live page on http://127\.0\.0\.1:\d+/$", proc.stderr.decode(), re.M)


class _UnpluggablePortAudio:
    """PortAudio as it behaves when a USB microphone is unplugged and comes back under another index.

    Unplugging cannot happen on this machine, so this stands in for the hardware event only; MicSource's
    own code (device lookup, rate choice, reopen, resampling) runs for real.
    """

    def __init__(self, world: dict) -> None:
        self.world = world

    def get_device_count(self) -> int:
        return self.world["index"] + 1

    def get_device_info_by_index(self, i: int) -> dict:
        if i == self.world["index"]:
            return {"index": i, "name": "USB PnP Mic", "maxInputChannels": 1, "defaultSampleRate": 48000.0}
        return {"index": i, "name": "HDMI", "maxInputChannels": 0, "defaultSampleRate": 48000.0}

    def get_default_input_device_info(self) -> dict:
        return self.get_device_info_by_index(self.world["index"])

    def is_format_supported(self, rate: int, input_device: int, **kw: object) -> bool:
        return rate == 48000  # like many USB mics: no 16 kHz, so serkit resamples

    def open(self, rate: int, input_device_index: int, **kw: object) -> object:
        if input_device_index != self.world["index"] or self.world["unplugged"]:
            raise OSError("[Errno -9996] Invalid input device (no default output device)")
        self.world["opened"].append((input_device_index, rate))
        world = self.world

        class Stream:
            reads = 0

            def read(self, n: int, exception_on_overflow: bool = True) -> bytes:
                Stream.reads += 1
                if len(world["opened"]) == 1 and Stream.reads > 5:  # unplugged mid-stream, back at index 3
                    world["index"] = 3
                    raise OSError("[Errno -9999] Unanticipated host error")
                return np.full(n, 1000, "<i2").tobytes()

            def close(self) -> None:
                pass

        return Stream()

    def terminate(self) -> None:
        pass


def test_microphone_that_disappears_is_found_again_and_reopened(caplog):
    pytest.importorskip("pyaudio", reason="the 'mic' extra (pyaudio) is not installed")
    import threading

    from serkit.edge.sources import MicSource

    world = {"index": 1, "unplugged": False, "opened": []}
    mic = MicSource("USB", 16000, chunk_s=0.1, watchdog_s=0, pyaudio_factory=lambda: _UnpluggablePortAudio(world))
    assert mic.device["index"] == 1 and mic.device["rates"] == [48000]
    stop = threading.Event()
    got = 0
    for chunk in mic.chunks(stop):
        got += len(chunk)
        if len(world["opened"]) == 2 and got > 16000:
            stop.set()
    assert world["opened"] == [(1, 48000), (3, 48000)]  # reopened under its new index, at its native rate
    assert mic.device["index"] == 3 and got > 16000
    assert any("stopped delivering audio" in r.message for r in caplog.records)


def test_demo_listens_to_a_microphone_with_its_page_until_ctrl_c(alsa_capture):
    pytest.importorskip("amqtt", reason="the 'demo' extra (amqtt) is not installed")
    proc = subprocess.Popen(
        [sys.executable, "-m", "serkit", "demo", "--source", "mic:serkit_test", "--http", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, **alsa_capture},
    )
    try:
        seen = []
        deadline = time.monotonic() + 60
        while not any("/emotion  {" in line for line in seen) and time.monotonic() < deadline:
            line = proc.stdout.readline().decode()
            if not line:
                break
            seen.append(line)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        seen.append(out.decode())
    finally:
        proc.kill()
    text = "".join(seen)
    assert proc.returncode == 0, err.decode()
    assert "on mic:serkit_test" in text and "== listening until Ctrl-C" in text
    assert "serkit/demo/emotion  {" in text and "synthetic" not in text  # a real microphone: no such note
    assert re.search(r"^serkit: live page on http://127\.0\.0\.1:\d+/$", err.decode(), re.M)


def test_docs_agent_lists_every_config_key_with_its_default():
    text = (ROOT / "docs" / "agent.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z_0-9]+)` \| ([^|]+) \|", text, flags=re.M))
    assert set(rows) == set(KEYS) == set(AgentConfig._fields)
    for name, key in KEYS.items():
        d = key.default
        shown = "(empty)" if d == "" else (str(d).lower() if isinstance(d, bool) else str(d))
        assert rows[name].strip() == shown, name
