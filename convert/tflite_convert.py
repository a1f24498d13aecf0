"""Keras → TFLite (float or full-int8), run in a child process.

TF 2.21's int8 calibration segfaults on a WHILE-loop (non-unrolled) RNN and
takes the whole process with it; a child process turns that into an error the
CLI can explain, and no artifact is left behind.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from serkit.edge.errors import SerkitError

# One test model failed three attempts in a row in one run, and converted at the first attempt when run
# again with the same draws: the failure is chance, per attempt, so enough attempts make it negligible.
CALIBRATION_ATTEMPTS = 8


def _convert(keras_path: str, out_path: str, mode: str, calibration: str | None = None) -> None:
    """Runs in the child: load, trace with a fixed batch of 1, convert, write."""
    from serkit.trainer.tf_import import import_keras

    keras = import_keras()
    import tensorflow as tf

    model = keras.saving.load_model(keras_path, compile=False)
    _, frames, features = model.input_shape

    # Through a SavedModel with a fixed batch of 1: the graph the Pi runs, window by window.
    saved = str(Path(out_path).parent / "saved_model")
    model.export(saved, format="tf_saved_model", input_signature=[tf.TensorSpec([1, frames, features])], verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(saved)
    if mode == "int8":
        windows = np.load(calibration)

        def representative() -> object:
            for w in windows:
                yield [w[None].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    Path(out_path).write_bytes(converter.convert())


def convert_in_subprocess(
    keras_path: Path, out_path: Path, mode: str, calibration: np.ndarray | None = None, timeout: float = 900
) -> None:
    """Convert in a child process; a crash or failure becomes one SerkitError, and out_path is not left behind."""
    with tempfile.TemporaryDirectory(prefix="serkit-convert-") as tmp:
        calib_path = None
        if calibration is not None:
            calib_path = str(Path(tmp) / "calibration.npy")
            np.save(calib_path, calibration.astype(np.float32))
        partial = Path(tmp) / "model.tflite"
        code = "import sys; from serkit.convert.tflite_convert import _convert; _convert(*sys.argv[1:])"
        args = [sys.executable, "-c", code, str(keras_path), str(partial), mode]
        if calib_path:
            args.append(calib_path)
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SerkitError(f"{keras_path}: {mode} conversion did not finish in {timeout:.0f} s") from None
        if proc.returncode < 0:
            sig = signal.Signals(-proc.returncode).name
            raise SerkitError(
                f"{keras_path}: the TFLite converter crashed ({sig}) during {mode} conversion; the usual cause is a "
                "recurrent layer that is not unrolled (LSTM/GRU need unroll=True for int8), no model was written"
            )
        if proc.returncode != 0 or not partial.exists():
            tail = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()]
            reason = tail[-1] if tail else f"exit status {proc.returncode}"
            raise SerkitError(f"{keras_path}: {mode} conversion failed: {reason}")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(partial, out_path)


def convert_int8_audited(
    keras_path: Path,
    out_path: Path,
    draw: Callable[[int], np.ndarray],
    on_retry: Callable[[str], None] = lambda message: None,
) -> dict:
    """Full-int8 conversion calibrated on draw(0), names stripped, audited; returns the last audit.

    Now and then the quantizer leaves one op (seen: a SPLIT in the unrolled LSTM) float, by chance
    rather than for a given draw; another attempt, with a fresh draw (draw(1), draw(2), ...), is the
    fix, not accepting the float op. Up to CALIBRATION_ATTEMPTS attempts; refusing what problems
    remain is the caller's.
    """
    from serkit.convert.audit import audit, strip_names

    for attempt in range(CALIBRATION_ATTEMPTS):
        convert_in_subprocess(keras_path, out_path, "int8", draw(attempt))
        strip_names(out_path)
        report = audit(out_path)
        problems = report["problems"]
        if not problems or attempt == CALIBRATION_ATTEMPTS - 1 or not all(p.startswith("float ops") for p in problems):
            break
        on_retry(f"the converter left float ops ({problems[0]}); calibrating again with a new draw")
    return report
