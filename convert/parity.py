"""The parity gate: the int8 model must keep the float model's accuracy on held-out speakers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from serkit.edge.spec import ModelSpec
from serkit.trainer.classify import RecordingPredictor, WindowPredictor, clip_probabilities
from serkit.trainer.metrics import evaluate_predictions


@dataclass(frozen=True)
class Thresholds:
    max_accuracy_drop: float = 1.0  # percentage points, int8 vs Keras float
    min_agreement: float = 0.97  # window-level top-1 agreement, int8 vs Keras float


def run_parity(
    predictors: dict[str, WindowPredictor],
    spec: ModelSpec,
    feats: Sequence[np.ndarray],
    y: Sequence[int],
    speakers: Sequence[str],
    protocol: dict,
) -> tuple[dict, dict[str, np.ndarray]]:
    """Metrics per model (same code as training) and each model's window probabilities."""
    reports, windows = {}, {}
    for name, predict in predictors.items():
        probs, windows[name] = recorded_predictions(predict, spec, feats)
        reports[name] = evaluate_predictions(probs, y, speakers, spec.labels, protocol)
    return reports, windows


def recorded_predictions(
    predict: WindowPredictor, spec: ModelSpec, feats: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """(each clip's probabilities, every window's probabilities in the order they were scored)."""
    rec = RecordingPredictor(predict)
    probs = clip_probabilities(rec, feats, spec)
    return probs, rec.windows


def compare(reference: np.ndarray, other: np.ndarray) -> dict:
    diff = np.abs(reference - other)
    return {
        "top1_agreement": float((reference.argmax(1) == other.argmax(1)).mean()),
        "mean_abs_prob_diff": float(diff.mean()),
        "max_abs_prob_diff": float(diff.max()),
        "windows": int(len(reference)),
    }


def gate(reports: dict, agreement: dict, thresholds: Thresholds) -> list[str]:
    """Reasons to refuse the int8 model (empty = pass)."""
    fails = []
    drop = (reports["keras_float"]["accuracy"] - reports["tflite_int8"]["accuracy"]) * 100
    if drop > thresholds.max_accuracy_drop:
        fails.append(f"int8 accuracy is {drop:.1f} points below float (allowed {thresholds.max_accuracy_drop:g})")
    agree = agreement["tflite_int8"]["top1_agreement"]
    if agree < thresholds.min_agreement:
        fails.append(f"int8/float top-1 agreement {agree * 100:.1f}% is below {thresholds.min_agreement * 100:g}%")
    return fails


def format_table(reports: dict, agreement: dict, protocol_line: str) -> str:
    lines = [
        f"parity on {protocol_line}",
        f"  {'model':14s} {'accuracy':>9s} {'macro-F1':>9s} {'UAR':>7s} {'agree':>7s} {'mean|dp|':>9s} {'max|dp|':>8s}",
    ]
    for name, rep in reports.items():
        a = agreement.get(name)
        extra = (
            f"{a['top1_agreement'] * 100:6.1f}% {a['mean_abs_prob_diff']:9.4f} {a['max_abs_prob_diff']:8.4f}"
            if a
            else f"{'(ref)':>7s} {'':9s} {'':8s}"
        )
        lines.append(
            f"  {name:14s} {rep['accuracy'] * 100:8.1f}% {rep['macro_f1'] * 100:8.1f}% {rep['uar'] * 100:6.1f}% {extra}"
        )
    return "\n".join(lines)
