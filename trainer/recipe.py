"""A training recipe as data: a TOML file of `serkit train` options, e.g. models/serkit-ravdess8.recipe.toml.

Keys are the option names (`teacher-epochs` or `teacher_epochs`); each value is checked as the flag's own
would be. `serkit train --recipe FILE DATA...` starts from the recipe, flags on the command line win, and
the run folder keeps the options the run used as recipe.toml, so any run can be trained again from it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from serkit.edge.errors import SerkitError

# Options that say where things are rather than how the model is trained.
NOT_RECIPE = {"help", "recipe", "out", "cache", "no_cache"}


def recipe_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The parser's options a recipe may set, by destination name."""
    return {
        a.dest: a
        for a in parser._actions  # argparse keeps no public list of a parser's options
        if a.option_strings and a.dest not in NOT_RECIPE and a.help != argparse.SUPPRESS
    }


def load_recipe(path: str | Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The recipe's values by destination name, each checked like its flag; one line names a bad key."""
    import tomllib

    from serkit.edge.files import read_text

    try:
        data = tomllib.loads(read_text(path, "recipe file"))
    except tomllib.TOMLDecodeError as exc:
        raise SerkitError(f"{path}: not valid TOML ({exc})") from None
    actions = recipe_actions(parser)
    return {key.replace("-", "_"): _value(path, key, v, actions) for key, v in data.items()}


def _value(path: str | Path, key: str, value: Any, actions: dict[str, argparse.Action]) -> Any:
    action = actions.get(key.replace("-", "_"))
    if action is None:
        known = ", ".join(sorted(k.replace("_", "-") for k in actions))
        raise SerkitError(f"{path}: unknown key '{key}' (a recipe holds serkit train options: {known})")
    if action.nargs == 0:  # a switch
        if not isinstance(value, bool):
            raise SerkitError(f"{path}: '{key}' must be true or false, got {value!r}")
        return value
    if isinstance(value, (dict, list)) or (isinstance(value, bool) and action.type is not None):
        raise SerkitError(f"{path}: '{key}' must be a single value, got {value!r}")
    try:
        parsed = action.type(str(value)) if action.type else str(value)
    except argparse.ArgumentTypeError as exc:
        raise SerkitError(f"{path}: '{key}' {exc}") from None
    except ValueError:
        raise SerkitError(f"{path}: '{key}' has the wrong type, got {value!r}") from None
    if action.choices and parsed not in action.choices:
        raise SerkitError(f"{path}: '{key}' must be one of {', '.join(map(str, action.choices))}, got {value!r}")
    return parsed


def apply_recipe(parser: argparse.ArgumentParser, args: argparse.Namespace) -> bool:
    """Make --recipe's values the parser's defaults; True when the command line must be parsed again."""
    if not getattr(args, "recipe", None):
        return False
    parser.set_defaults(**load_recipe(args.recipe, parser))
    return True


def recipe_text(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    """Every recipe option's value in this run as TOML (the unset ones as comments), for the run folder."""
    from serkit.edge.config import toml_value

    source = f" from {args.recipe} and the command line" if getattr(args, "recipe", None) else ""
    lines = [f"# The options of this run{source}: serkit train --recipe recipe.toml DATA... trains it again."]
    for dest in sorted(recipe_actions(parser)):
        value, key = getattr(args, dest), dest.replace("_", "-")
        if isinstance(value, (tuple, list)):  # a list option is written as it is typed: 48,64,64,64
            value = ",".join(map(str, value))
        lines.append(f"# {key} = (not set)" if value is None else f"{key} = {toml_value(value)}")
    return "\n".join(lines) + "\n"
