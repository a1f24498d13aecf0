"""k-fold cross-validation by speaker as one estimate: mean ± std over folds, and every clip pooled."""

from __future__ import annotations

import numpy as np

from serkit.trainer.metrics import metrics_from_confusion

KEYS = ("accuracy", "macro_f1", "uar")


def across_folds(reports: list[dict], labels: list[str]) -> dict:
    """Mean and std over the folds of each headline metric, and every clip pooled into one report."""
    return {
        **{k: float(np.mean([r[k] for r in reports])) for k in KEYS},
        **{f"{k}_std": float(np.std([r[k] for r in reports])) for k in KEYS},
        "pooled": metrics_from_confusion(np.sum([r["confusion_matrix"] for r in reports], axis=0), labels),
    }


def cross_validation_summary(reports: list[dict], labels: list[str], folds: int) -> dict:
    """Mean ± std over folds, and every clip pooled as scored by the fold that held its speaker out."""
    summary = {
        "protocol": {"kind": "k-fold", "folds": folds, "held_out_speakers": "every speaker once"},
        **across_folds(reports, labels),
        "per_fold": [
            {k: r[k] for k in (*KEYS, "clips", "best_epoch", "teacher_ensemble") if k in r}
            | {"speakers": r["protocol"]["held_out_speakers"]}
            | ({"room": {k: r["room"][k] for k in KEYS}} if "room" in r else {})
            for r in reports
        ],
    }
    summary["pooled"]["per_speaker"] = {s: v for r in reports for s, v in r["per_speaker"].items()}
    if all("room" in r for r in reports):
        summary["room"] = room_summary([r["room"] for r in reports], labels)
    return summary


def room_summary(reports: list[dict], labels: list[str]) -> dict:
    """The folds' room-condition reports as one: mean ± std over folds, pooled, and pooled buckets."""
    return {
        "condition": reports[0]["condition"],
        **across_folds(reports, labels),
        **{by: pool_buckets([r[by] for r in reports]) for by in ("by_rt60_s", "by_snr_db")},
    }


def pool_buckets(per_fold: list[list[dict]]) -> list[dict]:
    """Buckets of several folds (same ranges) as one: clips added, accuracy weighted by clips."""
    pooled = []
    for parts in zip(*per_fold, strict=True):
        clips = sum(p["clips"] for p in parts)
        right = sum(p["accuracy"] * p["clips"] for p in parts if p["clips"])
        pooled.append({"range": parts[0]["range"], "clips": clips, "accuracy": right / clips if clips else None})
    return pooled


def estimate_line(cv: dict) -> str:
    """The estimate in one line, with its protocol, and the room condition's beside it when measured."""
    folds = cv["protocol"]["folds"]
    line = (
        f"accuracy {cv['accuracy'] * 100:.1f}% ± {cv['accuracy_std'] * 100:.1f}, "
        f"UAR {cv['uar'] * 100:.1f}% ± {cv['uar_std'] * 100:.1f} "
        f"(mean ± std over {folds} folds by speaker, every speaker held out once)"
    )
    if "room" in cv:
        room = cv["room"]
        line += (
            f"; in simulated rooms accuracy {room['accuracy'] * 100:.1f}% ± {room['accuracy_std'] * 100:.1f}, "
            f"UAR {room['uar'] * 100:.1f}% ± {room['uar_std'] * 100:.1f}"
        )
    return line
