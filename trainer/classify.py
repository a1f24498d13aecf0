"""Clip-level classification for any saved model (Keras or TFLite): windows in, averaged probabilities out.

One code path for training's validation, `serkit evaluate`, `serkit predict` and
the converter's parity gate, so their numbers are comparable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from serkit.edge.errors import SerkitError, require_extra
from serkit.edge.spec import ModelSpec, spec_path_for
from serkit.edge.stream import GateSettings, StreamClassifier
from serkit.edge.windows import clip_windows

WindowPredictor = Callable[[np.ndarray], np.ndarray]


def clip_probabilities(predict: WindowPredictor, feats: Sequence[np.ndarray], spec: ModelSpec) -> np.ndarray:
    """Each clip's probability vector: the mean over its windows (raw features in, normalised here)."""
    per_clip = [clip_windows(spec.normalise(np.asarray(f)), spec.frames_per_window, spec.hop_frames) for f in feats]
    if not per_clip:
        return np.zeros((0, len(spec.labels)), np.float32)
    counts = [len(w) for w in per_clip]
    probs = predict(np.concatenate(per_clip))
    out, i = [], 0
    for n in counts:
        out.append(probs[i : i + n].mean(axis=0))
        i += n
    return np.stack(out)


def streamed_clip_probabilities(
    predict: WindowPredictor, chunks: Iterable[np.ndarray], spec: ModelSpec, batch: int = 256
) -> np.ndarray:
    """clip_probabilities for one clip that arrives in chunks (a long file read a second at a time): the
    same windows, cut by the agent's streaming classifier, in memory that does not grow with the clip."""
    windows = _WindowTap()
    stream = StreamClassifier(windows, spec, spec.hop_frames, GateSettings(enabled=False))
    total, count = np.zeros(len(spec.labels), np.float64), 0

    def score(final: bool) -> None:
        nonlocal total, count
        while len(windows.taken) >= batch or (final and windows.taken):
            part, windows.taken = windows.taken[:batch], windows.taken[batch:]
            total += predict(np.stack(part)).astype(np.float64).sum(axis=0)
            count += len(part)

    for chunk in chunks:
        stream.push(chunk)
        score(final=False)
    stream.flush()
    score(final=True)
    return (total / max(count, 1)).astype(np.float32)


class _WindowTap:
    """Stands in for the model inside StreamClassifier: keeps each window for a batched prediction."""

    def __init__(self) -> None:
        self.taken: list[np.ndarray] = []

    def predict_window(self, window: np.ndarray) -> None:
        self.taken.append(window.copy())


class RecordingPredictor:
    """Wraps a window predictor and keeps its last output, so clip metrics and window-level figures share one pass."""

    def __init__(self, predict: WindowPredictor) -> None:
        self.predict = predict
        self.windows: np.ndarray | None = None

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        self.windows = self.predict(windows)
        return self.windows


def suggested_threshold(windows: np.ndarray) -> float:
    """Median window confidence on held-out clips: publishing above it keeps the more certain half."""
    return round(float(np.median(windows.max(axis=1))), 3)


def keras_predictor(model) -> WindowPredictor:  # noqa: ANN001
    def predict(windows: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(windows, batch_size=256, verbose=0), dtype=np.float32)

    return predict


def resolve_model(path: str | os.PathLike[str]) -> tuple[str, str]:
    """(model file, spec file) for a run folder, a .keras or a .tflite path."""
    p = os.fspath(path)
    if os.path.isdir(p):
        names = sorted(os.listdir(p))
        candidates = [n for n in names if n.endswith(".keras")] or [n for n in names if n.endswith(".tflite")]
        if not candidates:
            raise SerkitError(f"{p}: no .keras or .tflite model in this folder")
        p = os.path.join(p, candidates[0])
    if not os.path.exists(p):
        raise SerkitError(f"{p}: no such model file")
    if os.path.splitext(p)[1] not in (".keras", ".tflite"):
        raise SerkitError(f"{p}: expected a .keras or .tflite model (or a run folder)")
    return p, spec_path_for(p)


def load_predictor(path: str | os.PathLike[str], threads: int = 1) -> tuple[ModelSpec, WindowPredictor, str]:
    """Spec, window predictor and a description ('keras' / 'tflite int8 (ai_edge_litert)')."""
    model_path, spec_path = resolve_model(path)
    spec = ModelSpec.load(spec_path)
    if model_path.endswith(".tflite"):
        from serkit.edge.runtime import TFLiteModel

        m = TFLiteModel(model_path, spec, threads=threads)
        kind = "int8" if m.input_dtype == np.int8 else "float"
        return spec, m.predict, f"tflite {kind} ({m.backend})"
    from serkit.trainer.tf_import import import_keras

    require_extra("train", "tensorflow", "keras")
    keras = import_keras()
    try:
        model = keras.saving.load_model(model_path, compile=False)
    except (ValueError, OSError) as exc:
        raise SerkitError(f"{model_path}: cannot load Keras model ({str(exc).splitlines()[0]})") from None
    return spec, keras_predictor(model), "keras"
