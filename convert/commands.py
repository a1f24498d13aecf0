"""`serkit convert`: Keras run → full-int8 .tflite + spec, audited and parity-gated."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from serkit.edge.errors import SerkitError, require_extra


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
    from serkit.trainer.tf_import import import_keras

    keras = import_keras()

    from serkit.convert.audit import strip_names
    from serkit.convert.parity import Thresholds, compare, format_table, gate, run_parity
    from serkit.convert.tflite_convert import convert_in_subprocess, convert_int8_audited
    from serkit.edge.runtime import TFLiteModel, interpreter_class
    from serkit.edge.spec import ModelSpec, Quantization
    from serkit.trainer import corpora
    from serkit.trainer.classify import keras_predictor, resolve_model, suggested_threshold
    from serkit.trainer.commands import _cache
    from serkit.trainer.data import ClipStore
    from serkit.trainer.evaluate import protocol_for
    from serkit.trainer.metrics import describe_protocol
    from serkit.trainer.splits import parse_speakers, resolve_speakers

    model_path, spec_path = resolve_model(args.model)
    if model_path.suffix != ".keras":
        raise SerkitError(f"{model_path}: convert needs the Keras model of a training run (.keras)")
    spec = ModelSpec.load(spec_path)
    trained = spec.info.get("training", {}).get("protocol", {})
    clips = corpora.load_corpora(args.data, args.dataset)
    clips = corpora.apply_labels(clips, corpora.parse_label_map(args.labels, {c.label for c in clips}))
    clips = [c for c in clips if c.label in spec.labels]
    speakers = {c.speaker for c in clips}
    held = (
        resolve_speakers(parse_speakers(args.speakers), speakers, "--speakers")
        if args.speakers
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
    store = ClipStore(spec.features, _cache(args))
    calib_clips, calib_feats = store.load([c for c in clips if c.speaker in train_speakers], "calibration features")
    par_clips, par_feats = store.load([c for c in clips if c.speaker in held], "parity features")
    calib_labels = corpora.label_indices(calib_clips, spec.labels)
    calibration = representative_windows(calib_feats, calib_labels, spec, args.calibration_windows, args.seed)
    name = args.name or "model-int8"
    out_dir = Path(args.out) if args.out else model_path.parent
    protocol = {**protocol_for(spec, [c for c in clips if c.speaker in held]), "role": "parity"}
    seen = protocol.get("training_speakers_included", [])
    thresholds = Thresholds(args.max_accuracy_drop, args.min_agreement)
    print(
        f"converting {model_path} ({len(calibration)} calibration windows from {len(train_speakers)} training "
        f"speakers; parity on {len(par_clips)} clips of {len(held)} speakers, {len(seen)} of them seen in training)",
        file=sys.stderr,
    )

    with tempfile.TemporaryDirectory(prefix="serkit-convert-") as tmp:
        float_path, int8_path = Path(tmp) / "float.tflite", Path(tmp) / f"{name}.tflite"
        convert_in_subprocess(model_path, float_path, "float")
        strip_names(float_path)

        def draw(attempt: int) -> np.ndarray:
            if attempt == 0:
                return calibration
            return representative_windows(
                calib_feats, calib_labels, spec, args.calibration_windows, args.seed + attempt
            )

        report_audit = convert_int8_audited(
            model_path, int8_path, draw, lambda message: print(message, file=sys.stderr)
        )
        problems = report_audit["problems"]
        if problems:
            raise SerkitError(f"{model_path}: the int8 model fails the audit: {'; '.join(problems)}")
        model = keras.saving.load_model(model_path, compile=False)
        int8 = TFLiteModel(int8_path, spec)
        predictors = {
            "keras_float": keras_predictor(model),
            "tflite_float": TFLiteModel(float_path, spec).predict,
            "tflite_int8": int8.predict,
        }
        y = corpora.label_indices(par_clips, spec.labels)
        reports, windows = run_parity(predictors, spec, par_feats, y, [c.speaker for c in par_clips], protocol)
        agreement = {k: compare(windows["keras_float"], windows[k]) for k in ("tflite_float", "tflite_int8")}
        # The same int8 file must decide the same under every runtime the Pi might use.
        runtimes = {int8.backend: windows["tflite_int8"].argmax(1)}
        for backend in ("ai_edge_litert", "tflite_runtime", "tensorflow"):
            if backend in runtimes:
                continue
            try:
                interpreter_class(backend)
            except SerkitError:
                continue
            other = TFLiteModel(int8_path, spec, backend=backend)
            runtimes[backend] = run_parity({"x": other.predict}, spec, par_feats, y, [""] * len(y), protocol)[1][
                "x"
            ].argmax(1)
        ref_top1 = runtimes[int8.backend]
        runtime_agreement = {k: float((v == ref_top1).mean()) for k, v in runtimes.items()}
        failures = gate(reports, agreement, thresholds)
        failures += [
            f"int8 top-1 under {k} differs from {int8.backend} on {(1 - v) * 100:.1f}% of windows"
            for k, v in runtime_agreement.items()
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
            "int8_runtime_agreement": runtime_agreement,
            "float_tflite_bytes": float_path.stat().st_size,
            "passed": not failures,
            "failures": failures,
        }
        report = {"parity": parity, "audit": report_audit, "reports": reports}
        print(format_table(reports, agreement, describe_protocol(protocol)), file=sys.stderr)
        out_dir.mkdir(parents=True, exist_ok=True)
        if failures:
            rejected = out_dir / f"{name}.rejected.json"
            rejected.write_text(json.dumps(report, indent=2) + "\n")
            raise SerkitError(f"parity gate failed, no model written ({'; '.join(failures)}); report: {rejected}")
        in_q, out_q = int8._in["quantization"], int8._out["quantization"]
        info = {**spec.info, "parity": parity, "audit": {k: v for k, v in report_audit.items() if k != "problems"}}
        final = replace(
            spec,
            input_quant=Quantization(float(in_q[0]), int(in_q[1])),
            output_quant=Quantization(float(out_q[0]), int(out_q[1])),
            # On voices it trained on a model is surer than on new ones; a refit model's threshold
            # already comes from its cross-validation folds' held-out speakers.
            threshold=spec.threshold if seen and spec.threshold > 0 else suggested_threshold(windows["tflite_int8"]),
            model_file=f"{name}.tflite",
            info=info,
        )
        shutil.copyfile(int8_path, out_dir / f".{name}.tflite.part")
        final.save(out_dir / f"{name}.json")
        os.replace(out_dir / f".{name}.tflite.part", out_dir / f"{name}.tflite")
        (out_dir / f"{name}.report.json").write_text(json.dumps(report, indent=2) + "\n")
    size = report_audit["file_bytes"]
    print(
        f"wrote {out_dir / (name + '.tflite')} ({size / 1024:.1f} KB, full int8) and {name}.json; int8 accuracy "
        f"{reports['tflite_int8']['accuracy'] * 100:.1f}% vs float {reports['keras_float']['accuracy'] * 100:.1f}% "
        f"({describe_protocol(protocol)})"
    )
    return 0


def register_convert(sub: argparse._SubParsersAction) -> None:
    from serkit.trainer.commands import _add_data_args, _common

    p = sub.add_parser(
        "convert",
        help="full-int8 TFLite with an op audit and an accuracy-parity gate",
        description="Convert a training run to full-int8 TFLite; refuse if int8 loses accuracy on held-out speakers.",
    )
    p.add_argument("model", help="training run folder or its .keras")
    p.add_argument("--data", nargs="+", required=True, help="the corpus the run was trained on")
    _add_data_args(p)
    p.add_argument(
        "--speakers",
        help="speakers for the parity check (default: the run's test, else val; required for a --refit model)",
    )
    p.add_argument("--out", help="output folder (default: beside the model)")
    p.add_argument("--name", help="file stem of the .tflite/.json (default: model-int8)")
    p.add_argument("--max-accuracy-drop", type=float, default=1.0, help="points of accuracy int8 may lose (1.0)")
    p.add_argument("--min-agreement", type=float, default=0.97, help="min window top-1 agreement with float (0.97)")
    p.add_argument("--calibration-windows", type=int, default=240, help="representative windows (stratified)")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration draw (default 0)")
    _common(p)
    p.set_defaults(func=cmd_convert)
