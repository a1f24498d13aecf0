"""`serkit train`, `serkit evaluate`, `serkit predict`. Heavy imports happen inside the handlers."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from serkit.edge.errors import SerkitError, require_extra

PRESET_HELP = (
    "labels to keep/merge: 'all' (default), 'common6', 'neutral,happy,sad', 'calm=neutral' (combine with commas)"
)


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def _fraction(text: str) -> float:
    v = _positive_float(text)
    if v > 1:
        raise argparse.ArgumentTypeError(f"must be at most 1, got {text}")
    return v


def _int_at_least(lo: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {text}")
        return v

    return parse


def _add_data_args(p: argparse.ArgumentParser) -> None:
    from serkit.trainer.corpora import DATASETS

    p.add_argument("--dataset", default="auto", choices=DATASETS, help="naming scheme (default: detect per folder)")
    p.add_argument("--labels", help=PRESET_HELP)


def _load(args: argparse.Namespace):  # noqa: ANN202
    from serkit.trainer import corpora

    clips = corpora.load_corpora(args.data, args.dataset)
    mapping = corpora.parse_label_map(args.labels, {c.label for c in clips})
    return corpora.apply_labels(clips, mapping)


def _cache(args: argparse.Namespace) -> Path | None:
    from serkit.trainer.data import default_cache_dir

    if args.no_cache:
        return None
    return Path(args.cache) if args.cache else default_cache_dir()


def cross_validation_summary(reports: list[dict], labels: list[str], folds: int) -> dict:
    """Mean ± std over folds, and every clip pooled as scored by the fold that held its speaker out."""
    from serkit.trainer.metrics import metrics_from_confusion

    keys = ("accuracy", "macro_f1", "uar")
    pooled = metrics_from_confusion(np.sum([r["confusion_matrix"] for r in reports], axis=0), labels)
    pooled["per_speaker"] = {s: v for r in reports for s, v in r["per_speaker"].items()}
    return {
        "protocol": {"kind": "k-fold", "folds": folds, "held_out_speakers": "every speaker once"},
        **{k: float(np.mean([r[k] for r in reports])) for k in keys},
        **{f"{k}_std": float(np.std([r[k] for r in reports])) for k in keys},
        "per_fold": [
            {k: r[k] for k in (*keys, "clips", "best_epoch", "teacher_ensemble") if k in r}
            | {"speakers": r["protocol"]["held_out_speakers"]}
            for r in reports
        ],
        "pooled": pooled,
    }


def _or(value: object, default: object) -> object:
    return default if value is None else value


def _given(args: argparse.Namespace, *names: str) -> list[str]:
    """How the user spelled those of the options (defaults None) they gave, e.g. ["--patience"]."""
    return [f"--{name.replace('_', '-')}" for name in names if getattr(args, name) is not None]


def cmd_train(args: argparse.Namespace) -> int:
    if args.refit and not args.folds:
        raise SerkitError(
            "--refit needs --folds K: a model trained on every speaker has no held-out speakers, so its only "
            "honest accuracy is the cross-validation estimate"
        )
    teaching = _given(args, "distil_weight", "teacher_epochs")
    if teaching and not args.teachers:
        raise SerkitError(f"{teaching[0]} needs --teachers N: without teachers it would change nothing")
    stopping = _given(args, "min_epochs", "patience", "monitor")
    if args.folds and stopping:
        raise SerkitError(
            f"{', '.join(stopping)} cannot be used with --folds: each fold trains the fixed --epochs, since its "
            "held-out speakers are its test speakers and must not choose when it stops"
        )
    # After the checks of the flags alone, which need nothing installed; before any data is read.
    require_extra("train", "tensorflow", "keras", "matplotlib")
    from serkit.trainer import corpora, plots
    from serkit.trainer.data import Augment
    from serkit.trainer.jobs import train_models
    from serkit.trainer.metrics import describe_protocol, format_report
    from serkit.trainer.model import ModelConfig
    from serkit.trainer.splits import clip_split, every_speaker, parse_speakers, speaker_folds, speaker_split
    from serkit.trainer.train import TrainOptions

    clips = _load(args)
    labels = corpora.label_order(clips)
    if len(labels) < 2:
        raise SerkitError(f"training needs at least 2 labels, the data has {labels}")
    options = TrainOptions(
        model=replace(ModelConfig(), rnn=args.rnn, rnn_units=args.units, centre=args.centre),
        augment=Augment(
            noise=not args.no_noise,
            gain=not args.no_gain,
            shift=not args.no_shift,
            specaugment=not args.no_specaugment,
            speed=not args.no_speed,
            warp=not args.no_warp,
            mixup=not args.no_mixup,
        ),
        window_s=args.window_s,
        hop_s=args.hop_s,
        epochs=args.epochs,
        min_epochs=min(_or(args.min_epochs, TrainOptions.min_epochs), args.epochs),
        patience=_or(args.patience, TrainOptions.patience),
        batch_size=args.batch_size,
        monitor=_or(args.monitor, TrainOptions.monitor),
        average_epochs=args.average_epochs,
        seed=args.seed,
        teachers=args.teachers,
        distil_weight=_or(args.distil_weight, TrainOptions.distil_weight),
        teacher_epochs=args.teacher_epochs,
    )
    out = Path(args.out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}")
    summary = corpora.summary(clips)
    print(
        f"data: {summary['clips']} clips, {summary['speakers']} speakers, labels {', '.join(labels)}", file=sys.stderr
    )
    if args.folds:
        # Each fold's held-out speakers are its test speakers, so they must not choose its epoch:
        # stopping on them would flatter the estimate. The folds train the fixed schedule, which is
        # also what a --refit model, with no speakers to stop on, trains.
        options = replace(options, min_epochs=options.epochs, patience=options.epochs)
        splits = speaker_folds(clips, args.folds, seed=args.seed)
        models = []
        for split in splits:
            fold = split.protocol["fold"]
            print(f"fold {fold}/{args.folds}: {describe_protocol(split.protocol)}", file=sys.stderr)
            models.append((f"fold {fold}/{args.folds}", split, out / f"fold{fold}"))
        if args.refit:  # trains beside the folds; its estimate is filled in when they are done
            final = every_speaker(clips, f"{args.folds}-fold cross-validation by speaker, cv_metrics.json")
            models.append(("final model (every speaker)", final, out))
        results = train_models(models, labels, options, _cache(args), summary, jobs=args.jobs)
        reports = [rep for rep, _ in results[: args.folds]]
        cv = cross_validation_summary(reports, labels, args.folds)
        (out / "cv_metrics.json").write_text(json.dumps(cv, indent=2) + "\n")
        plots.confusion_matrix_png(
            cv["pooled"]["confusion_matrix"],
            labels,
            out / "cv_confusion_matrix.png",
            f"{args.folds}-fold by speaker, every clip scored by the fold that held its speaker out: "
            f"accuracy {cv['pooled']['accuracy'] * 100:.1f}%",
        )
        line = (
            f"accuracy {cv['accuracy'] * 100:.1f}% ± {cv['accuracy_std'] * 100:.1f}, "
            f"UAR {cv['uar'] * 100:.1f}% ± {cv['uar_std'] * 100:.1f} "
            f"(mean ± std over {args.folds} folds by speaker, every speaker held out once)"
        )
        print(f"cross-validation: {line}", file=sys.stderr if args.refit else sys.stdout)
        if not args.refit:
            print(f"-> {out}")
            return 0
        spec = results[-1][1]
        protocol = {**spec.info["training"]["protocol"], "estimate": line}
        training = {**spec.info["training"], "protocol": protocol, "protocol_description": describe_protocol(protocol)}
        # The publishing threshold comes from held-out voices too: on voices it trained on a model is surer.
        threshold = float(np.median([r["median_window_confidence"] for r in reports]))
        spec = replace(spec, threshold=threshold, info={**spec.info, "training": training, "cross_validation": cv})
        spec.save(out / "model.json")
        # Its curves were drawn before the folds finished; their title gets the estimate too.
        history = json.loads((out / "history.json").read_text())
        plots.training_curves(history, out / "training_curves.png", training["protocol_description"])
        print(f"final model trained on all {len(final.protocol['train_speakers'])} speakers; {line} -> {out}")
        return 0
    if args.clip_split:
        print(
            "warning: --clip-split mixes speakers between train and validation; every number is speaker-dependent",
            file=sys.stderr,
        )
        split = clip_split(clips, seed=args.seed)
    else:
        split = speaker_split(
            clips, parse_speakers(args.val_speakers), parse_speakers(args.test_speakers), seed=args.seed
        )
    ((rep, spec),) = train_models([("model", split, out)], labels, options, _cache(args), summary, jobs=args.jobs)
    if split.test:
        from serkit.trainer.classify import load_predictor
        from serkit.trainer.evaluate import evaluate_clips

        spec, predict, _ = load_predictor(out)  # the saved files, as a user would load them
        protocol = {**split.protocol, "role": "test", "held_out_speakers": split.protocol["test_speakers"]}
        test = evaluate_clips(predict, spec, split.test, protocol, _cache(args))
        (out / "test_metrics.json").write_text(json.dumps(test, indent=2) + "\n")
        print(format_report(test, "test"), file=sys.stderr)
    print(
        f"validation accuracy {rep['accuracy'] * 100:.1f}%, UAR {rep['uar'] * 100:.1f}% "
        f"({describe_protocol(rep['protocol'])}) -> {out}"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from serkit.trainer.classify import load_predictor
    from serkit.trainer.evaluate import evaluate_clips, protocol_for
    from serkit.trainer.metrics import format_report
    from serkit.trainer.splits import parse_speakers

    spec, predict, kind = load_predictor(args.model, threads=args.threads)
    clips = _load(args)
    wanted = parse_speakers(args.speakers)
    if wanted:
        from serkit.trainer.splits import resolve_speakers

        keep = resolve_speakers(wanted, {c.speaker for c in clips}, "--speakers")
        clips = [c for c in clips if c.speaker in keep]
    unknown = sorted({c.label for c in clips} - set(spec.labels))
    if unknown:
        print(
            f"note: skipping clips labelled {', '.join(unknown)} (not among the model's labels; map them with "
            "--labels, e.g. calm=neutral)",
            file=sys.stderr,
        )
        clips = [c for c in clips if c.label in spec.labels]
    if not clips:
        raise SerkitError("no clips left to evaluate")
    report = evaluate_clips(predict, spec, clips, protocol_for(spec, clips), _cache(args))
    report["model"] = {"path": str(args.model), "kind": kind}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report, f"{args.model} ({kind})"))
    return 0


def _predict_model_and_paths(args: argparse.Namespace) -> tuple[str, list[str], bool]:
    """(model, clips, whether the model is the default): --model, a leading model path, or the shipped
    model, the same default as `serkit run`."""
    from serkit.models import DEFAULT_MODEL  # the agent's default, without the agent's imports

    paths = list(args.paths)
    if args.model:
        return args.model, paths, False
    if len(paths) > 1 and _names_a_model(Path(paths[0])):
        return paths[0], paths[1:], False
    return str(DEFAULT_MODEL), paths, True


def _names_a_model(path: Path) -> bool:
    """A leading path is the model unless it is a WAV or a folder with no model in it (so a mistyped
    model path is reported as a missing model, not as a missing clip)."""
    if path.is_dir():
        return any(p.suffix in (".keras", ".tflite") for p in path.iterdir())
    return path.suffix.lower() != ".wav"


def _wav_files(paths: Sequence[str]) -> list[Path]:
    """Each path a WAV file or a folder searched for *.wav; refused in one line when one names nothing."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() == ".wav")
            if not found:
                raise SerkitError(f"{path}: no .wav files")
            files += found
        elif path.exists():
            files.append(path)
        else:
            raise SerkitError(f"{path}: no such file or folder")
    return files


def cmd_predict(args: argparse.Namespace) -> int:
    from serkit.edge.audio import wav_chunks
    from serkit.trainer.classify import load_predictor, streamed_clip_probabilities

    model, paths, default = _predict_model_and_paths(args)
    spec, predict, kind = load_predictor(model, threads=args.threads)
    # Said before the first result, so that a refused clip is still the only line on stderr.
    note = f"serkit: no model given, using the shipped one: {model} ({kind})" if default else ""
    files = _wav_files(paths)
    failed = 0
    for f in files:
        try:
            # A second at a time through the agent's streaming windows: any length in the same memory.
            probs = streamed_clip_probabilities(predict, wav_chunks(f, spec.features.sample_rate)[1], spec)
        except SerkitError as exc:
            if len(files) == 1:
                raise
            print(f"serkit: skipped {exc}", file=sys.stderr)
            failed += 1
            continue
        best = int(probs.argmax())
        if note:
            print(note, file=sys.stderr)
            note = ""
        if args.json:
            print(
                json.dumps(
                    {
                        "file": str(f),
                        "emotion": spec.labels[best],
                        "confidence": round(float(probs[best]), 4),
                        "probabilities": {lab: round(float(p), 4) for lab, p in zip(spec.labels, probs, strict=True)},
                    }
                ),
                flush=True,
            )
        else:
            print(f"{f}: {spec.labels[best]} ({probs[best] * 100:.0f}%)", flush=True)
    return 1 if failed else 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", help="feature cache folder (default: ~/.cache/serkit)")
    p.add_argument("--no-cache", action="store_true", help="compute features without the disk cache")


def register_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a CNN-LSTM on labelled speech, validated on held-out speakers",
        description="Train the CNN-LSTM. Splits are by speaker; every printed accuracy names its protocol.",
    )
    p.add_argument("data", nargs="+", help="corpus folder(s) or CSV manifest(s); several combine")
    _add_data_args(p)
    p.add_argument("--val-speakers", help="comma-separated validation speakers (e.g. 17,18 or ravdess:17)")
    p.add_argument("--test-speakers", help="comma-separated test speakers, never used for training or stopping")
    p.add_argument(
        "--folds",
        type=_int_at_least(2),
        help="k-fold cross-validation by speaker instead of one split, K >= 2 (each fold trains the fixed --epochs)",
    )
    p.add_argument(
        "--refit",
        action="store_true",
        help="with --folds: then train the model to ship on every speaker for the same fixed --epochs; "
        "its accuracy is the cross-validation estimate",
    )
    p.add_argument(
        "--clip-split",
        action="store_true",
        help="random split by clip (speaker-DEPENDENT, optimistic; every number is labelled so)",
    )
    p.add_argument("--out", help="run folder (default: runs/<timestamp>)")
    p.add_argument("--epochs", type=_int_at_least(1), default=60, help="passes over the training data (default 60)")
    # Defaults of None so that --folds can refuse them when given (see cmd_train).
    p.add_argument(
        "--min-epochs",
        type=int,
        help="no early stop or best-model pick before this epoch (default 15; not with --folds)",
    )
    p.add_argument(
        "--patience", type=int, help="epochs without improvement before stopping (default 15; not with --folds)"
    )
    p.add_argument("--batch-size", type=_int_at_least(1), default=32, help="windows per training step (default 32)")
    p.add_argument(
        "--monitor",
        choices=("loss", "uar"),
        help="validation score for early stopping (default loss; not with --folds)",
    )
    p.add_argument(
        "--average-epochs",
        type=_int_at_least(1),
        default=10,
        help="validate and keep the mean weights of the last N epochs (1: the plain weights)",
    )
    p.add_argument("--window-s", type=_positive_float, default=3.0, help="classification window (s)")
    p.add_argument("--hop-s", type=_positive_float, default=0.5, help="hop between windows at inference (s)")
    p.add_argument("--rnn", choices=("lstm", "gru"), default="lstm", help="recurrent layer (default lstm)")
    p.add_argument("--units", type=_int_at_least(1), default=48, help="recurrent units")
    p.add_argument(
        "--centre", action="store_true", help="also feed the model each window minus its own mean (int8 > 150 KB)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed: weights, augmentation, folds (default 0)")
    p.add_argument(
        "--teachers",
        type=_int_at_least(0),
        default=0,
        help="first train N models with seeds seed+1.. on the same speakers, then distil their mean prediction "
        "into the model (same size and speed, about N+1.5 times the training time; the default model used 2)",
    )
    p.add_argument(
        "--distil-weight",
        type=_fraction,
        help="the teachers' share of each training target, the label's is the rest (default 0.5; with --teachers)",
    )
    p.add_argument(
        "--teacher-epochs",
        type=_int_at_least(1),
        help="the teachers' epochs, when --epochs is the distilled model's (default: the same as --epochs)",
    )
    p.add_argument(
        "--jobs",
        type=_int_at_least(1),
        default=1,
        help="train up to N runs at once (the folds, the final model, teachers), each in its own process "
        "logging to train.log in its folder; about the number of CPU cores",
    )
    for name in ("noise", "speed", "warp", "gain", "shift", "specaugment", "mixup"):
        p.add_argument(f"--no-{name}", action="store_true", help=f"switch off {name} augmentation")
    _common(p)
    p.set_defaults(func=cmd_train)


def register_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="metrics of a saved model (Keras or TFLite) on a corpus",
        description="Accuracy, macro-F1, UAR, per-class and per-speaker, for any saved model.",
    )
    p.add_argument("model", help="run folder, .keras, or .tflite (with its .json beside it)")
    p.add_argument("data", nargs="+", help="corpus folder(s) or CSV manifest(s)")
    _add_data_args(p)
    p.add_argument("--speakers", help="only these speakers (comma-separated)")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--threads", type=_int_at_least(1), default=1, help="TFLite interpreter threads (default 1)")
    _common(p)
    p.set_defaults(func=cmd_evaluate)


def register_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="emotion of WAV files or every WAV under folders",
        usage="serkit predict [-h] [--model MODEL] [MODEL] PATH [PATH ...] [--json] [--threads N]",
        description="Classify whole clips. The model is --model, or a leading .keras/.tflite/run-folder path, "
        "or else the shipped int8 model (the one `serkit run` uses); which one is said on stderr.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="WAV files or folders (optionally led by a model)")
    p.add_argument(
        "--model", help="run folder, .keras, or .tflite (with its .json beside it); default: the shipped model"
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='one JSON object per line: {"file", "emotion", "confidence", "probabilities"}',
    )
    p.add_argument("--threads", type=_int_at_least(1), default=1, help="TFLite interpreter threads (default 1)")
    p.set_defaults(func=cmd_predict)
