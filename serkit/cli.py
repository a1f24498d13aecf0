"""The `serkit` command. Each subcommand imports its stage lazily, so `serkit run`
never loads TensorFlow and a missing extra is reported in one line."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from serkit.edge import pin_numeric_threads, version
from serkit.edge.errors import SerkitError

Handler = Callable[[argparse.Namespace], int]


def _read_json(path: str) -> dict:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise SerkitError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise SerkitError(f"{p}: is a directory, expected a JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SerkitError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise SerkitError(f"{p}: expected a JSON object")
    return data


def _cmd_features(args: argparse.Namespace) -> int:
    from serkit.edge.audio import read_wav
    from serkit.edge.features import FeatureConfig, mfcc

    if args.config:
        data = _read_json(args.config)
        # Accept a model spec (features under "features") as well as a bare FeatureConfig.
        config = FeatureConfig.from_dict(data.get("features", data), where=f"{args.config}: features")
    else:
        config = FeatureConfig()
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    import numpy as np

    for path in args.wav:
        signal, rate = read_wav(path, config.sample_rate)
        feats = mfcc(signal, config)
        line = f"{path}: {len(signal) / rate:.2f} s -> {feats.shape[0]} frames x {feats.shape[1]} features"
        if out_dir:
            target = out_dir / (Path(path).stem + ".npy")
            np.save(target, feats)
            line += f" -> {target}"
        print(line)
    return 0


def _add_features(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "features",
        help="compute the MFCC features the model sees for WAV files",
        description="Compute the numpy MFCCs (the edge/trainer contract) for WAV files; optionally save .npy.",
    )
    p.add_argument("wav", nargs="+", help="WAV file(s); any rate, resampled to the config's rate")
    p.add_argument("--config", help="JSON FeatureConfig or a model spec (.json beside a .tflite)")
    p.add_argument("--out", help="folder for one .npy per file")
    p.set_defaults(func=_cmd_features)


# Each command's module and register function, in help order. Only the module of the command being run is
# imported, so `serkit run` does not load the trainer's or the deployer's code to start.
COMMANDS = {
    "run": ("serkit.edge.commands", "register_run"),
    "devices": ("serkit.edge.commands", "register_devices"),
    "demo": ("serkit.edge.commands", "register_demo"),
    "wait-online": ("serkit.edge.commands", "register_wait_online"),
    "deploy": ("serkit.deploy.commands", "register_deploy"),
    "train": ("serkit.trainer.commands", "register_train"),
    "evaluate": ("serkit.trainer.commands", "register_evaluate"),
    "predict": ("serkit.trainer.commands", "register_predict"),
    "convert": ("serkit.convert.commands", "register_convert"),
    "features": ("serkit.cli", "_add_features"),
}
# Commands that run the edge's numeric code: one BLAS/OpenMP thread, as benchmarked (not train: TensorFlow).
EDGE_COMMANDS = ("run", "demo", "predict", "evaluate", "features")


def _registrars(only: str | None = None) -> list[Callable[[argparse._SubParsersAction], None]]:
    names = [only] if only in COMMANDS else list(COMMANDS)
    return [getattr(importlib.import_module(COMMANDS[n][0]), COMMANDS[n][1]) for n in names]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `command`, only that subcommand is registered (the rest stay unimported)."""
    parser = argparse.ArgumentParser(
        prog="serkit",
        description="Speech emotion recognition for the edge: train, convert to int8, run on a Pi, publish over MQTT.",
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _registrars(command):
        register(sub)
    return parser


class _Version(argparse.Action):
    """--version, looking the version up only when asked (it costs importlib.metadata)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(f"serkit {version()}")
        parser.exit()


def _command_in(argv: Sequence[str]) -> str | None:
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_in(argv)
    if command in EDGE_COMMANDS:
        pin_numeric_threads()  # before numpy starts its thread pool
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except SerkitError as exc:
        print(f"serkit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("serkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `serkit predict ... | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
