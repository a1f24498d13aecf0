"""Classification metrics from a confusion matrix: one code path for train, evaluate and convert."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """cm[i, j] = clips of true class i predicted as j."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)), 1)
    return cm


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)


def metrics_from_confusion(cm: np.ndarray, labels: Sequence[str]) -> dict:
    """Accuracy, macro-F1, UAR (mean recall over classes present) and per-class precision/recall/F1."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    present = support > 0
    total = cm.sum()
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "uar": float(recall[present].mean()) if present.any() else 0.0,
        "clips": int(total),
        "per_class": {
            lab: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, lab in enumerate(labels)
        },
        "confusion_matrix": cm.astype(int).tolist(),
        "labels": list(labels),
    }


def evaluate_predictions(
    probs: np.ndarray, y_true: Sequence[int], speakers: Sequence[str], labels: Sequence[str], protocol: dict
) -> dict:
    """Full report for clip-level probabilities: metrics, per-speaker accuracy, and the protocol they were measured under."""
    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(probs).argmax(axis=1)
    report = metrics_from_confusion(confusion_matrix(y_true, y_pred, len(labels)), labels)
    per_speaker = {}
    for s in sorted(set(speakers)):
        idx = np.array([sp == s for sp in speakers])
        per_speaker[s] = {"accuracy": float((y_pred[idx] == y_true[idx]).mean()), "clips": int(idx.sum())}
    report["per_speaker"] = per_speaker
    p = np.clip(np.asarray(probs, dtype=np.float64)[np.arange(len(y_true)), y_true], 1e-7, 1.0)
    report["log_loss"] = float(-np.log(p).mean()) if len(p) else 0.0
    report["protocol"] = protocol
    return report


def describe_protocol(protocol: dict) -> str:
    """One line saying how a number was measured, printed beside every accuracy."""
    kind = protocol.get("kind", "unknown")
    if kind == "speaker-dependent" and protocol.get("training_speakers_included"):
        seen = protocol["training_speakers_included"]
        return (
            f"SPEAKER-DEPENDENT: includes {len(seen)} speaker(s) seen in training ({', '.join(seen[:8])}"
            f"{', ...' if len(seen) > 8 else ''}; optimistic)"
        )
    if kind == "speaker-dependent":
        return "SPEAKER-DEPENDENT clip-level random split (speakers leak between train and test; optimistic)"
    held = protocol.get("held_out_speakers") or []
    shown = ", ".join(held[:8]) + (f", ... ({len(held)} in all)" if len(held) > 8 else "")
    if kind == "all-speakers":
        estimate = protocol.get("estimate")
        return "trained on every speaker, none held out" + (f" (its accuracy estimate: {estimate})" if estimate else "")
    if kind == "k-fold":
        return (
            f"speaker-independent {protocol.get('folds')}-fold cross-validation by speaker (all speakers held out once)"
        )
    return f"speaker-independent: {protocol.get('role', 'held-out')} speakers never seen in training ({shown})"


def format_report(report: dict, title: str) -> str:
    lines = [
        f"{title}",
        f"  protocol : {describe_protocol(report.get('protocol', {}))}",
        f"  clips    : {report['clips']}",
        f"  accuracy : {report['accuracy'] * 100:5.1f}%   macro-F1 {report['macro_f1'] * 100:5.1f}%   "
        f"UAR {report['uar'] * 100:5.1f}%",
        f"  {'class':10s} {'prec':>6s} {'recall':>6s} {'F1':>6s} {'n':>5s}",
    ]
    for lab, m in report["per_class"].items():
        lines.append(
            f"  {lab:10s} {m['precision'] * 100:6.1f} {m['recall'] * 100:6.1f} {m['f1'] * 100:6.1f} {m['support']:5d}"
        )
    if report.get("per_speaker"):
        sp = "  ".join(f"{k}={v['accuracy'] * 100:.0f}%" for k, v in report["per_speaker"].items())
        lines.append(f"  per speaker: {sp}")
    return "\n".join(lines)
