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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serkit.edge.features import FeatureConfig
from serkit.edge.spec import ModelSpec
from serkit.trainer import corpora, plots
from serkit.trainer.classify import RecordingPredictor, clip_probabilities, keras_predictor, suggested_threshold
from serkit.trainer.corpora import Clip
from serkit.trainer.data import Augment, ClipStore, TrainingStream, class_weights, normalisation_stats
from serkit.trainer.evaluate import room_report
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
    teacher_model: ModelConfig | None = None  # the teachers' own network (they are not shipped); None: model
    room_eval: bool = False  # also score the held-out speakers in simulated rooms (evaluate.room_report)

    def frames_per_window(self) -> int:
        f = self.features
        return max(1, round((self.window_s - f.winlen) / f.winstep) + 1)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["features"] = self.features.to_dict()
        d["model"] = self.model.to_dict()
        d["augment"] = self.augment.to_dict()
        d["teacher_model"] = self.teacher_model.to_dict() if self.teacher_model else None
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
    """(windows, teachers' windows, targets, weights) batches as (windows, targets, weights), each target blended
    with the teachers' mean on the teachers' windows (the model's own, or for a window in a room the same
    window of the clean clip: see TrainingStream)."""

    def distil(x, clean, y, sample_weight):  # noqa: ANN001, ANN202
        return x, distil_targets(y, [t(clean, training=False) for t in teachers], weight), sample_weight

    return dataset.map(distil)


def validation_report(
    model: Any,
    teachers: Sequence,
    spec: ModelSpec,
    clips: Sequence[Clip],
    feats: Sequence[np.ndarray],
    protocol: dict,
    rooms: ClipStore | None = None,
) -> dict:
    """A trained model's metrics on its held-out clips, its median window confidence and its teachers' mean;
    with a store for `rooms`, the same clips in simulated rooms too."""
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
    if rooms is not None:
        report["room"] = room_report(keras_predictor(model), spec, rooms, clips, protocol)
    return report


@dataclass
class RunData:
    """What one run trains and validates on: clips, their features and label indices, and the spec."""

    spec: ModelSpec
    store: ClipStore
    train_clips: list[Clip]
    train_feats: list[np.ndarray]
    y_train: list[int]
    val_clips: list[Clip]
    val_feats: list[np.ndarray]
    y_val: list[int]


def load_run_data(split: Split, labels: Sequence[str], options: TrainOptions, cache_dir: Path | None) -> RunData:
    """Features of the split's clips and the spec they define (normalisation from the training speakers)."""
    store = ClipStore(options.features, cache_dir)
    train_clips, train_feats = store.load(split.train, "train features")
    val_clips, val_feats = store.load(split.val, "validation features") if split.val else ([], [])
    mean, std = normalisation_stats(train_feats)
    spec = ModelSpec(
        labels=tuple(labels),
        features=options.features,
        mean=mean,
        std=std,
        frames_per_window=options.frames_per_window(),
        hop_s=options.hop_s,
        threshold=0.0,
    )
    y_train = corpora.label_indices(train_clips, labels)
    y_val = corpora.label_indices(val_clips, labels)
    return RunData(spec, store, train_clips, train_feats, y_train, val_clips, val_feats, y_val)


def training_dataset(data: RunData, options: TrainOptions, teachers: Sequence) -> tuple[Any, int]:
    """(tf.data pipeline of augmented batches, steps per epoch), targets distilled when there are teachers."""
    import tensorflow as tf

    spec, T, F = data.spec, data.spec.frames_per_window, options.features.num_features
    weights = class_weights(data.y_train, len(spec.labels))
    stream = TrainingStream(
        data.store,
        data.train_clips,
        data.y_train,
        spec.mean,
        spec.std,
        T,
        options.batch_size,
        weights,
        options.augment,
        options.seed,
        teacher_view=bool(teachers),
    )
    stream.prepare()
    windows = (tf.TensorSpec((None, T, F), tf.float32),) * (2 if teachers else 1)
    dataset = tf.data.Dataset.from_generator(
        stream.batches,
        output_signature=(
            *windows,
            tf.TensorSpec((None, len(spec.labels)), tf.float32),
            tf.TensorSpec((None,), tf.float32),
        ),
    )
    if teachers:
        dataset = distilled(dataset, teachers, options.distil_weight)
    return dataset.prefetch(4), stream.steps_per_epoch()


def compiled_model(options: TrainOptions, spec: ModelSpec, steps: int) -> Any:
    """The CNN-LSTM with Adam on a cosine schedule and label-smoothed cross-entropy."""
    from serkit.trainer.tf_import import import_keras

    keras = import_keras()
    model = build_model(spec.frames_per_window, options.features.num_features, len(spec.labels), options.model)
    schedule = keras.optimizers.schedules.CosineDecay(
        options.learning_rate, decay_steps=steps * options.epochs, alpha=0.05
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=options.label_smoothing),
        metrics=["accuracy"],
    )
    return model


def fit_averaged(
    model: Any, dataset: Any, steps: int, data: RunData, options: TrainOptions, protocol: dict, log: Callable
) -> tuple[Any, int, dict]:
    """Train epoch by epoch; returns (the averaged model with the chosen weights, its epoch, history).

    Validation, the best-epoch pick and the saved model all use the mean of the last
    average_epochs epochs' weights: with ~30 steps an epoch the raw weights swing several
    points on unseen speakers from one epoch to the next, and stopping on such a swing keeps
    a lucky spike rather than a model that generalises (stochastic weight averaging, Izmailov 2018).
    """
    spec = data.spec
    averaged = build_model(spec.frames_per_window, options.features.num_features, len(spec.labels), options.model)
    predictor = keras_predictor(averaged)
    snapshots: deque[list] = deque(maxlen=max(1, options.average_epochs))
    history: dict[str, list[float]] = {k: [] for k in ("loss", "accuracy", "val_loss", "val_accuracy", "val_uar")}
    best = {"score": math.inf, "epoch": 0, "weights": None}
    started = time.time()
    speakers = [c.speaker for c in data.val_clips]
    for epoch in range(1, options.epochs + 1):
        h = model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
        snapshots.append(model.get_weights())
        averaged.set_weights(mean_weights(snapshots))
        history["loss"].append(float(h.history["loss"][-1]))
        history["accuracy"].append(float(h.history["accuracy"][-1]))
        head = (
            f"epoch {epoch:3d}/{options.epochs}  train loss {history['loss'][-1]:.3f} acc {history['accuracy'][-1]:.3f}"
        )
        if not data.val_clips:
            log(f"{head}  [{time.time() - started:5.0f} s]")
            continue
        probs = clip_probabilities(predictor, data.val_feats, spec)
        rep = evaluate_predictions(probs, data.y_val, speakers, spec.labels, protocol)
        for key, value in (("val_loss", rep["log_loss"]), ("val_accuracy", rep["accuracy"]), ("val_uar", rep["uar"])):
            history[key].append(value)
        score = rep["log_loss"] if options.monitor == "loss" else -rep["uar"]
        mark = ""
        if epoch >= options.min_epochs and score < best["score"]:
            best, mark = {"score": score, "epoch": epoch, "weights": averaged.get_weights()}, "  *best"
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
    return averaged, best["epoch"], history


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

    import_keras().utils.set_random_seed(options.seed)
    log = stderr_log(verbose)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_run_data(split, labels, options, cache_dir)
    dataset, steps = training_dataset(data, options, teachers)
    model = compiled_model(options, data.spec, steps)
    protocol = split.protocol
    log(
        f"model: {model.count_params():,} parameters; window {data.spec.window_s:.2f} s = "
        f"{data.spec.frames_per_window} frames x {options.features.num_features} features"
    )
    log(
        f"train: {len(data.train_clips)} clips from {len({c.speaker for c in data.train_clips})} speakers; "
        + (f"validation: {len(data.val_clips)} clips, " if data.val_clips else "")
        + describe_protocol(protocol)
    )
    if options.average_epochs > 1:
        log(f"the saved model (and validation) use the mean weights of the last {options.average_epochs} epochs")
    if not data.val_clips:
        log(f"no validation speakers: a fixed {options.epochs} epochs, keeping the last averaged weights")
    started = time.time()
    averaged, best_epoch, history = fit_averaged(model, dataset, steps, data, options, protocol, log)
    elapsed = time.time() - started
    report: dict = {"best_epoch": best_epoch, "train_seconds": round(elapsed, 1), "protocol": protocol}
    if data.val_clips:
        rooms = data.store if options.room_eval else None
        report = {
            **validation_report(averaged, teachers, data.spec, data.val_clips, data.val_feats, protocol, rooms),
            **report,
        }
        if teachers:
            ensemble = report["teacher_ensemble"]
            log(
                f"the {len(teachers)} teachers' mean on the same clips: accuracy {ensemble['accuracy'] * 100:.1f}%, "
                f"UAR {ensemble['uar'] * 100:.1f}%"
            )
    summary = data_summary or corpora.summary(list(split.train) + list(split.val) + list(split.test))
    spec = write_run(out_dir, averaged, data.spec, options, report, history, summary, model.count_params())
    if data.val_clips:
        log(format_report(report, f"validation (best epoch {best_epoch}, {elapsed:.0f} s)"))
    return report, spec


def write_run(
    out_dir: Path,
    model: Any,
    spec: ModelSpec,
    options: TrainOptions,
    report: dict,
    history: dict,
    data_summary: dict,
    parameters: int,
) -> ModelSpec:
    """model.keras, model.json (the spec with the run's training record), history, curves, metrics and matrix."""
    protocol = report["protocol"]
    validated = "accuracy" in report
    info = {
        "training": {
            "protocol": protocol,
            "protocol_description": describe_protocol(protocol),
            "options": options.to_dict(),
            "parameters": int(parameters),
            "best_epoch": report["best_epoch"],
            "train_seconds": report["train_seconds"],
            "data": data_summary,
        },
        "validation": {k: report[k] for k in ("accuracy", "macro_f1", "uar", "clips")} if validated else None,
    }
    spec = spec._replace(info=info, model_file="model.keras")
    # The uncompiled twin holds the weights alone: the optimizer state would triple the file for nothing.
    model.save(out_dir / "model.keras")
    spec.save(out_dir / "model.json")
    (out_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    title = describe_protocol(protocol)
    plots.training_curves(history, out_dir / "training_curves.png", title)
    if validated:
        (out_dir / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
        plots.confusion_matrix_png(
            report["confusion_matrix"],
            spec.labels,
            out_dir / "confusion_matrix.png",
            f"val accuracy {report['accuracy'] * 100:.1f}%, UAR {report['uar'] * 100:.1f}% — {title}",
        )
    return spec
