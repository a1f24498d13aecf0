"""The board configs are valid agent configs, and the systemd unit passes systemd-analyze verify."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

from serkit.edge.config import build_config

FW = ROOT / "firmware_configs"
BOARDS = sorted((FW / "boards").glob("*.toml"))


def test_every_supported_board_has_a_config():
    assert {p.stem for p in BOARDS} == {"pi5", "pi4", "pi3bplus", "pizero2w"}


@pytest.mark.parametrize("board", BOARDS, ids=lambda p: p.stem)
def test_board_configs_load_and_say_why(board: Path):
    config = build_config(str(board))
    assert config.threads >= 1 and config.queue_size >= 100
    assert board.read_text().lstrip().startswith("#")  # the reason comes first
    proc = run_cli("run", "--config", str(board), "--broker", "mqtt://pi.local", "--print-config")
    assert proc.returncode == 0 and 'broker = "mqtt://pi.local"' in proc.stdout.decode()


def test_unit_file_hardening_and_verify(tmp_path):
    unit = (FW / "systemd" / "serkit.service").read_text()
    for key in (
        "User=serkit",
        "SupplementaryGroups=audio",
        "ProtectSystem=strict",
        "ProtectHome=true",
        "PrivateTmp=true",
        "NoNewPrivileges=true",
        "RestrictAddressFamilies=",
        "Restart=on-failure",
        "RestartSec=",
        "EnvironmentFile=",
        "StandardError=journal",
    ):
        assert key in unit, key
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not available here")
    # Point ExecStart at a serkit that exists here; verify checks the executable.
    exe = Path(sys.executable).with_name("serkit")
    if not exe.exists():
        pytest.skip(f"no serkit console script beside {sys.executable}")
    local = tmp_path / "serkit.service"
    local.write_text(unit.replace("/opt/serkit/venv/bin/serkit", str(exe)))
    proc = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True)
    # Keys newer than this systemd (RestartSteps, RestartMaxDelaySec on 252) are reported and ignored.
    problems = [ln for ln in proc.stderr.splitlines() if ln.strip() and "Unknown key 'Restart" not in ln]
    assert proc.returncode == 0 and not problems, proc.stderr
