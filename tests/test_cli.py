"""The CLI itself: every command's help renders, and a command loads only its own stage."""

from __future__ import annotations

import argparse
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


def test_the_top_level_help_lists_every_command_but_the_internal_one(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS if name != "wait-online")
    assert "wait-online" not in out  # deploy's own check: it works, and stays out of the list


def _subparser(command: str):
    parser = build_parser(command)
    sub = next(a for a in parser._actions if a.dest == "command")  # argparse keeps subparsers here
    return sub.choices[command]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_option_has_help_text(command):
    missing = [a.option_strings[0] for a in _subparser(command)._actions if a.option_strings and not a.help]
    assert missing == [], f"serkit {command}: {missing}"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_option_with_a_default_shows_it_in_its_help(command):
    parser = _subparser(command)
    formatter = parser._get_formatter()
    hidden = [a for a in parser._actions if a.help == argparse.SUPPRESS]
    shown = [a for a in parser._actions if a.option_strings and a not in hidden and a.dest != "help"]
    with_default = [a for a in shown if not (a.default is None or a.default is False or a.default == "")]
    silent = [a.option_strings[0] for a in with_default if "default" not in formatter._expand_help(a)]
    assert silent == [], f"serkit {command}: {silent}"


def test_counts_are_refused_in_one_line_before_anything_runs():
    from conftest import cli, usage_error_line

    assert (
        usage_error_line(cli("train", "x", "--folds", "0"))
        == "serkit train: error: argument --folds: must be >= 2, got 0"
    )
    assert usage_error_line(cli("predict", "--threads", "-3", "x.wav")).endswith("--threads: must be >= 1, got -3")
    assert usage_error_line(cli("evaluate", "m.tflite", "d", "--threads", "0")).endswith("must be >= 1, got 0")
    assert usage_error_line(cli("deploy", "--port", "70000")).endswith("a port number, 1 to 65535, got 70000")
    assert usage_error_line(cli("deploy", "--wait-s", "inf")).endswith("must be a finite number, got inf")
    assert usage_error_line(cli("wait-online", "--timeout-s", "-1")).endswith("must be > 0, got -1")
    assert usage_error_line(cli("convert", "m", "d", "--min-agreement", "1.5")).endswith("must be at most 1, got 1.5")
    assert usage_error_line(cli("train", "d", "--conv-filters", "48,x")).endswith("whole numbers: '48,x'")


def test_no_tflite_runtime_names_each_backend_and_why():
    code = (
        "import sys\n"
        "for m in ('ai_edge_litert', 'ai_edge_litert.interpreter', 'tflite_runtime', 'tflite_runtime.interpreter',\n"
        "          'tensorflow', 'tensorflow.lite', 'tensorflow.lite.python', 'tensorflow.lite.python.interpreter'):\n"
        "    sys.modules[m] = None\n"
        "from serkit.edge.runtime import interpreter_class\n"
        "from serkit.edge.errors import SerkitError\n"
        "try:\n"
        "    interpreter_class()\n"
        "except SerkitError as exc:\n"
        "    print(exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    line = proc.stdout.strip()
    assert len(line.splitlines()) == 1, proc.stdout + proc.stderr
    for backend in ("ai_edge_litert: ModuleNotFoundError", "tflite_runtime: ModuleNotFoundError",
                    "tensorflow: ModuleNotFoundError"):  # fmt: skip
        assert backend in line, line
    assert line.startswith("no TFLite runtime could be loaded (") and "pip install ai-edge-litert" in line


def test_run_and_predict_load_no_training_deploy_mqtt_tls_or_pathlib_code():
    """Start-up: nothing MQTT/TLS is imported unless a broker is used, and no other stage's code at all; nor the
    standard modules that only cost time there (socket, shutil, decimal, the corpus reader's csv, dataclasses).
    Nor pathlib (with urllib.parse and ipaddress about 4 ms, some 5% of importing numpy, which does without
    it): an editable install's finder loads pathlib before serkit does, so for it the test watches serkit's
    own import statements rather than sys.modules."""
    code = (
        "import builtins, sys\n"
        "seen, real = set(), builtins.__import__\n"
        "def spy(name, globals=None, locals=None, fromlist=(), level=0):\n"
        "    importer = (globals or {}).get('__name__', '')\n"
        "    if name.split('.')[0] in ('pathlib', 'urllib') and importer.startswith('serkit'):\n"
        "        seen.add(f'{importer} imports {name}')\n"
        "    return real(name, globals, locals, fromlist, level)\n"
        "builtins.__import__ = spy\n"
        "from serkit.cli import main\n"
        "main(sys.argv[1:])\n"
        "heavy = ('paho', 'ssl', 'http.server', 'importlib.metadata', 'serkit.trainer.train', 'serkit.deploy',\n"
        "         'serkit.convert', 'tensorflow', 'keras', 'socket', 'shutil', 'decimal', 'csv', 'dataclasses')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {h.split('.')[0] for h in heavy} and\n"
        "             any(m == h or m.startswith(h + '.') for h in heavy)) + sorted(seen))\n"
    )
    from conftest import ROOT

    wav = str(ROOT / "edge" / "samples" / "01-angry-espeak.wav")
    for args in (["run", "--source", f"file:{wav}", "--pace", "fast", "--broker", "none"], ["predict", wav]):
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == "[]", (args[0], proc.stdout.splitlines()[-1])


def test_edge_records_have_evaluated_field_types():
    """Start-up: typing.NamedTuple compiles every string annotation into a ForwardRef (about 30 us a field,
    some 80 fields on the path of `serkit run`), so the modules that define records do without
    `from __future__ import annotations`."""
    import importlib
    import pkgutil
    import typing

    import serkit.edge

    records = []
    for info in pkgutil.iter_modules(serkit.edge.__path__):
        module = importlib.import_module(f"serkit.edge.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, tuple) and obj.__module__ == module.__name__:
                records.append(obj)
                for name, hint in getattr(obj, "__annotations__", {}).items():
                    assert not isinstance(hint, (str, typing.ForwardRef)), f"{obj.__name__}.{name}: {hint!r}"
    assert len(records) >= 10, records


@pytest.mark.parametrize("columns", [None, "0", "57", "123", "wide", "-5"])
def test_help_width_is_shutils_without_importing_it(monkeypatch, columns):
    import shutil

    from serkit.cli import _terminal_columns

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert _terminal_columns() == shutil.get_terminal_size().columns
