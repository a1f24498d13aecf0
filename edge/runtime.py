"""The TFLite interpreter, from the lightest runtime installed.

ai-edge-litert first (numpy 2, fast on unrolled RNNs), then tflite-runtime (the only
wheels for 32-bit Raspberry Pi OS), then full TensorFlow's tf.lite.
"""

from __future__ import annotations

import importlib
import os
import warnings
from typing import Any

import numpy as np

from serkit.edge.errors import SerkitError, first_line
from serkit.edge.quiet import captured_stderr, quiet_stderr
from serkit.edge.spec import ModelSpec

BACKENDS = (
    ("ai_edge_litert", "ai_edge_litert.interpreter"),
    ("tflite_runtime", "tflite_runtime.interpreter"),
    ("tensorflow", "tensorflow.lite.python.interpreter"),
)


def interpreter_class(prefer: str | None = None) -> tuple[Any, str]:
    """(Interpreter class, backend name); `prefer` forces one backend."""
    errors = []
    for name, module in BACKENDS:
        if prefer and name != prefer:
            continue
        try:
            # tf.lite's deprecation notice and TensorFlow's start-up lines: this is the documented last resort.
            with warnings.catch_warnings(), captured_stderr():
                warnings.simplefilter("ignore")
                mod = importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - a wheel built for another numpy fails with more than ImportError
            errors.append(f"{name}: {first_line(exc)}")
            continue
        return mod.Interpreter, name
    raise SerkitError(
        f"no TFLite runtime could be loaded ({'; '.join(errors)}); "
        "pip install ai-edge-litert (or tflite-runtime with numpy<2 on armv7l)"
    )


class TFLiteModel:
    """A .tflite classifier with its spec: normalised float windows in, class probabilities out."""

    def __init__(
        self, path: str | os.PathLike[str], spec: ModelSpec, threads: int = 1, backend: str | None = None
    ) -> None:
        self.path = os.fspath(path)
        self.spec = spec
        cls, self.backend = interpreter_class(backend)
        try:
            with warnings.catch_warnings(), quiet_stderr():
                warnings.simplefilter("ignore")
                self.interp = cls(model_path=self.path, num_threads=threads)
                self.interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise SerkitError(f"{self.path}: cannot load TFLite model ({str(exc).splitlines()[0]})") from None
        inp = self.interp.get_input_details()
        out = self.interp.get_output_details()
        if len(inp) != 1 or len(out) != 1:
            raise SerkitError(f"{self.path}: expected one input and one output tensor")
        self._in, self._out = inp[0], out[0]
        want = (1, spec.frames_per_window, spec.features.num_features)
        shape_in, shape_out = (tuple(int(d) for d in t["shape"]) for t in (self._in, self._out))
        if shape_in != want:
            raise SerkitError(f"{self.path}: input shape {shape_in} does not match the spec's {want}")
        if shape_out != (1, len(spec.labels)):
            raise SerkitError(
                f"{self.path}: output shape {shape_out}, but the spec's {len(spec.labels)} labels need "
                f"{(1, len(spec.labels))}"
            )
        self.input_dtype = self._in["dtype"]
        self._in_scale, self._in_zp = self._in["quantization"]
        self._out_scale, self._out_zp = self._out["quantization"]

    @property
    def input_quantization(self) -> tuple[float, int]:
        """(scale, zero point) of the input tensor; (0.0, 0) for a float input."""
        scale, zero = self._in["quantization"]
        return float(scale), int(zero)

    @property
    def output_quantization(self) -> tuple[float, int]:
        """(scale, zero point) of the output tensor; (0.0, 0) for a float output."""
        scale, zero = self._out["quantization"]
        return float(scale), int(zero)

    @property
    def name(self) -> str:
        """The model's own name: the file name its converter gave it, which a deployed copy keeps in the spec."""
        file = self.spec.model_file or self.path
        return os.path.splitext(os.path.basename(file))[0]

    def predict_window(self, window: np.ndarray) -> np.ndarray:
        """One normalised (frames, features) window → probabilities (classes,)."""
        x = window[None]
        if self.input_dtype == np.int8:
            x = np.clip(np.round(x / self._in_scale + self._in_zp), -128, 127).astype(np.int8)
        else:
            x = x.astype(self.input_dtype)
        self.interp.set_tensor(self._in["index"], x)
        self.interp.invoke()
        y = self.interp.get_tensor(self._out["index"])[0]
        if self._out["dtype"] == np.int8:
            return ((y.astype(np.float32) - self._out_zp) * self._out_scale).astype(np.float32)
        return y.astype(np.float32)

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """(n, frames, features) → (n, classes)."""
        return np.stack([self.predict_window(w) for w in windows])
