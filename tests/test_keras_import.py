"""TensorFlow's C++ start-up lines never reach the user: a user's mistake, or TensorFlow failing to load,
is still exactly one line on stderr (the real CLI, in a subprocess, with the shipped Keras model)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from conftest import ROOT, run_cli

KERAS_MODEL = ROOT / "models" / "serkit-ravdess8.keras"


def _stderr_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return proc.stderr.decode().splitlines()


def test_a_users_mistake_with_a_keras_model_is_exactly_one_line(tmp_path):
    pytest.importorskip("tensorflow", reason="the [train] extra is not installed")
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    proc = run_cli("predict", str(KERAS_MODEL), str(tmp_path / "bad.wav"))
    assert proc.returncode == 1
    assert _stderr_lines(proc) == [f"serkit: error: {tmp_path / 'bad.wav'}: not a WAV file (no RIFF/WAVE header)"]


def test_tensorflow_failing_to_load_is_exactly_one_line(tmp_path):
    pytest.importorskip("tensorflow", reason="the [train] extra is not installed")
    if importlib.util.find_spec("jax") is not None:
        pytest.skip("jax is installed: KERAS_BACKEND=jax would load")
    # A real failure inside Keras's import (its backend is missing), not the user's input.
    proc = run_cli("predict", str(KERAS_MODEL), str(ROOT / "edge" / "samples" / "01-angry-espeak.wav"),
                   env={"KERAS_BACKEND": "jax"})  # fmt: skip
    assert proc.returncode == 1
    assert _stderr_lines(proc) == [
        "serkit: error: TensorFlow/Keras did not load: ModuleNotFoundError: No module named 'jax'"
    ]


def test_what_a_library_writes_to_fd_2_is_captured_and_the_descriptor_restored():
    code = (
        "import os, sys\n"
        "from serkit.edge.quiet import captured_stderr\n"
        "with captured_stderr() as printed:\n"
        "    os.write(2, b'I0000 port.cc:153] oneDNN custom operations are on\\n')\n"
        "print(repr(printed()))\n"
        "os.write(2, b'after\\n')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == repr("I0000 port.cc:153] oneDNN custom operations are on\n")
    assert proc.stderr == "after\n"


def test_capturing_leaves_a_fault_handler_enabled_elsewhere_alone():
    """With the handler on (pytest turns it on) and sys.stderr a StringIO, the capture neither fails nor
    turns it off; failing here made the TFLite runtime fall back to TensorFlow in-process."""
    import contextlib
    import faulthandler
    import io

    from serkit.edge.quiet import captured_stderr

    assert faulthandler.is_enabled()
    with contextlib.redirect_stderr(io.StringIO()), captured_stderr() as printed:
        pass
    assert printed() == "" and faulthandler.is_enabled()
