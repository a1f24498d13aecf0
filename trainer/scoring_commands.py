"""`serkit evaluate` and `serkit predict`: a saved model (Keras or TFLite) scored on a corpus, or on any WAV files."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from serkit.edge.argtypes import int_at_least
from serkit.edge.errors import SerkitError
from serkit.trainer.cli_args import ROOM_HELP, add_cache_args, add_data_args, cache_dir, load_clips


def cmd_evaluate(args: argparse.Namespace) -> int:
    from serkit.trainer.classify import load_predictor
    from serkit.trainer.evaluate import evaluate_clips, protocol_for
    from serkit.trainer.metrics import format_report
    from serkit.trainer.splits import parse_speakers

    spec, predict, kind = load_predictor(args.model, threads=args.threads)
    clips = load_clips(args)
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
    report = evaluate_clips(predict, spec, clips, protocol_for(spec, clips), cache_dir(args), room=args.room)
    report["model"] = {"path": str(args.model), "kind": kind}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report, f"{args.model} ({kind})"))
        if args.room:
            from serkit.trainer.evaluate import format_room

            print(format_room(report["room"]))
    return 0


def _predict_model_and_paths(args: argparse.Namespace) -> tuple[str, list[str], bool]:
    """(model, clips, whether the model is the default): --model, a leading model path, or the shipped
    model, the same default as `serkit run`."""
    from serkit.models import DEFAULT_MODEL  # the agent's default, without the agent's imports

    paths = list(args.paths)
    if args.model:
        return args.model, paths, False
    if len(paths) > 1 and _names_a_model(paths[0]):
        return paths[0], paths[1:], False
    return DEFAULT_MODEL, paths, True


def _names_a_model(path: str) -> bool:
    """A leading path is the model unless it is a WAV or a folder with no model in it (so a mistyped
    model path is reported as a missing model, not as a missing clip)."""
    if os.path.isdir(path):
        return any(name.endswith((".keras", ".tflite")) for name in os.listdir(path))
    return not path.lower().endswith(".wav")


def _wav_files(paths: Sequence[str]) -> list[str]:
    """Each path a WAV file or a folder searched for *.wav; refused in one line when one names nothing."""
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(_wavs_under(path))
            if not found:
                raise SerkitError(f"{path}: no .wav files")
            files += found
        elif os.path.exists(path):
            files.append(path)
        else:
            raise SerkitError(f"{path}: no such file or folder")
    return files


def _wavs_under(folder: str) -> list[str]:
    walk = os.walk(folder, followlinks=True)  # a corpus folder may link to its speakers' folders
    return [os.path.join(top, name) for top, _, names in walk for name in names if name.lower().endswith(".wav")]


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


def register_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="metrics of a saved model (Keras or TFLite) on a corpus",
        description="Accuracy, macro-F1, UAR, per-class and per-speaker, for any saved model.",
    )
    p.add_argument("model", help="run folder, .keras, or .tflite (with its .json beside it)")
    p.add_argument("data", nargs="+", help="corpus folder(s) or CSV manifest(s)")
    add_data_args(p)
    p.add_argument("--speakers", help="only these speakers (comma-separated)")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--threads", type=int_at_least(1), default=1, help="TFLite interpreter threads (default 1)")
    p.add_argument("--room", action="store_true", help=ROOM_HELP)
    add_cache_args(p)
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
    p.add_argument("--threads", type=int_at_least(1), default=1, help="TFLite interpreter threads (default 1)")
    p.set_defaults(func=cmd_predict)
