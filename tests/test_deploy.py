"""`serkit deploy`: the bundle, its install script in a fresh virtualenv, and the whole SSH path against a
real sshd on a loopback port (full install, --model-only, and its rollback), with a real Mosquitto broker.

systemd cannot run in this container, so the SSH tests put tests/systemd_standin.py on the remote PATH as
`systemctl`/`journalctl`: it runs the real unit file's ExecStart and restarts it on failure like systemd."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import systemd_standin
from brokers import Mosquitto, Recorder, free_port, require_program
from conftest import ROOT, assert_error_last_line, assert_one_line_error, cli, pcm16, run_cli, speechlike, wav_bytes

from serkit.deploy.bundle import CURRENT_MODEL, merge_config, model_id, write_bundle
from serkit.deploy.remote import RemoteFacts, check_facts, parse_probe
from serkit.edge.config import load_toml, toml_value
from serkit.edge.errors import SerkitError

MODEL = ROOT / "models" / "serkit-ravdess8-int8.tflite"
SAMPLE = ROOT / "edge" / "samples" / "01-angry-espeak.wav"
TRAINING_ONLY = ("tensorflow", "tensorflow-cpu", "keras", "matplotlib", "scipy", "librosa", "tf-keras")


def _user_config(tmp_path: Path, broker: str, source: str, **extra: str | float) -> Path:
    cfg = tmp_path / "my.toml"
    lines = [f'broker = "{broker}"', f'source = "{source}"', 'device_id = "testpi"', "threads = 2"]
    lines += [f"{k} = {toml_value(v)}" for k, v in extra.items()]
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def _long_wav(path: Path, seconds: float = 240.0) -> Path:
    """Speech bursts between pauses, long enough that a realtime-paced agent stays up through a test."""
    rate = 16000
    burst = speechlike(2.0, rate)
    gap = np.zeros(rate, dtype=np.float32)
    x = np.tile(np.concatenate([burst, gap]), int(seconds / 3) + 1)
    path.write_bytes(wav_bytes(pcm16(x), rate=rate))
    return path


# -- the bundle ------------------------------------------------------------------------------------------
def test_merge_board_and_user_config_splits_secrets(tmp_path):
    cfg = _user_config(tmp_path, "mqtt://ha.local", "mic:USB", password="s3cret", username="pi", hop_s=0.75)
    merged = merge_config("pi4", str(cfg))
    board = load_toml(ROOT / "firmware_configs" / "boards" / "pi4.toml")
    assert merged.values["queue_size"] == board["queue_size"]  # from the board
    assert merged.values["hop_s"] == 0.75 and merged.values["threads"] == 2  # the user's keys win
    assert merged.values["model"] == CURRENT_MODEL
    assert "password" not in merged.values and merged.secrets == {"password": "s3cret"}


def test_bundle_contents(tmp_path):
    cfg = _user_config(tmp_path, "mqtt://ha.local", "mic", password="pa ss$word")
    b = write_bundle(tmp_path / "b", MODEL, merge_config("pizero2w", str(cfg)), "pizero2w")
    d = b.path
    assert set(b.files) >= {
        "install.sh",
        "bundle.env",
        "manifest.json",
        "serkit.toml",
        "serkit.env",
        "serkit.service",
        "model/model.tflite",
        "model/model.json",
        b.wheel,
    }
    assert (d / "model" / "model.tflite").read_bytes() == MODEL.read_bytes()
    assert os.access(d / "install.sh", os.X_OK)
    assert stat.S_IMODE((d / "serkit.env").stat().st_mode) == 0o600
    toml = (d / "serkit.toml").read_text()
    assert "pa ss$word" not in toml and 'device_id = "testpi"' in toml and "threads = 2" in toml
    assert "queue_size = 500" in toml  # the Zero 2 W's own bound
    # The secret reaches the agent through the EnvironmentFile, exactly as written.
    out = subprocess.run(["bash", "-c", f'set -a; . {d}/serkit.env; echo "$SERKIT_PASSWORD"'], capture_output=True)
    assert out.stdout.decode().strip() == "pa ss$word"
    env = dict(line.split("=", 1) for line in (d / "bundle.env").read_text().split())
    assert env["EXTRAS"] == "'mic'" and env["MODEL_ID"] == f"'{model_id(MODEL)}'"
    manifest = json.loads((d / "manifest.json").read_text())
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((d / name).read_bytes()).hexdigest() == digest
    # The wheel: edge code and the int8 model, no training artifacts, training libraries only behind [train].
    with zipfile.ZipFile(d / b.wheel) as whl:
        names = whl.namelist()
        meta = whl.read("serkit-0.1.0.dist-info/METADATA").decode()
        record = whl.read("serkit-0.1.0.dist-info/RECORD").decode()
    assert "serkit/edge/agent.py" in names and "serkit/models/serkit-ravdess8-int8.tflite" in names
    assert {n.split("/")[0] for n in names} == {"serkit", "serkit-0.1.0.dist-info"}  # one import name
    assert "constraints/edge-aarch64.txt" in b.files and "constraints/edge-armv7l.txt" in b.files
    assert not any(n.endswith((".keras", ".pyc", ".png")) for n in names)
    requires = [ln.split(":", 1)[1].strip() for ln in meta.splitlines() if ln.startswith("Requires-Dist:")]
    base = [r for r in requires if "extra ==" not in r]
    assert any(r.startswith("numpy") for r in base) and any(r.startswith("paho-mqtt") for r in base)
    assert not any(r.lower().startswith(TRAINING_ONLY) for r in base), base
    assert len(record.splitlines()) == len(names)


def test_model_only_bundle_has_no_agent(tmp_path):
    b = write_bundle(tmp_path / "b", MODEL, None, None)
    assert set(b.files) == {"install.sh", "bundle.env", "manifest.json", "model/model.tflite", "model/model.json"}


@pytest.mark.slow
def test_install_script_into_fresh_venv_runs_the_agent(tmp_path):
    broker = Mosquitto(tmp_path / "mq").start()
    try:
        cfg = _user_config(tmp_path, broker.url, f"file:{SAMPLE}", pace="fast")
        b = write_bundle(tmp_path / "bundle", MODEL, merge_config("pi5", str(cfg)), "pi5")
        root = tmp_path / "pi"
        done = subprocess.run(
            ["bash", str(b.path / "install.sh"), "--root", str(root), "--no-service"], capture_output=True, timeout=600
        )
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        venv = root / "opt" / "serkit" / "venv"
        listed = subprocess.run([venv / "bin" / "python", "-m", "pip", "list", "--format=json"], capture_output=True)
        installed = {p["name"].lower() for p in json.loads(listed.stdout)}
        assert {"serkit", "numpy", "paho-mqtt", "ai-edge-litert"} <= installed
        assert not installed & set(TRAINING_ONLY), installed & set(TRAINING_ONLY)
        assert "pyaudio" not in installed  # a file source needs no microphone extra
        current = root / "opt" / "serkit" / "models" / "current"
        assert os.readlink(current) == model_id(MODEL)
        config = root / "etc" / "serkit" / "serkit.toml"
        assert f'model = "{current}/model.tflite"' in config.read_text()

        rec = Recorder(broker.port, ["serkit/testpi/#"])
        run = subprocess.run([venv / "bin" / "serkit", "run", "--config", config], capture_output=True, timeout=120)
        assert run.returncode == 0, run.stderr.decode()
        rec.wait_for(lambda: len(rec.on("serkit/testpi/emotion")) >= 1)
        state = rec.json_on("serkit/testpi/emotion")[0]
        assert (
            state["device"] == "testpi"
            and state["emotion"] in json.loads((current / "model.json").read_text())["labels"]
        )
        rec.close()
    finally:
        broker.stop()


# -- checks before anything is copied ---------------------------------------------------------------------
def test_probe_parsing_and_refusals():
    facts = parse_probe("arch=aarch64\nuid=1000\npython=3.11\nsudo=yes\nsystemd=running\ninstalled=\n")
    assert facts == RemoteFacts("aarch64", False, True, (3, 11), "running", "")
    assert facts.runtime == "ai-edge-litert"
    assert parse_probe("arch=armv7l\nuid=0\npython=3.11\n").runtime == "tflite-runtime with numpy<2"
    check_facts(facts, "pi@pi", "python3", False, "")
    with pytest.raises(SerkitError, match=r"Python 3\.10 is too old.*nothing was changed"):
        check_facts(parse_probe("arch=armv7l\nuid=0\npython=3.10\n"), "pi@pi", "python3", False, "")
    with pytest.raises(SerkitError, match="no Python at 'python3'"):
        check_facts(parse_probe("arch=armv7l\nuid=0\npython=none\n"), "pi@pi", "python3", False, "")
    with pytest.raises(SerkitError, match="passwordless sudo"):
        check_facts(parse_probe("uid=1000\npython=3.11\nsudo=no\n"), "pi@pi", "python3", False, "")
    with pytest.raises(SerkitError, match="not installed there"):
        check_facts(facts, "pi@pi", "python3", True, "")


def test_cli_refuses_bad_input_in_one_line(tmp_path):
    assert_one_line_error(cli("deploy", "--host", "pi@x", "--board", "pi9"), "unknown board 'pi9'", "pi4")
    assert_one_line_error(cli("deploy", "--board", "pi4"), "--host USER@HOST", "--bundle DIR")
    assert_one_line_error(cli("deploy", "--host", "pi@x"), "--board")
    missing = tmp_path / "nope.tflite"
    assert_one_line_error(cli("deploy", "--host", "pi@x", "--board", "pi4", "--model", str(missing)), str(missing))
    bad = tmp_path / "bad.toml"
    bad.write_text("queue_sise = 5\n")
    assert_one_line_error(cli("deploy", "--host", "pi@x", "--board", "pi4", "--config", str(bad)), "queue_sise")
    port = free_port()  # nothing listens there
    proc = cli("deploy", "--host", "root@127.0.0.1", "--port", str(port), "--board", "pi4")
    assert_error_last_line(proc, "cannot reach root@127.0.0.1", "nothing was changed")


def test_dry_run_prints_every_step_and_touches_nothing(tmp_path):
    port = free_port()  # unreachable: a dry run must not try
    proc = run_cli(
        "deploy", "--host", "pi@127.0.0.1", "--port", str(port), "--board", "pi4", "--dry-run", "--wait-s", "12"
    )
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode()
    for step in ("1. build the bundle", "2. check the Pi", "3. copy the bundle", "4. install", "5. verify"):
        assert step in out
    assert f"-p {port}" in out and "install.sh --wait 12" in out and "sudo -n" in out


def test_bundle_only_writes_the_folder(tmp_path):
    proc = run_cli("deploy", "--board", "pi3bplus", "--bundle", str(tmp_path / "sd"))
    assert proc.returncode == 0, proc.stderr.decode()
    assert (tmp_path / "sd" / "install.sh").exists() and "install.sh" in proc.stderr.decode()
    again = run_cli("deploy", "--board", "pi3bplus", "--bundle", str(tmp_path / "sd"))
    assert_one_line_error(again, "not an empty folder")


# -- the SSH path ----------------------------------------------------------------------------------------
class Pi:
    """This machine seen through an sshd on a loopback port, installing under a folder of its own."""

    def __init__(self, tmp: Path) -> None:
        exe = require_program("sshd", "SERKIT_REQUIRE_SSHD", "openssh-server")
        self.dir = tmp
        self.root = tmp / "pi"
        self.port = free_port()
        key = tmp / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp / "host_key"], check=True)
        (tmp / "authorized_keys").write_text((tmp / "id_ed25519.pub").read_text())
        bin_dir = tmp / "bin"
        systemd_standin.install(bin_dir)
        self.state = tmp / "standin"
        path = f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        (tmp / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {tmp / 'host_key'}\n"
            f"AuthorizedKeysFile {tmp / 'authorized_keys'}\nPidFile {tmp / 'sshd.pid'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "PermitRootLogin prohibit-password\n"
            f"SetEnv PATH={path} SERKIT_STANDIN_DIR={self.state} "
            f"SERKIT_STANDIN_UNITS={self.root / 'etc' / 'systemd' / 'system'}\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True) if os.geteuid() == 0 else None
        self.log = open(tmp / "sshd.log", "ab")
        self.proc = subprocess.Popen([exe, "-D", "-e", "-f", tmp / "sshd_config"], stdout=self.log, stderr=self.log)
        self.user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True).stdout.decode().strip()
        self.ssh_args = [
            "--host",
            f"{self.user}@127.0.0.1",
            "--port",
            str(self.port),
            "--identity",
            str(key),
            "--ssh-option",
            f"UserKnownHostsFile={tmp / 'known_hosts'}",
            "--remote-root",
            str(self.root),
        ]
        deadline = time.monotonic() + 10
        while subprocess.run(["ssh-keyscan", "-p", str(self.port), "127.0.0.1"], capture_output=True).returncode:
            assert self.proc.poll() is None and time.monotonic() < deadline, (tmp / "sshd.log").read_text()
            time.sleep(0.2)

    @property
    def models(self) -> Path:
        return self.root / "opt" / "serkit" / "models"

    def current(self) -> str:
        return os.readlink(self.models / "current")

    def service(self) -> dict:
        return json.loads((self.state / "serkit.service.json").read_text())

    def deploy(self, *args: str, timeout: float = 600):
        return run_cli("deploy", *self.ssh_args, *args, timeout=timeout)

    def close(self) -> None:
        if self.state.exists():
            subprocess.run(
                [self.dir / "bin" / "systemctl", "stop", "serkit"],
                env={**os.environ, "SERKIT_STANDIN_DIR": str(self.state)},
            )
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """A full deploy over SSH: the agent runs as the (stand-in) service on a long WAV, against a real broker."""
    tmp = tmp_path_factory.mktemp("deploy")
    broker = Mosquitto(tmp / "mq").start()
    pi = Pi(tmp)
    rec = Recorder(broker.port, ["serkit/testpi/#"])
    try:
        # min_confidence 0: states must flow whatever the shipped model makes of synthetic speech, whose
        # confidence sits below the spec's threshold; this test is about the deployment, not the model.
        wav = _long_wav(tmp / "hall.wav")
        cfg = _user_config(tmp, broker.url, f"file:{wav}", password="not-in-toml", min_confidence=0.0)
        proc = pi.deploy("--board", "pi4", "--config", str(cfg))
        yield pi, broker, rec, proc
    finally:
        rec.close()
        pi.close()
        broker.stop()


@pytest.mark.slow
def test_full_deploy_over_ssh_comes_up(deployed):
    pi, broker, rec, proc = deployed
    err = proc.stderr.decode()
    assert proc.returncode == 0, err[-4000:]
    assert "service active" in proc.stdout.decode()
    assert "[1/4] checking" in err and "runtime ai-edge-litert" in err and "online" in err
    assert pi.service()["state"] == "active" and pi.current() == model_id(MODEL)
    rec.wait_for(lambda: b"online" in rec.on("serkit/testpi/availability"))
    rec.wait_for(lambda: len(rec.on("serkit/testpi/emotion")) >= 1, timeout=30)
    etc = pi.root / "etc" / "serkit"
    assert "not-in-toml" not in (etc / "serkit.toml").read_text()
    assert stat.S_IMODE((etc / "serkit.env").stat().st_mode) == 0o600
    unit = (pi.root / "etc" / "systemd" / "system" / "serkit.service").read_text()
    assert f"ExecStart={pi.root}/opt/serkit/venv/bin/serkit run --config {etc}/serkit.toml" in unit
    assert not list(Path("/tmp").glob("serkit-deploy.*")), "the remote bundle folder was left behind"


@pytest.mark.slow
def test_model_only_flash_swaps_and_restarts(deployed, tmp_path):
    pi, broker, rec, _ = deployed
    renamed = tmp_path / "hall-model.tflite"  # same weights under a new name: a new model id
    shutil.copyfile(MODEL, renamed)
    shutil.copyfile(MODEL.with_suffix(".json"), renamed.with_suffix(".json"))
    before = pi.service()["pid"]
    proc = pi.deploy("--model-only", "--model", str(renamed))
    assert proc.returncode == 0, proc.stderr.decode()[-4000:]
    assert pi.current() == model_id(renamed) and pi.service()["state"] == "active"
    assert pi.service()["pid"] != before  # restarted on the new model
    assert (pi.models / model_id(MODEL)).is_dir()  # the old one stays for a rollback by hand


@pytest.mark.slow
def test_model_only_rolls_back_when_the_agent_does_not_come_up(deployed, tmp_path):
    pi, broker, rec, _ = deployed
    previous = pi.current()
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"TFL3 this is not a model")
    shutil.copyfile(MODEL.with_suffix(".json"), broken.with_suffix(".json"))
    # --force skips loading it here, as for a model with ops only the Pi's runtime has.
    proc = pi.deploy("--model-only", "--model", str(broken), "--force", "--wait-s", "20")
    last = assert_error_last_line(proc, "failed", "did not come up", "rolled back")
    assert "rolling back" in proc.stderr.decode(), last
    assert pi.current() == previous and not (pi.models / model_id(broken)).exists()
    assert "which is running again" in last and pi.service()["state"] == "active"


@pytest.mark.slow
def test_too_old_python_on_the_pi_changes_nothing(deployed, tmp_path):
    pi, *_ = deployed
    old = tmp_path / "python3.8"
    old.write_text("#!/bin/sh\necho 3.8\n")  # stands in for an old interpreter: answers the version probe
    old.chmod(0o755)
    before = sorted(p.name for p in pi.models.iterdir())
    proc = pi.deploy("--board", "pi4", "--python", str(old))
    assert_error_last_line(proc, "Python 3.8 is too old", "nothing was changed")
    assert sorted(p.name for p in pi.models.iterdir()) == before


def test_wait_online_times_out_in_one_line_and_sees_online(tmp_path):
    broker = Mosquitto(tmp_path / "mq").start()
    try:
        cfg = _user_config(tmp_path, broker.url, "mic")
        proc = run_cli("wait-online", "--config", str(cfg), "--timeout-s", "1")
        assert_one_line_error(proc, "serkit/testpi/availability", "did not say online within 1 s", "no message")
        subprocess.run(
            ["mosquitto_pub", "-p", str(broker.port), "-t", "serkit/testpi/availability", "-m", "online", "-r"],
            check=True,
        )
        ok = run_cli("wait-online", "--config", str(cfg), "--timeout", "10")  # the spelling of earlier installs
        assert ok.returncode == 0 and b"serkit/testpi/availability: online" in ok.stdout, ok.stderr
    finally:
        broker.stop()


def test_user_ssh_options_come_first_so_they_win():
    from serkit.deploy.remote import SshTarget

    cmd = SshTarget("pi@hall", 2222, "/k", ("StrictHostKeyChecking=no",)).command("true")
    assert cmd.index("StrictHostKeyChecking=no") < cmd.index("StrictHostKeyChecking=accept-new")
    assert cmd[-3:] == ["--", "pi@hall", "true"] and ["-p", "2222"] == cmd[cmd.index("-p") : cmd.index("-p") + 2]
    assert not parse_probe("arch=x86_64\nuid=0\npython=3.11\nsystemd=offline\n").has_systemd
