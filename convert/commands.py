"""`serkit convert`: Keras run → full-int8 .tflite + spec, audited and parity-gated."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from serkit.edge.argtypes import int_at_least, non_negative_float, share
from serkit.edge.errors import SerkitError, require_extra
from serkit.edge.spec import ModelSpec, Quantization
from serkit.trainer.classify import suggested_threshold
from serkit.trainer.cli_args import (
    add_cache_args,
    add_data_args,
    cache_dir,
    load_clips,
)


def representative_windows(feats: list[np.ndarray], labels: np.ndarray, spec, n: int, seed: int) -> np.ndarray:  # noqa: ANN001
    """Calibration windows from training speakers, stratified by class, plus the per-feature extremes.

    Modest on purpose: more calibration data widens ranges with rare outliers and can lower
    int8 accuracy. The two extreme windows make the input scale cover the whole normalised
    range the training data spans, which is what the edge will feed.
    """
    from serkit.edge.windows import clip_windows

    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = max(1, n // len(classes))
    T = spec.frames_per_window
    out = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        for i in rng.choice(idx, size=per_class, replace=len(idx) < per_class):
            f = spec.normalise(np.asarray(feats[i]))
            start = int(rng.integers(0, len(f) - T + 1)) if len(f) > T else 0
            out.append(clip_windows(f[start : start + T], T, T)[0])
    # The extremes go into copies of real windows, a frame every 10: a window made of nothing but one
    # repeated frame collapses some internal ranges to zero, and the converter then leaves float ops behind.
    frames = np.concatenate([spec.normalise(np.asarray(f)) for f in feats])
    for i, extreme in enumerate((frames.min(axis=0), frames.max(axis=0))):
        w = out[i].copy()
        w[i::10] = extreme
        out.append(w)
    return np.stack(out).astype(np.float32)


def cmd_convert(args: argparse.Namespace) -> int:
    require_extra("train", "tensorflow", "keras")
    from serkit.convert.parity import format_table
    from serkit.trainer.classify import resolve_model
    from serkit.trainer.data import ClipStore
    from serkit.trainer.evaluate import protocol_for
    from serkit.trainer.metrics import describe_protocol

    found, spec_path = resolve_model(args.model)
    model_path = Path(found)
    if model_path.suffix != ".keras":
        raise SerkitError(f"{model_path}: convert needs the Keras model of a training run (.keras)")
    spec = ModelSpec.load(spec_path)
    args.data = args.data + args.data_option
    if not args.data:
        raise SerkitError("convert needs the corpus the run was trained on: serkit convert MODEL DATA...")
    clips = [c for c in load_clips(args) if c.label in spec.labels]
    held, train_speakers = parity_speakers(spec, clips, args.speakers)
    store = ClipStore(spec.features, cache_dir(args))
    calib = store.load([c for c in clips if c.speaker in train_speakers], "calibration features")
    parity_set = store.load([c for c in clips if c.speaker in held], "parity features")
    protocol = {**protocol_for(spec, parity_set[0]), "role": "parity"}
    seen = protocol.get("training_speakers_included", [])
    print(
        f"converting {model_path} ({args.calibration_windows} calibration windows from {len(train_speakers)} "
        f"training speakers; parity on {len(parity_set[0])} clips of {len(held)} speakers, {len(seen)} of them "
        "seen in training)",
        file=sys.stderr,
    )
    name = args.name or "model-int8"
    out_dir = Path(args.out) if args.out else model_path.parent
    with tempfile.TemporaryDirectory(prefix="serkit-convert-") as tmp:
        float_path, int8_path, audit = convert_both(model_path, Path(tmp), name, spec, calib, args)
        report, windows = parity_report(model_path, float_path, int8_path, spec, parity_set, protocol, args)
        print(
            format_table(
                report["reports"], report["parity"]["agreement_with_keras_float"], describe_protocol(protocol)
            ),
            file=sys.stderr,
        )
        report["audit"] = audit
        out_dir.mkdir(parents=True, exist_ok=True)
        if report["parity"]["failures"]:
            rejected = out_dir / f"{name}.rejected.json"
            rejected.write_text(json.dumps(report, indent=2) + "\n")
            failures = "; ".join(report["parity"]["failures"])
            raise SerkitError(f"parity gate failed, no model written ({failures}); report: {rejected}")
        write_model(out_dir, name, int8_path, spec, report, windows["tflite_int8"], bool(seen))
    reports = report["reports"]
    print(
        f"wrote {out_dir / (name + '.tflite')} ({audit['file_bytes'] / 1024:.1f} KB, full int8) and {name}.json; "
        f"int8 accuracy {reports['tflite_int8']['accuracy'] * 100:.1f}% vs float "
        f"{reports['keras_float']['accuracy'] * 100:.1f}% ({describe_protocol(protocol)})"
    )
    return 0


def parity_speakers(spec: ModelSpec, clips: list, named: str | None) -> tuple[set[str], set[str]]:
    """(held-out speakers for the parity check, training speakers for calibration) among the clips' speakers."""
    from serkit.trainer.splits import parse_speakers, resolve_speakers

    trained = spec.info.get("training", {}).get("protocol", {})
    speakers = {c.speaker for c in clips}
    held = (
        resolve_speakers(parse_speakers(named), speakers, "--speakers")
        if named
        else (set(trained.get("test_speakers") or trained.get("val_speakers") or []) & speakers)
    )
    if not held and trained.get("kind") == "all-speakers":
        raise SerkitError(
            "this model was trained on every speaker (serkit train --refit), so none are held out: name the "
            "parity speakers with --speakers (int8 is still compared with float there, on voices the model knows)"
        )
    if not held:
        raise SerkitError(
            "no held-out speakers for the parity check in the data: give --speakers, or the corpus the "
            f"run was trained on (its held-out speakers: {', '.join(trained.get('val_speakers', []))})"
        )
    train_speakers = set(trained.get("train_speakers", [])) & speakers - held
    if not train_speakers:
        raise SerkitError(
            "no training speakers of this run in the data, so no representative calibration set; "
            "pass the corpus the run was trained on"
        )
    return held, train_speakers


def convert_both(
    model_path: Path, tmp: Path, name: str, spec: ModelSpec, calib: tuple[list, list], args: argparse.Namespace
) -> tuple[Path, Path, dict]:
    """(float .tflite, int8 .tflite, the int8 file's audit) in tmp; an audit failure is one line."""
    from serkit.convert.audit import strip_names
    from serkit.convert.tflite_convert import convert_in_subprocess, convert_int8_audited
    from serkit.trainer.corpora import label_indices

    clips, feats = calib
    labels = label_indices(clips, spec.labels)
    float_path, int8_path = tmp / "float.tflite", tmp / f"{name}.tflite"
    convert_in_subprocess(model_path, float_path, "float")
    strip_names(float_path)

    def draw(attempt: int) -> np.ndarray:  # a fresh draw for each calibration attempt
        return representative_windows(feats, labels, spec, args.calibration_windows, args.seed + attempt)

    audit = convert_int8_audited(model_path, int8_path, draw, lambda message: print(message, file=sys.stderr))
    if audit["problems"]:
        raise SerkitError(f"{model_path}: the int8 model fails the audit: {'; '.join(audit['problems'])}")
    return float_path, int8_path, {k: v for k, v in audit.items() if k != "problems"}


def parity_report(
    model_path: Path,
    float_path: Path,
    int8_path: Path,
    spec: ModelSpec,
    parity_set: tuple[list, list],
    protocol: dict,
    args: argparse.Namespace,
) -> tuple[dict, dict]:
    """Keras float, TFLite float and int8 on the held-out clips, and int8 under every runtime here, gated."""
    from serkit.convert.parity import Thresholds, compare, gate, run_parity
    from serkit.edge.runtime import TFLiteModel
    from serkit.trainer.classify import keras_predictor
    from serkit.trainer.corpora import label_indices
    from serkit.trainer.metrics import describe_protocol
    from serkit.trainer.tf_import import import_keras

    clips, feats = parity_set
    int8 = TFLiteModel(int8_path, spec)
    predictors = {
        "keras_float": keras_predictor(import_keras().saving.load_model(model_path, compile=False)),
        "tflite_float": TFLiteModel(float_path, spec).predict,
        "tflite_int8": int8.predict,
    }
    y = label_indices(clips, spec.labels)
    reports, windows = run_parity(predictors, spec, feats, y, [c.speaker for c in clips], protocol)
    agreement = {k: compare(windows["keras_float"], windows[k]) for k in ("tflite_float", "tflite_int8")}
    runtimes = runtime_agreement(int8_path, spec, int8.backend, windows["tflite_int8"], feats)
    thresholds = Thresholds(args.max_accuracy_drop, args.min_agreement)
    failures = gate(reports, agreement, thresholds) + [
        f"int8 top-1 under {k} differs from {int8.backend} on {(1 - v) * 100:.1f}% of windows"
        for k, v in runtimes.items()
        if v < 1.0
    ]
    parity = {
        "protocol": protocol,
        "protocol_description": describe_protocol(protocol),
        "thresholds": {
            "max_accuracy_drop_points": thresholds.max_accuracy_drop,
            "min_top1_agreement": thresholds.min_agreement,
        },
        "models": {k: {m: r[m] for m in ("accuracy", "macro_f1", "uar", "clips")} for k, r in reports.items()},
        "agreement_with_keras_float": agreement,
        "int8_runtime_agreement": runtimes,
        "float_tflite_bytes": float_path.stat().st_size,
        "passed": not failures,
        "failures": failures,
    }
    return {"parity": parity, "reports": reports}, windows


def runtime_agreement(
    int8_path: Path, spec: ModelSpec, backend: str, reference: np.ndarray, feats: list
) -> dict[str, float]:
    """Window top-1 agreement of the int8 file under each installed runtime with `backend`'s: the same file
    must decide the same under every runtime the Pi might use."""
    from serkit.convert.parity import recorded_predictions
    from serkit.edge.runtime import TFLiteModel, interpreter_class

    top1 = reference.argmax(1)
    agreement = {backend: 1.0}
    for other in ("ai_edge_litert", "tflite_runtime", "tensorflow"):
        if other in agreement:
            continue
        try:
            interpreter_class(other)
        except SerkitError:
            continue
        _, windows = recorded_predictions(TFLiteModel(int8_path, spec, backend=other).predict, spec, feats)
        agreement[other] = float((windows.argmax(1) == top1).mean())
    return agreement


def write_model(
    out_dir: Path, name: str, int8_path: Path, spec: ModelSpec, report: dict, int8_windows: np.ndarray, seen: bool
) -> None:
    """The int8 file, its spec (quantisation, threshold, parity and audit) and the report, the file last in."""
    from serkit.edge.runtime import TFLiteModel

    int8 = TFLiteModel(int8_path, spec)
    info = {**spec.info, "parity": report["parity"], "audit": report["audit"]}
    final = spec._replace(
        input_quant=Quantization(*int8.input_quantization),
        output_quant=Quantization(*int8.output_quantization),
        # On voices it trained on a model is surer than on new ones; a refit model's threshold
        # already comes from its cross-validation folds' held-out speakers.
        threshold=spec.threshold if seen and spec.threshold > 0 else suggested_threshold(int8_windows),
        model_file=f"{name}.tflite",
        info=info,
    )
    shutil.copyfile(int8_path, out_dir / f".{name}.tflite.part")
    final.save(out_dir / f"{name}.json")
    os.replace(out_dir / f".{name}.tflite.part", out_dir / f"{name}.tflite")
    (out_dir / f"{name}.report.json").write_text(json.dumps(report, indent=2) + "\n")


def register_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="full-int8 TFLite with an op audit and an accuracy-parity gate",
        description="Convert a training run to full-int8 TFLite; refuse if int8 loses accuracy on held-out speakers.",
    )
    p.add_argument("model", help="training run folder or its .keras")
    p.add_argument("data", nargs="*", help="the corpus the run was trained on (folders or CSV manifests)")
    # The earlier spelling, `--data DIR...`: the same list.
    p.add_argument("--data", nargs="+", dest="data_option", default=[], help=argparse.SUPPRESS)
    add_data_args(p)
    p.add_argument(
        "--speakers",
        help="speakers for the parity check (default: the run's test, else val; required for a --refit model)",
    )
    p.add_argument("--out", help="output folder (default: beside the model)")
    p.add_argument("--name", help="file stem of the .tflite/.json (default: model-int8)")
    p.add_argument("--max-accuracy-drop", type=non_negative_float, default=1.0, help="points of accuracy int8 may lose")
    p.add_argument("--min-agreement", type=share, default=0.97, help="least window top-1 agreement with float")
    p.add_argument(
        "--calibration-windows", type=int_at_least(8), default=240, help="representative windows (stratified)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration draw")
    add_cache_args(p)
    p.set_defaults(func=cmd_convert)
