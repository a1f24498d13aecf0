"""The same int8 file decides the same under every runtime a Pi may use.

tflite-runtime 2.14 (the only runtime with 32-bit Pi wheels) needs numpy<2, so the test builds
it its own virtualenv from PyPI, once per machine, and skips with the reason when it cannot.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, speechlike

from serkit.edge.features import mfcc
from serkit.edge.runtime import TFLiteModel
from serkit.edge.spec import ModelSpec, spec_path_for
from serkit.edge.windows import clip_windows
from serkit.models import DEFAULT_MODEL

VENV = ROOT / ".cache" / "tflite-runtime-2.14"
SCRIPT = """
import sys, json, numpy as np
from tflite_runtime.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1], num_threads=1)
it.allocate_tensors()
i, o = it.get_input_details()[0], it.get_output_details()[0]
top = []
for w in np.load(sys.argv[2]):
    it.set_tensor(i["index"], w[None])
    it.invoke()
    top.append(int(it.get_tensor(o["index"])[0].argmax()))
print(json.dumps({"numpy": np.__version__, "top1": top}))
"""


def _tflite_runtime_python() -> Path:
    py = VENV / "bin" / "python"
    if not py.exists():
        if sys.version_info >= (3, 12):
            pytest.skip("tflite-runtime 2.14 has no wheels past Python 3.11")
        venv.create(VENV, with_pip=True)
        proc = subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "tflite-runtime==2.14.0", "numpy<2"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            import shutil

            shutil.rmtree(VENV, ignore_errors=True)
            pytest.skip(f"could not install tflite-runtime 2.14 from PyPI: {proc.stderr.strip().splitlines()[-1:]}")
    return py


def _int8_windows(spec: ModelSpec, shared: Path | None) -> np.ndarray:
    clips = [speechlike(3.5, seed=s, f0=f0) for s, f0 in enumerate((110, 150, 210, 260))]
    if shared is not None:
        from serkit.edge.audio import read_wav

        clips += [read_wav(p, 16000)[0] for p in sorted(shared.glob("ravdess-48k-sample/*/*.wav"))]
    w = np.concatenate(
        [clip_windows(spec.normalise(mfcc(c, spec.features)), spec.frames_per_window, 50) for c in clips]
    )
    q = spec.input_quant
    return np.clip(np.round(w / q.scale + q.zero_point), -128, 127).astype(np.int8)


def test_shipped_int8_model_gives_the_same_top1_under_litert_tflite_runtime_and_tensorflow(tmp_path):
    from conftest import shared_data_dir

    spec = ModelSpec.load(spec_path_for(DEFAULT_MODEL))
    shared = shared_data_dir() if shared_data_dir().is_dir() else None
    windows = _int8_windows(spec, shared)
    np.save(tmp_path / "w.npy", windows)
    dequant = (windows.astype(np.float32) - spec.input_quant.zero_point) * spec.input_quant.scale
    tops = {}
    for backend in ("ai_edge_litert", "tensorflow"):
        pytest.importorskip(backend)
        tops[backend] = TFLiteModel(DEFAULT_MODEL, spec, backend=backend).predict(dequant).argmax(1).tolist()
    py = _tflite_runtime_python()
    proc = subprocess.run(
        [str(py), "-c", SCRIPT, DEFAULT_MODEL, str(tmp_path / "w.npy")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["numpy"].startswith("1.")
    tops["tflite_runtime"] = out["top1"]
    assert len(windows) >= 8
    assert tops["ai_edge_litert"] == tops["tflite_runtime"] == tops["tensorflow"]
