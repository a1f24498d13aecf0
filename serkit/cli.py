"""The `serkit` command. Each subcommand imports its stage lazily, so `serkit run`
never loads TensorFlow and a missing extra is reported in one line."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from serkit.edge import pin_numeric_threads, version
from serkit.edge.errors import SerkitError

Handler = Callable[[argparse.Namespace], int]


# Each command's module and register function, in help order. Only the module of the command being run is
# imported, so `serkit run` does not load the trainer's or the deployer's code to start.
COMMANDS = {
    "run": ("serkit.edge.commands", "register_run"),
    "devices": ("serkit.edge.commands", "register_devices"),
    "demo": ("serkit.edge.commands", "register_demo"),
    "wait-online": ("serkit.edge.commands", "register_wait_online"),
    "deploy": ("serkit.deploy.commands", "register_deploy"),
    "train": ("serkit.trainer.commands", "register_train"),
    "evaluate": ("serkit.trainer.scoring_commands", "register_evaluate"),
    "predict": ("serkit.trainer.scoring_commands", "register_predict"),
    "convert": ("serkit.convert.commands", "register_convert"),
    "features": ("serkit.edge.commands", "register_features"),
}
# Commands that run the edge's numeric code: one BLAS/OpenMP thread, as benchmarked (not train: TensorFlow).
EDGE_COMMANDS = ("run", "demo", "predict", "evaluate", "features")


def _registrars(only: str | None = None) -> list[Callable[[argparse._SubParsersAction], None]]:
    names = [only] if only in COMMANDS else list(COMMANDS)
    return [getattr(importlib.import_module(COMMANDS[n][0]), COMMANDS[n][1]) for n in names]


class HelpWithDefaults(argparse.HelpFormatter):
    """Each option's help ends with its default, unless the text already names it or there is none to show."""

    def __init__(
        self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None
    ) -> None:
        # argparse builds a formatter for every add_argument; its own width lookup imports shutil (with bz2 and
        # lzma), a few percent of the start-up of `serkit run`.
        super().__init__(prog, indent_increment, max_help_position, width or _terminal_columns() - 2)

    def _get_help_string(self, action: argparse.Action) -> str:
        text, default = action.help or "", action.default
        unset = default is None or default is False or default in ("", argparse.SUPPRESS)  # 0 is a default
        if "default" in text or unset or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `command`, only that subcommand is registered (the rest stay unimported)."""
    parser = Parser(
        prog="serkit",
        description="Speech emotion recognition for the edge: train, convert to int8, run on a Pi, publish over MQTT.",
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _registrars(command):
        register(sub)
    return parser


def _terminal_columns() -> int:
    """shutil.get_terminal_size's answer for the width: $COLUMNS, else the terminal on stdout, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help shows defaults; subcommands' parsers are of the same class."""

    def __init__(self, *args: object, formatter_class: type = HelpWithDefaults, **kwargs: object) -> None:
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


class _Version(argparse.Action):
    """--version, looking the version up only when asked (it costs importlib.metadata)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(f"serkit {version()}")
        parser.exit()


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """The command line, parsed again when a command takes its defaults from a file (train --recipe)."""
    args = parser.parse_args(argv)
    if getattr(args, "reparse", None) and args.reparse(args):
        args = parser.parse_args(argv)
    return args


def _command_in(argv: Sequence[str]) -> str | None:
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_in(argv)
    if command in EDGE_COMMANDS:
        pin_numeric_threads()  # before numpy starts its thread pool
    parser = build_parser(command)
    try:
        args = parse_args(parser, argv)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 2
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
