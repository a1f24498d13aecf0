"""The CLI itself: every command's help renders, and a command loads only its own stage."""

from __future__ import annotations

import subprocess
import sys

import pytest

from serkit.cli import COMMANDS, build_parser


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_commands_help_renders(command, capsys):
    with pytest.raises(SystemExit) as done:
        build_parser(command).parse_args([command, "--help"])
    assert done.value.code == 0
    assert f"usage: serkit {command}" in capsys.readouterr().out


def test_the_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_run_and_predict_load_no_training_deploy_mqtt_or_tls_code():
    """Start-up: nothing MQTT/TLS is imported unless a broker is used, and no other stage's code at all."""
    code = (
        "import sys\n"
        "from serkit.cli import main\n"
        "main(sys.argv[1:])\n"
        "heavy = ('paho', 'ssl', 'http.server', 'importlib.metadata', 'serkit.trainer.train', 'serkit.deploy',\n"
        "         'serkit.convert', 'tensorflow', 'keras')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {h.split('.')[0] for h in heavy} and\n"
        "             any(m == h or m.startswith(h + '.') for h in heavy)))\n"
    )
    from conftest import ROOT

    wav = str(ROOT / "edge" / "samples" / "01-angry-espeak.wav")
    for args in (["run", "--source", f"file:{wav}", "--pace", "fast", "--broker", "none"], ["predict", wav]):
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == "[]", (args[0], proc.stdout.splitlines()[-1])
