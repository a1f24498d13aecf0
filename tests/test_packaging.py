"""The distribution as a user installs it: one import name, quiet metadata, the edge install on its own.

The wheel is built by pip from this checkout and installed with its real dependencies (at the pinned
versions) into a fresh virtualenv; the programs then run from a folder holding decoy `models/` and
`edge/` packages that would break any import of those generic names.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow  # builds a wheel and installs numpy, paho-mqtt and ai-edge-litert into a new venv

SAMPLE = ROOT / "edge" / "samples" / "01-angry-espeak.wav"


@pytest.fixture(scope="module")
def edge_install(tmp_path_factory) -> tuple[Path, Path, str]:
    """(venv, the wheel, pip's output while building it) for `pip install serkit-*.whl`, the Pi's install."""
    base = tmp_path_factory.mktemp("edge-install")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-w", str(base), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    wheel = next(base.glob("serkit-*.whl"))
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    done = subprocess.run(
        [*pip, "-c", str(ROOT / "requirements" / "dev.txt"), str(wheel)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return env_dir, wheel, built.stdout + built.stderr


def _site_packages(env_dir: Path) -> Path:
    return next((env_dir / "lib").glob("python3*/site-packages"))


def test_building_the_wheel_prints_no_warning_about_the_projects_metadata(edge_install):
    _, _, output = edge_install
    for needle in ("Deprecat", "deprecat", "BuildBackendWarning", "SetuptoolsWarning", "!!"):
        assert needle not in output, output


def test_the_wheel_installs_one_import_name_serkit(edge_install):
    env_dir, wheel, _ = edge_install
    site = _site_packages(env_dir)
    record = next(site.glob("serkit-*.dist-info")) / "RECORD"
    with record.open() as f:
        paths = [row[0] for row in csv.reader(f) if row]
    top = {p.split("/")[0] for p in paths if not p.startswith("..")}
    assert {t for t in top if not t.endswith(".dist-info")} == {"serkit"}, sorted(top)
    # The stages and their data are inside it.
    for part in ("serkit/edge/agent.py", "serkit/edge/dashboard.html", "serkit/trainer/train.py", "serkit/convert/parity.py", "serkit/cli.py",
                 "serkit/deploy/install.sh", "serkit/deploy/constraints/edge-armv7l.txt",
                 "serkit/models/serkit-ravdess8-int8.tflite", "serkit/edge/samples/01-angry-espeak.wav",
                 "serkit/firmware_configs/boards/pi4.toml", "serkit/firmware_configs/systemd/serkit.service"):  # fmt: skip
        assert part in paths, part


@pytest.fixture
def decoy_cwd(tmp_path) -> Path:
    """A working folder whose own models/ and edge/ packages fail loudly if anything imports them."""
    for name in ("models", "edge", "trainer", "convert"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('the decoy {name} package was imported')\n")
    return tmp_path


def _serkit(env_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(env_dir / "bin" / "serkit"), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


def test_predict_without_a_model_uses_the_shipped_one_beside_decoy_packages(edge_install, decoy_cwd):
    env_dir, _, _ = edge_install
    proc = _serkit(env_dir, decoy_cwd, "predict", str(SAMPLE))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{SAMPLE}: "), proc.stdout
    site = _site_packages(env_dir)
    shipped = site / "serkit" / "models" / "serkit-ravdess8-int8.tflite"
    assert proc.stderr.strip().splitlines() == [f"serkit: no model given, using the shipped one: {shipped} "
                                                "(tflite int8 (ai_edge_litert))"]  # fmt: skip


def test_run_on_a_file_beside_decoy_packages(edge_install, decoy_cwd):
    env_dir, _, _ = edge_install
    proc = _serkit(
        env_dir, decoy_cwd, "run", "--source", f"file:{SAMPLE}", "--broker", "none", "--pace", "fast", "--raw"
    )
    assert proc.returncode == 0, proc.stderr
    assert '"emotion"' in proc.stdout and "Traceback" not in proc.stderr


def test_a_keras_model_without_the_train_extra_is_one_line_naming_it(edge_install, decoy_cwd):
    env_dir, _, _ = edge_install
    proc = _serkit(env_dir, decoy_cwd, "predict", str(ROOT / "models" / "serkit-ravdess8.keras"), str(SAMPLE))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("serkit: error: ") and "pip install 'serkit[train]'" in lines[0], lines[0]


def test_the_edge_install_pulls_in_no_training_library(edge_install):
    env_dir, _, _ = edge_install
    site = _site_packages(env_dir)
    for heavy in ("tensorflow", "keras", "scipy", "librosa", "matplotlib"):
        assert not (site / heavy).exists(), heavy
