"""The agent as a service: it stops when told, whatever it waits on, and it accounts for every state."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import numpy as np
from brokers import Mosquitto, Recorder, free_port
from conftest import ROOT, run_cli

from serkit.edge.audio import read_wav, write_wav

SAMPLES = ROOT / "edge" / "samples"
EVERY_WINDOW = ["--no-gate", "--min-confidence", "0", "--state-interval-s", "0"]


def _agent(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "serkit", "run", "--device-id", "hall", "--log-level", "info", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )


def _wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 20) -> None:
    """Read stderr until a line holds `needle` (the agent is then at that point)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline().decode()
        if needle in line:
            return
        assert line or proc.poll() is None, "the agent exited early"
    raise AssertionError(f"no line with {needle!r}")


def _long_wav(path, seconds: float):
    x = read_wav(SAMPLES / "01-angry-espeak.wav", 16000)[0]
    write_wav(path, np.resize(x, int(seconds * 16000)), 16000)
    return path


def test_sigterm_stops_it_within_a_second_while_stdin_has_no_data():
    proc = _agent("--source", "-", "--broker", "none")  # stdin open, nothing written: the read would block
    try:
        _wait_for_line(proc, "listening")
        time.sleep(0.5)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 1.5  # a bound on stopping, not a speed figure: it used to take 38 s
    finally:
        proc.kill()


def test_sigint_stops_a_file_paced_in_real_time_within_a_second(tmp_path):
    proc = _agent("--source", f"file:{_long_wav(tmp_path / 'long.wav', 120)}", "--broker", "none")
    try:
        _wait_for_line(proc, "listening")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 1.5
    finally:
        proc.kill()


def test_a_second_signal_ends_the_wait_for_the_queue_at_once(tmp_path):
    port = free_port()  # nothing listens there: every state stays queued
    wav = _long_wav(tmp_path / "long.wav", 30)
    proc = _agent("--source", f"file:{wav}", "--pace", "fast", "--broker", f"mqtt://127.0.0.1:{port}",
                  "--flush-timeout-s", "60", *EVERY_WINDOW)  # fmt: skip
    try:
        _wait_for_line(proc, "listening")
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _wait_for_line(proc, "SIGTERM: stopping")
        time.sleep(0.3)
        assert proc.poll() is None  # waiting for the broker, up to flush_timeout_s
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 1.5
        assert "again: not waiting for the queue to drain" in proc.stderr.read().decode()
    finally:
        proc.kill()


def test_with_the_broker_away_the_exit_counts_every_lost_state(tmp_path):
    port = free_port()
    wav = SAMPLES / "03-sad-espeak.wav"
    args = ["run", "--source", f"file:{wav}", "--pace", "fast", "--broker", f"mqtt://127.0.0.1:{port}"]
    proc = run_cli(*args, "--queue-size", "5", "--flush-timeout-s", "1", "--device-id", "hall", *EVERY_WINDOW)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    found = re.search(
        r"serkit: error: (\d+) of (\d+) states were not delivered \((\d+) dropped by the queue bound\)", last
    )
    assert found, last
    lost, produced, dropped = map(int, found.groups())
    assert produced > 5 and lost == produced and dropped == produced - 5  # five waited in the queue to the end


def test_a_file_at_full_speed_waits_for_a_slow_broker_instead_of_dropping(tmp_path):
    broker = Mosquitto(tmp_path / "mq").start()
    rec = Recorder(broker.port, ["serkit/hall/emotion", "serkit/hall/stats"])
    try:
        wav = _long_wav(tmp_path / "long.wav", 60)
        proc = run_cli("run", "--source", f"file:{wav}", "--pace", "fast", "--broker", broker.url, "--device-id",
                       "hall", "--raw", "--queue-size", "5", "--stats-interval-s", "3600", *EVERY_WINDOW)  # fmt: skip
        assert proc.returncode == 0, proc.stderr.decode()
        rec.wait_for(lambda: rec.on("serkit/hall/stats"))
        final = rec.json_on("serkit/hall/stats")[-1]
        assert final["dropped"] == 0 and final["produced"] == final["delivered"] == final["states"] > 100
        rec.wait_for(lambda: len(rec.on("serkit/hall/emotion")) == final["produced"])
    finally:
        rec.close()
        broker.stop()


def test_stdin_that_ends_oddly_or_empty_is_one_line():
    odd = run_cli("run", "--source", "-", "--broker", "none", stdin=b"\x00\x01" * 8000 + b"\x07")
    assert odd.returncode == 1
    assert odd.stderr.decode().strip().splitlines()[-1] == (
        "serkit: error: stdin: the stream ended with an odd byte after 16000 bytes (half a 16-bit sample): "
        "not S16_LE PCM, or cut short"
    )
    empty = run_cli("run", "--source", "-", "--broker", "none", stdin=b"")
    assert empty.returncode == 1 and "Traceback" not in empty.stderr.decode()
    # The start line comes first: a stream's end is only known once it has started.
    last = empty.stderr.decode().strip().splitlines()[-1]
    assert last == "serkit: error: stdin: no audio arrived (expected raw S16_LE mono PCM)"


# -- bad input: one line naming what is wrong, a non-zero exit, no traceback, no hang ----------------------
def _fifo(tmp_path):
    import os

    path = tmp_path / "pipe.wav"
    os.mkfifo(path)
    return str(path)


def _tflite_with_output(tmp_path, name: str):
    """A valid TFLite model made by the real converter (tests/data/, from a tf.function returning zeros of that
    shape, input (1, 300, 40)), beside a copy of the shipped spec."""
    import shutil

    from serkit.edge.agent import default_model_path
    from serkit.edge.spec import spec_path_for

    model = tmp_path / name
    shutil.copyfile(ROOT / "tests" / "data" / name, model)
    shutil.copyfile(spec_path_for(default_model_path()), model.with_suffix(".json"))
    return str(model)


def _one_ms_wav(tmp_path):
    path = tmp_path / "blip.wav"
    write_wav(path, np.full(16, 0.3, np.float32), 16000)
    return f"file:{path}"


def _toml(tmp_path, text: str) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return str(path)


WAV = str(SAMPLES / "01-angry-espeak.wav")
BAD_INPUTS = {
    "FIFO as the clip of predict": (lambda d: ["predict", _fifo(d)], "not a regular file"),
    "FIFO as the file source": (lambda d: ["run", "--source", f"file:{_fifo(d)}", "--broker", "none"],
                                "not a regular file"),
    "/dev/zero as the file source": (lambda d: ["run", "--source", "file:/dev/zero", "--broker", "none"],
                                     "/dev/zero: is not a regular file"),
    "a model whose output is (1, 299, 8)": (
        lambda d: ["run", "--model", _tflite_with_output(d, "output-1x299x8.tflite"), "--source", f"file:{WAV}", "--broker", "none"],
        "output shape (1, 299, 8)"),
    "an unclosed IPv6 bracket": (lambda d: ["run", "--broker", "mqtt://[::1"], "'broker' must look like"),
    "a stats interval past any timer": (lambda d: ["run", "--stats-interval-s", "1e10"], "'stats_interval_s' must be between"),
    "credentials in the broker URL": (lambda d: ["run", "--broker", "mqtt://user:pw@host", "--print-config"],
                                      "credentials in the URL are not used"),
    "port 0": (lambda d: ["run", "--broker", "mqtt://h:0"], "port 0"),
    "$SYS as the topic prefix": (lambda d: ["run", "--topic-prefix", "$SYS/serkit"], "may not start with '$'"),
    "$share as the topic prefix": (lambda d: ["run", "--topic-prefix", "$share/g"], "may not start with '$'"),
    "a 1 ms clip": (lambda d: ["run", "--source", _one_ms_wav(d), "--broker", "none"], "too short to classify"),
    "raw = \"yes\" in TOML": (lambda d: ["run", "--config", _toml(d, 'raw = "yes"\n')], "'raw' must be true or false"),
    "a space in the device id": (lambda d: ["run", "--device-id", "hall way"], "letters, digits, _ and -"),
}  # fmt: skip


@__import__("pytest").mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_a_non_zero_exit(tmp_path, case):
    make_args, needle = BAD_INPUTS[case]
    proc = run_cli(*make_args(tmp_path), timeout=30)  # a hang fails here
    err = proc.stderr.decode()
    assert proc.returncode != 0 and "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("serkit: error: ") and needle in lines[0], err
    assert "pw@" not in err and ":pw" not in proc.stdout.decode()  # a password in a URL is never echoed


def test_underscores_are_allowed_in_a_device_id_as_the_message_says():
    proc = run_cli("run", "--device-id", "_hall_1", "--print-config")
    assert proc.returncode == 0 and 'device_id = "_hall_1"' in proc.stdout.decode()


def test_connection_problems_are_said_in_words_once_each():
    wav = SAMPLES / "01-angry-espeak.wav"
    args = ["run", "--source", f"file:{wav}", "--pace", "fast", "--flush-timeout-s", "1", *EVERY_WINDOW]
    cmd = [sys.executable, "-m", "serkit", *args]
    both = [  # side by side: each waits out its flush timeout
        subprocess.Popen([*cmd, "--broker", broker], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, cwd=ROOT)
        for broker in ("mqtt://nonexistent.invalid", f"mqtt://127.0.0.1:{free_port()}")
    ]
    (dns_rc, dns_err), (refused_rc, refused_err) = [(p.wait(60), p.stderr.read().decode()) for p in both]
    assert dns_rc == 1 and "cannot resolve the host name 'nonexistent.invalid' (DNS:" in dns_err
    assert dns_err.count("cannot connect to") == 1  # retried every second, said once
    assert refused_rc == 1 and "connection refused at 127.0.0.1:" in refused_err.strip().splitlines()[-1]


def test_the_default_log_says_what_the_agent_does_and_quiet_prints_only_states(tmp_path):
    broker = Mosquitto(tmp_path / "mq").start()
    try:
        wav = SAMPLES / "01-angry-espeak.wav"
        args = ["run", "--source", f"file:{wav}", "--pace", "fast", "--broker", broker.url, "--device-id", "hall"]
        talk = run_cli(*args)
        lines = talk.stderr.decode().splitlines()
        assert talk.returncode == 0 and lines[0].startswith("serkit: INFO: listening: model serkit-ravdess8-int8 (")
        assert f"broker {broker.url}, device hall, discovery on" in lines[0] and "at 16000 Hz" in lines[0]
        assert f"serkit: INFO: connected to {broker.url}" in lines
        assert re.search(r"^serkit: INFO: hall: \w+ \d+%$", "\n".join(lines), re.M)
        quiet = run_cli(*args, "--quiet")
        assert quiet.returncode == 0 and quiet.stderr == b""
        assert re.fullmatch(r"(hall: \w+ \d+%\n)+", quiet.stdout.decode())
    finally:
        broker.stop()
