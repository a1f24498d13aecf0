"""`serkit train`: the CNN-LSTM on labelled speech, validated on held-out speakers; heavy imports in the handler."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

from serkit.edge.argtypes import int_at_least, positive_float, share
from serkit.edge.errors import SerkitError, require_extra
from serkit.trainer.cli_args import ROOM_HELP, add_cache_args, add_data_args, cache_dir, load_clips
from serkit.trainer.recipe import apply_recipe, recipe_text

AUGMENTATIONS = ("noise", "speed", "warp", "gain", "shift", "specaugment", "mixup")


def filter_list(text: str) -> tuple[int, ...]:
    """Filters per convolution block, from "48,64,64,64": one to six blocks of 1 to 512 filters."""
    try:
        filters = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of whole numbers: {text!r}") from None
    if not 1 <= len(filters) <= 6 or not all(1 <= f <= 512 for f in filters):
        raise argparse.ArgumentTypeError(f"one to six blocks of 1 to 512 filters, got {text!r}")
    return filters


def _given(args: argparse.Namespace, *names: str) -> list[str]:
    """How the user spelled those of the options (defaults None) they gave, e.g. ["--patience"]."""
    return [f"--{name.replace('_', '-')}" for name in names if getattr(args, name) is not None]


def check_train_flags(args: argparse.Namespace) -> None:
    """Refuse combinations that would mislead, in one line each, before anything is read or imported."""
    if args.refit and not args.folds:
        raise SerkitError(
            "--refit needs --folds K: a model trained on every speaker has no held-out speakers, so its only "
            "honest accuracy is the cross-validation estimate"
        )
    teaching = _given(args, "teacher_epochs", "teacher_conv_filters")
    if teaching and not args.teachers:
        raise SerkitError(f"{teaching[0]} needs --teachers N: without teachers it would change nothing")
    stopping = _given(args, "min_epochs", "patience", "monitor")
    if args.folds and stopping:
        raise SerkitError(
            f"{', '.join(stopping)} cannot be used with --folds: each fold trains the fixed --epochs, since its "
            "held-out speakers are its test speakers and must not choose when it stops"
        )
    if args.room_share is not None and not args.train_rooms:
        raise SerkitError("--room-share needs --train-rooms: without rooms in training it would change nothing")
    if args.room and args.clip_split:
        raise SerkitError("--room scores held-out speakers, and --clip-split holds none out")


def _room_share(args: argparse.Namespace) -> dict[str, float]:
    return {} if args.room_share is None else {"room_prob": args.room_share}


def train_options(args: argparse.Namespace):  # noqa: ANN201
    """The TrainOptions the flags describe (the defaults of unset stopping options filled in)."""
    from serkit.trainer.data import Augment
    from serkit.trainer.model import ModelConfig
    from serkit.trainer.train import TrainOptions

    switches = {name: getattr(args, name) for name in AUGMENTATIONS}
    options = TrainOptions(
        # argparse has turned both into tuples (it parses a text default with the option's type too).
        model=ModelConfig(conv_filters=args.conv_filters, rnn_units=args.units, separable=args.separable),
        augment=Augment(**switches, room=args.train_rooms, **_room_share(args)),
        window_s=args.window_s,
        hop_s=args.hop_s,
        epochs=args.epochs,
        min_epochs=min(TrainOptions.min_epochs if args.min_epochs is None else args.min_epochs, args.epochs),
        patience=TrainOptions.patience if args.patience is None else args.patience,
        batch_size=args.batch_size,
        monitor=args.monitor or TrainOptions.monitor,
        average_epochs=args.average_epochs,
        seed=args.seed,
        teachers=args.teachers,
        teacher_epochs=args.teacher_epochs,
        teacher_model=(
            ModelConfig(conv_filters=args.teacher_conv_filters, rnn_units=args.units)
            if args.teacher_conv_filters
            else None
        ),
        room_eval=args.room,
    )
    if args.folds:
        # Each fold's held-out speakers are its test speakers, so they must not choose its epoch:
        # stopping on them would flatter the estimate. The folds train the fixed schedule, which is
        # also what a --refit model, with no speakers to stop on, trains.
        options = replace(options, min_epochs=options.epochs, patience=options.epochs)
    return options


def cmd_train(args: argparse.Namespace) -> int:
    check_train_flags(args)
    # After the checks of the flags alone, which need nothing installed; before any data is read.
    require_extra("train", "tensorflow", "keras", "matplotlib")
    from serkit.trainer import corpora

    clips = load_clips(args)
    labels = corpora.label_order(clips)
    if len(labels) < 2:
        raise SerkitError(f"training needs at least 2 labels, the data has {labels}")
    summary = corpora.summary(clips)
    print(
        f"data: {summary['clips']} clips, {summary['speakers']} speakers, labels {', '.join(labels)}", file=sys.stderr
    )
    out = Path(args.out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.toml").write_text(recipe_text(args, args.parser))
    if args.folds:
        return train_folds(args, clips, labels, train_options(args), out, summary)
    return train_one(args, clips, labels, train_options(args), out, summary)


def train_folds(args: argparse.Namespace, clips: list, labels: list[str], options, out: Path, summary: dict) -> int:  # noqa: ANN001
    """--folds K: K models by speaker (and with --refit the model to ship, on every speaker), one estimate."""
    from serkit.trainer import plots
    from serkit.trainer.crossval import cross_validation_summary, estimate_line
    from serkit.trainer.jobs import train_models
    from serkit.trainer.metrics import describe_protocol
    from serkit.trainer.splits import every_speaker, speaker_folds

    models = []
    for split in speaker_folds(clips, args.folds, seed=args.seed):
        fold = split.protocol["fold"]
        print(f"fold {fold}/{args.folds}: {describe_protocol(split.protocol)}", file=sys.stderr)
        models.append((f"fold {fold}/{args.folds}", split, out / f"fold{fold}"))
    if args.refit:  # trains beside the folds; its estimate is filled in when they are done
        final = every_speaker(clips, f"{args.folds}-fold cross-validation by speaker, cv_metrics.json")
        models.append(("final model (every speaker)", final, out))
    results = train_models(models, labels, options, cache_dir(args), summary, jobs=args.jobs)
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
    line = estimate_line(cv)
    print(f"cross-validation: {line}", file=sys.stderr if args.refit else sys.stdout)
    if not args.refit:
        print(f"-> {out}")
        return 0
    finish_refit(results[-1][1], reports, cv, line, out)
    print(f"final model trained on all {len(final.protocol['train_speakers'])} speakers; {line} -> {out}")
    return 0


def finish_refit(spec, reports: list[dict], cv: dict, line: str, out: Path) -> None:  # noqa: ANN001
    """The refit model's spec and curves get the folds' estimate and their publishing threshold."""
    from serkit.trainer import plots
    from serkit.trainer.metrics import describe_protocol

    protocol = {**spec.info["training"]["protocol"], "estimate": line}
    training = {**spec.info["training"], "protocol": protocol, "protocol_description": describe_protocol(protocol)}
    # The publishing threshold comes from held-out voices too: on voices it trained on a model is surer.
    threshold = float(np.median([r["median_window_confidence"] for r in reports]))
    spec = spec._replace(threshold=threshold, info={**spec.info, "training": training, "cross_validation": cv})
    spec.save(out / "model.json")
    # Its curves were drawn before the folds finished; their title gets the estimate too.
    history = json.loads((out / "history.json").read_text())
    plots.training_curves(history, out / "training_curves.png", training["protocol_description"])


def train_one(args: argparse.Namespace, clips: list, labels: list[str], options, out: Path, summary: dict) -> int:  # noqa: ANN001
    """One split: validation speakers to stop on, and test speakers scored once at the end."""
    from serkit.trainer.jobs import train_models
    from serkit.trainer.metrics import describe_protocol
    from serkit.trainer.splits import clip_split, parse_speakers, speaker_split

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
    ((rep, spec),) = train_models([("model", split, out)], labels, options, cache_dir(args), summary, jobs=args.jobs)
    if split.test:
        score_test_speakers(args, split, out)
    print(
        f"validation accuracy {rep['accuracy'] * 100:.1f}%, UAR {rep['uar'] * 100:.1f}% "
        f"({describe_protocol(rep['protocol'])}) -> {out}"
    )
    return 0


def score_test_speakers(args: argparse.Namespace, split, out: Path) -> None:  # noqa: ANN001
    """The saved model, loaded as a user would load it, scored once on the test speakers."""
    from serkit.trainer.classify import load_predictor
    from serkit.trainer.evaluate import evaluate_clips, format_room
    from serkit.trainer.metrics import format_report

    spec, predict, _ = load_predictor(out)
    protocol = {**split.protocol, "role": "test", "held_out_speakers": split.protocol["test_speakers"]}
    test = evaluate_clips(predict, spec, split.test, protocol, cache_dir(args), room=args.room)
    (out / "test_metrics.json").write_text(json.dumps(test, indent=2) + "\n")
    print(format_report(test, "test"), file=sys.stderr)
    if args.room:
        print(format_room(test["room"]), file=sys.stderr)


def register_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a CNN-LSTM on labelled speech, validated on held-out speakers",
        description="Train the CNN-LSTM. Splits are by speaker; every printed accuracy names its protocol. "
        "--recipe FILE starts from a recipe's options (models/serkit-ravdess8.recipe.toml is the shipped "
        "model's); flags given here win.",
    )
    p.add_argument("data", nargs="+", help="corpus folder(s) or CSV manifest(s); several combine")
    p.add_argument("--recipe", help="TOML file of these options (the run folder keeps the run's as recipe.toml)")
    p.add_argument("--out", help="run folder (default: runs/<timestamp>)")
    add_data_args(p)
    _add_split_args(p)
    _add_schedule_args(p)
    _add_model_args(p)
    _add_augment_args(p)
    add_cache_args(p)
    p.set_defaults(func=cmd_train, parser=p, reparse=partial(apply_recipe, p))


def _add_split_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--val-speakers", help="comma-separated validation speakers (e.g. 17,18 or ravdess:17)")
    p.add_argument("--test-speakers", help="comma-separated test speakers, never used for training or stopping")
    p.add_argument(
        "--folds",
        type=int_at_least(2),
        help="k-fold cross-validation by speaker instead of one split, K >= 2 (each fold trains the fixed --epochs)",
    )
    p.add_argument(
        "--refit",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="with --folds: then train the model to ship on every speaker for the same fixed --epochs; "
        "its accuracy is the cross-validation estimate",
    )
    p.add_argument(
        "--clip-split",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="random split by clip (speaker-DEPENDENT, optimistic; every number is labelled so)",
    )
    p.add_argument(
        "--room", action=argparse.BooleanOptionalAction, default=False, help=f"with held-out speakers: {ROOM_HELP}"
    )


def _add_schedule_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int_at_least(1), default=60, help="passes over the training data")
    # Defaults of None so that --folds can refuse them when given (see check_train_flags).
    p.add_argument(
        "--min-epochs", type=int_at_least(1), help="no early stop or best-model pick before this epoch (default 15)"
    )
    p.add_argument("--patience", type=int_at_least(1), help="epochs without improvement before stopping (default 15)")
    p.add_argument("--monitor", choices=("loss", "uar"), help="validation score for early stopping (default loss)")
    p.add_argument("--batch-size", type=int_at_least(1), default=32, help="windows per training step")
    p.add_argument(
        "--average-epochs",
        type=int_at_least(1),
        default=10,
        help="validate and keep the mean weights of the last N epochs (1: the plain weights)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed: weights, augmentation, folds")
    p.add_argument(
        "--teachers",
        type=int_at_least(0),
        default=0,
        help="first train N models with seeds seed+1.. on the same speakers, then distil their mean prediction "
        "into the model (same size and speed, about N+1.5 times the training time; the shipped model used 2)",
    )
    p.add_argument(
        "--teacher-epochs",
        type=int_at_least(1),
        help="the teachers' epochs, when --epochs is the distilled model's (default: the same as --epochs)",
    )
    p.add_argument(
        "--teacher-conv-filters",
        type=filter_list,
        help="the teachers' own convolution filters, plain convolutions (default: the model's own network); "
        "teachers are not shipped, so their size is free",
    )
    p.add_argument(
        "--jobs",
        type=int_at_least(1),
        default=1,
        help="train up to N runs at once (the folds, the final model, teachers), each in its own process "
        "logging to train.log in its folder; about the number of CPU cores",
    )


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--window-s", type=positive_float, default=3.0, help="classification window in seconds")
    p.add_argument("--hop-s", type=positive_float, default=0.5, help="hop between windows at inference, in seconds")
    p.add_argument(
        "--conv-filters",
        type=filter_list,
        default="48,64,64,64",
        help="filters of each convolution block, comma-separated (each block halves the frames)",
    )
    p.add_argument(
        "--separable",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="depthwise-separable convolutions (a filter per channel, then a 1x1 mix): a fraction of the weights",
    )
    p.add_argument("--units", type=int_at_least(1), default=48, help="LSTM units")


def _add_augment_args(p: argparse.ArgumentParser) -> None:
    for name in AUGMENTATIONS:
        p.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=True, help=f"{name} augmentation")
    p.add_argument(
        "--train-rooms",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="augment with simulated rooms (reverberation, distance, noise; never the --room test rooms)",
    )
    p.add_argument(
        "--room-share",
        type=share,
        help="with --train-rooms: the share of training windows heard in a room (default 0.3)",
    )
