"""One training run: speaker-held-out validation, early stopping, and a run folder with model, spec, metrics, plots.

With no validation speakers (the final model of `serkit train --folds K --refit`) it trains the fixed
schedule and keeps the last averaged weights; its accuracy is the cross-validation estimate, not its own.
With `teachers`, the run is preceded by teacher runs on the same speakers (see jobs.train_models).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from serkit.edge.features import FeatureConfig
from serkit.edge.spec import ModelSpec
from serkit.trainer import corpora, plots
from serkit.trainer.classify import RecordingPredictor, clip_probabilities, keras_predictor, suggested_threshold
from serkit.trainer.corpora import Clip
from serkit.trainer.data import Augment, ClipStore, TrainingStream, class_weights, normalisation_stats
from serkit.trainer.metrics import describe_protocol, evaluate_predictions, format_report
from serkit.trainer.model import ModelConfig, build_model
from serkit.trainer.splits import Split

# The shipped model's features: all 40 cepstra of 40 mel bands with log energy in c0; no deltas
# (the time convolutions see neighbouring frames, and the streaming path stays lean).
DEFAULT_FEATURES = FeatureConfig(numcep=40, nfilt=40, lowfreq=50.0, delta_order=0)


@dataclass(frozen=True)
class TrainOptions:
    features: FeatureConfig = DEFAULT_FEATURES
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: Augment = field(default_factory=Augment)
    window_s: float = 3.0
    hop_s: float = 0.5
    batch_size: int = 32
    epochs: int = 60
    min_epochs: int = 15
    patience: int = 15
    learning_rate: float = 2e-3
    label_smoothing: float = 0.05
    monitor: str = "loss"  # "loss" (clip-level val cross-entropy) or "uar"
    average_epochs: int = 10
    seed: int = 0
    teachers: int = 0  # runs with other seeds whose mean prediction the model also learns from (train_models)
    distil_weight: float = 0.5  # the teachers' share of each training target
    teacher_epochs: int | None = None  # the teachers' own schedule; None: epochs

    def frames_per_window(self) -> int:
        f = self.features
        return max(1, round((self.window_s - f.winlen) / f.winstep) + 1)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["features"] = self.features.to_dict()
        d["model"] = self.model.to_dict()
        d["augment"] = self.augment.to_dict()
        return d


def stderr_log(verbose: bool) -> Callable[[str], None]:
    """A progress printer to stderr, or one that prints nothing."""
    return (lambda message: print(message, file=sys.stderr, flush=True)) if verbose else (lambda message: None)


def mean_weights(snapshots: Sequence[Sequence]) -> list:
    """Element-wise mean of several get_weights() lists (batch-norm statistics included)."""
    return [sum(ws) / len(snapshots) for ws in zip(*snapshots, strict=True)]


def distil_targets(labels: Any, teacher_probs: Sequence[Any], weight: float) -> Any:
    """Each window's training target: its (mixed-up) label distribution blended with the teachers' mean."""
    return (1.0 - weight) * labels + weight * (sum(teacher_probs) / len(teacher_probs))


def distilled(dataset: Any, teachers: Sequence, weight: float) -> Any:
    """The (windows, targets, weights) dataset with each target blended with the teachers' mean on those windows."""

    def distil(x, y, sample_weight):  # noqa: ANN001, ANN202
        return x, distil_targets(y, [t(x, training=False) for t in teachers], weight), sample_weight

    return dataset.map(distil)


def validation_report(
    model: Any, teachers: Sequence, spec: ModelSpec, clips: Sequence[Clip], feats: Sequence[np.ndarray], protocol: dict
) -> dict:
    """A trained model's metrics on its held-out clips, its median window confidence and its teachers' mean."""
    labels = spec.labels
    y = corpora.label_indices(clips, labels)
    speakers = [c.speaker for c in clips]
    recorder = RecordingPredictor(keras_predictor(model))
    report = evaluate_predictions(clip_probabilities(recorder, feats, spec), y, speakers, labels, protocol)
    # How sure the model is on voices it never heard: `--refit` sets its publishing threshold from this.
    report["median_window_confidence"] = suggested_threshold(recorder.windows)
    if teachers:  # what the distilled model is measured against, on the same held-out clips
        mean_probs = sum(clip_probabilities(keras_predictor(t), feats, spec) for t in teachers) / len(teachers)
        ensemble = evaluate_predictions(mean_probs, y, speakers, labels, protocol)
        report["teacher_ensemble"] = {k: ensemble[k] for k in ("accuracy", "macro_f1", "uar")}
    return report


def train_run(
    split: Split,
    labels: Sequence[str],
    options: TrainOptions,
    out_dir: Path,
    cache_dir: Path | None,
    data_summary: dict | None = None,
    verbose: bool = True,
    teachers: Sequence = (),
) -> tuple[dict, ModelSpec]:
    """Train on split.train, stop on split.val, write everything to out_dir; returns (val report, spec).

    `teachers` (Keras models trained on the same split) make the targets those of distil_targets.
    """
    from serkit.trainer.tf_import import import_keras

    keras = import_keras()
    log = stderr_log(verbose)
    keras.utils.set_random_seed(options.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    store = ClipStore(options.features, cache_dir)
    train_clips, train_feats = store.load(split.train, "train features")
    val_clips, val_feats = store.load(split.val, "validation features") if split.val else ([], [])
    mean, std = normalisation_stats(train_feats)
    T = options.frames_per_window()
    spec = ModelSpec(
        labels=tuple(labels),
        features=options.features,
        mean=mean,
        std=std,
        frames_per_window=T,
        hop_s=options.hop_s,
        threshold=0.0,
    )
    y_train = corpora.label_indices(train_clips, labels)
    y_val = corpora.label_indices(val_clips, labels)
    weights = class_weights(y_train, len(labels))
    stream = TrainingStream(
        store, train_clips, y_train, mean, std, T, options.batch_size, weights, options.augment, options.seed
    )

    stream.prepare()
    import tensorflow as tf

    F = options.features.num_features
    dataset = tf.data.Dataset.from_generator(
        stream.batches,
        output_signature=(
            tf.TensorSpec((None, T, F), tf.float32),
            tf.TensorSpec((None, len(labels)), tf.float32),
            tf.TensorSpec((None,), tf.float32),
        ),
    )
    if teachers:
        dataset = distilled(dataset, teachers, options.distil_weight)
    dataset = dataset.prefetch(4)
    model = build_model(T, F, len(labels), options.model)
    steps = stream.steps_per_epoch()
    schedule = keras.optimizers.schedules.CosineDecay(
        options.learning_rate, decay_steps=steps * options.epochs, alpha=0.05
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=options.label_smoothing),
        metrics=["accuracy"],
    )
    protocol = split.protocol
    val_speakers = [c.speaker for c in val_clips]
    log(f"model: {model.count_params():,} parameters; window {spec.window_s:.2f} s = {T} frames x {F} features")
    log(
        f"train: {len(train_clips)} clips from {len(set(c.speaker for c in train_clips))} speakers; "
        + (f"validation: {len(val_clips)} clips, " if val_clips else "")
        + describe_protocol(protocol)
    )
    if options.average_epochs > 1:
        log(f"the saved model (and validation) use the mean weights of the last {options.average_epochs} epochs")

    # Validation, the best-epoch pick and the saved model all use the mean of the last
    # average_epochs epochs' weights: with ~30 steps an epoch the raw weights swing several
    # points on unseen speakers from one epoch to the next, and stopping on such a swing keeps
    # a lucky spike rather than a model that generalises (stochastic weight averaging, Izmailov 2018).
    averaged = build_model(T, F, len(labels), options.model)
    predictor = keras_predictor(averaged)
    snapshots: deque[list] = deque(maxlen=max(1, options.average_epochs))
    history: dict[str, list[float]] = {k: [] for k in ("loss", "accuracy", "val_loss", "val_accuracy", "val_uar")}
    best = {"score": math.inf, "epoch": 0, "weights": None}
    started = time.time()
    validate = bool(val_clips)
    if not validate:
        log(f"no validation speakers: a fixed {options.epochs} epochs, keeping the last averaged weights")
    for epoch in range(1, options.epochs + 1):
        h = model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
        snapshots.append(model.get_weights())
        averaged.set_weights(mean_weights(snapshots))
        history["loss"].append(float(h.history["loss"][-1]))
        history["accuracy"].append(float(h.history["accuracy"][-1]))
        head = (
            f"epoch {epoch:3d}/{options.epochs}  train loss {history['loss'][-1]:.3f} acc {history['accuracy'][-1]:.3f}"
        )
        if not validate:
            log(f"{head}  [{time.time() - started:5.0f} s]")
            continue
        probs = clip_probabilities(predictor, val_feats, spec)
        rep = evaluate_predictions(probs, y_val, val_speakers, labels, protocol)
        history["val_loss"].append(rep["log_loss"])
        history["val_accuracy"].append(rep["accuracy"])
        history["val_uar"].append(rep["uar"])
        score = rep["log_loss"] if options.monitor == "loss" else -rep["uar"]
        mark = ""
        if epoch >= options.min_epochs and score < best["score"]:
            best = {"score": score, "epoch": epoch, "weights": averaged.get_weights()}
            mark = "  *best"
        log(
            f"{head}  | val loss {rep['log_loss']:.3f} acc {rep['accuracy'] * 100:5.1f}% UAR {rep['uar'] * 100:5.1f}%"
            f"  [{time.time() - started:5.0f} s]{mark}"
        )
        if best["epoch"] and epoch - best["epoch"] >= options.patience:
            log(f"early stop: no better validation {options.monitor} for {options.patience} epochs")
            break
    if best["weights"] is None:  # fewer epochs than min_epochs, or nothing to validate on: keep the last
        best = {"score": math.nan, "epoch": epoch, "weights": averaged.get_weights()}
    averaged.set_weights(best["weights"])
    history["best_epoch"] = [best["epoch"]]
    elapsed = time.time() - started

    report: dict = {"best_epoch": best["epoch"], "train_seconds": round(elapsed, 1), "protocol": protocol}
    if validate:
        report = {**validation_report(averaged, teachers, spec, val_clips, val_feats, protocol), **report}
        if teachers:
            ensemble = report["teacher_ensemble"]
            log(
                f"the {len(teachers)} teachers' mean on the same clips: accuracy {ensemble['accuracy'] * 100:.1f}%, "
                f"UAR {ensemble['uar'] * 100:.1f}%"
            )

    info = {
        "training": {
            "protocol": protocol,
            "protocol_description": describe_protocol(protocol),
            "options": options.to_dict(),
            "parameters": int(model.count_params()),
            "best_epoch": best["epoch"],
            "train_seconds": round(elapsed, 1),
            "data": data_summary or corpora.summary(list(split.train) + list(split.val) + list(split.test)),
        },
        "validation": {k: report[k] for k in ("accuracy", "macro_f1", "uar", "clips")} if validate else None,
    }
    spec = replace(spec, info=info, model_file="model.keras")
    # The uncompiled twin holds the weights alone: the optimizer state would triple the file for nothing.
    averaged.save(out_dir / "model.keras")
    spec.save(out_dir / "model.json")
    (out_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    title = f"{describe_protocol(protocol)}"
    plots.training_curves(history, out_dir / "training_curves.png", title)
    if validate:
        (out_dir / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
        plots.confusion_matrix_png(
            report["confusion_matrix"],
            labels,
            out_dir / "confusion_matrix.png",
            f"val accuracy {report['accuracy'] * 100:.1f}%, UAR {report['uar'] * 100:.1f}% — {title}",
        )
        log(format_report(report, f"validation (best epoch {best['epoch']}, {elapsed:.0f} s)"))
    return report, spec
