"""int8 vs float TFLite inference per window, single thread, under ai-edge-litert; and the size ratio.

Run: python benchmarks/bench_tflite.py [KERAS_MODEL]   (needs the [train] extra to make the float reference)
Both models are converted from the same Keras model and timed in the same process, interleaved.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]

import numpy as np  # noqa: E402

from serkit.convert.audit import strip_names  # noqa: E402
from serkit.convert.tflite_convert import convert_in_subprocess  # noqa: E402
from serkit.edge.runtime import TFLiteModel  # noqa: E402
from serkit.edge.spec import ModelSpec  # noqa: E402
from serkit.models import DEFAULT_KERAS_MODEL, DEFAULT_MODEL  # noqa: E402


def _per_window_ms(model: TFLiteModel, windows: np.ndarray, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for w in windows:
            model.predict_window(w)
        best = min(best, (time.perf_counter() - t0) / len(windows))
    return best * 1e3


def main() -> None:
    keras_path = Path(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_KERAS_MODEL)
    int8_path = Path(DEFAULT_MODEL) if len(sys.argv) == 1 else keras_path.with_name(keras_path.stem + "-int8.tflite")
    spec = ModelSpec.load(keras_path.with_suffix(".json"))
    int8_spec = ModelSpec.load(int8_path.with_suffix(".json"))
    with tempfile.TemporaryDirectory() as tmp:
        float_path = Path(tmp) / "float.tflite"
        convert_in_subprocess(keras_path, float_path, "float")
        strip_names(float_path)
        models = {
            "float": TFLiteModel(float_path, spec, threads=1),
            "int8": TFLiteModel(int8_path, int8_spec, threads=1),
        }
        rng = np.random.default_rng(0)
        windows = rng.standard_normal((30, spec.frames_per_window, spec.features.num_features)).astype(np.float32)
        for m in models.values():
            m.predict(windows[:3])  # warm up
        times = {k: [] for k in models}
        for _ in range(3):
            for k, m in models.items():
                times[k].append(_per_window_ms(m, windows))
        best = {k: min(v) for k, v in times.items()}
        sizes = {"float": float_path.stat().st_size, "int8": int8_path.stat().st_size}
    backend = models["int8"].backend
    print(
        f"runtime: {backend}, 1 thread, window {spec.window_s:.2f} s ({spec.frames_per_window} x "
        f"{spec.features.num_features}), best of 15 x 30 windows"
    )
    for k in models:
        print(f"{k:6s} {best[k]:8.3f} ms/window  {sizes[k] / 1024:8.1f} KB")
    print(
        f"int8/float time: {best['int8'] / best['float']:.2f}x   int8/float size: {sizes['int8'] / sizes['float']:.2f}x"
    )
    print(f"real-time factor of int8 inference at a {spec.hop_s} s hop: {best['int8'] / 1e3 / spec.hop_s:.4f}")


if __name__ == "__main__":
    main()
