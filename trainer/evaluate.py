"""Metrics of a model on a set of clips, with the protocol that makes the number honest."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from serkit.edge.spec import ModelSpec
from serkit.trainer.classify import WindowPredictor, clip_probabilities
from serkit.trainer.corpora import Clip, label_indices
from serkit.trainer.data import ClipStore
from serkit.trainer.metrics import evaluate_predictions


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
    predict: WindowPredictor, spec: ModelSpec, clips: Sequence[Clip], protocol: dict, cache_dir: Path | None
) -> dict:
    store = ClipStore(spec.features, cache_dir)
    ok, feats = store.load(clips, "evaluate features")
    y = label_indices(ok, spec.labels)
    probs = clip_probabilities(predict, feats, spec)
    return evaluate_predictions(probs, y, [c.speaker for c in ok], spec.labels, protocol)
