"""Metrics of a model on a set of clips, with the protocol that makes the number honest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from serkit.edge.spec import ModelSpec
from serkit.trainer.classify import WindowPredictor, clip_probabilities
from serkit.trainer.corpora import Clip, label_indices
from serkit.trainer.data import ClipStore
from serkit.trainer.metrics import evaluate_predictions, format_report
from serkit.trainer.progress import progress
from serkit.trainer.room import TEST_ROOMS, RoomRecipe, babble_talkers


def protocol_for(spec: ModelSpec, clips: Sequence[Clip]) -> dict:
    """Which evaluated speakers the model trained on, read from its spec."""
    speakers = sorted({c.speaker for c in clips})
    trained = set(spec.info.get("training", {}).get("protocol", {}).get("train_speakers", []))
    seen = [s for s in speakers if s in trained]
    if seen:
        return {
            "kind": "speaker-dependent",
            "role": "evaluation",
            "held_out_speakers": [s for s in speakers if s not in trained],
            "training_speakers_included": seen,
        }
    return {"kind": "speaker-independent", "role": "evaluation", "held_out_speakers": speakers}


def evaluate_clips(
    predict: WindowPredictor,
    spec: ModelSpec,
    clips: Sequence[Clip],
    protocol: dict,
    cache_dir: Path | None,
    room: bool = False,
) -> dict:
    """The model's report on the clips; with room, its "room" part scores the same clips in TEST_ROOMS."""
    store = ClipStore(spec.features, cache_dir)
    ok, feats = store.load(clips, "evaluate features")
    y = label_indices(ok, spec.labels)
    probs = clip_probabilities(predict, feats, spec)
    report = evaluate_predictions(probs, y, [c.speaker for c in ok], spec.labels, protocol)
    if room:
        report["room"] = room_report(predict, spec, store, ok, protocol)
    return report


def room_features(store: ClipStore, clips: Sequence[Clip], recipe: RoomRecipe = TEST_ROOMS) -> list[np.ndarray]:
    """Features of every clip in its drawn room, with babble from other speakers of the same clips."""
    others = [(c.path.name, c.speaker) for c in clips]
    feats = []
    for c in progress(clips, f"{recipe.name} features"):
        talkers = [clips[i] for i in babble_talkers(recipe, c.path.name, c.speaker, others)]
        feats.append(store.room_features(c, recipe, 0, talkers))
    return feats


def room_report(
    predict: WindowPredictor, spec: ModelSpec, store: ClipStore, clips: Sequence[Clip], protocol: dict
) -> dict:
    """Metrics of the clips heard in TEST_ROOMS, with accuracy by reverberation time and by SNR."""
    recipe = TEST_ROOMS
    probs = clip_probabilities(predict, room_features(store, clips, recipe), spec)
    y = np.asarray(label_indices(clips, spec.labels))
    report = evaluate_predictions(probs, y, [c.speaker for c in clips], spec.labels, protocol)
    conditions = [store.room_condition(c, recipe) for c in clips]
    right = probs.argmax(axis=1) == y
    report["condition"] = {"recipe": asdict(recipe)}
    report["by_rt60_s"] = buckets(right, [c.rt60_s for c in conditions], recipe.rt60_s, 3)
    report["by_snr_db"] = buckets(right, [c.snr_db for c in conditions], recipe.snr_db, 3)
    return report


def buckets(right: np.ndarray, values: Sequence[float], span: tuple[float, float], n: int) -> list[dict]:
    """Accuracy of the clips whose value falls in each of n equal parts of span."""
    edges = np.linspace(*span, n + 1)
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, n - 1)
    return [
        {
            "range": [round(float(edges[i]), 3), round(float(edges[i + 1]), 3)],
            "clips": int((index == i).sum()),
            "accuracy": float(right[index == i].mean()) if (index == i).any() else None,
        }
        for i in range(n)
    ]


def format_room(report: dict) -> str:
    """The room condition's figures: the report as format_report gives it, then accuracy by RT60 and SNR."""

    def parts(by: str, unit: str) -> str:
        return ", ".join(
            f"{b['range'][0]:g}-{b['range'][1]:g} {unit}: "
            + (f"{b['accuracy'] * 100:.1f}%" if b["accuracy"] is not None else "-")
            + f" ({b['clips']})"
            for b in report[by]
        )

    name = report["condition"]["recipe"]["name"]
    return "\n".join(
        (
            format_report(report, f"the same clips in simulated rooms ({name})"),
            f"  by reverberation time: {parts('by_rt60_s', 's')}",
            f"  by SNR: {parts('by_snr_db', 'dB')}",
        )
    )
