"""The one exception type the CLI turns into a single line and a non-zero exit."""

from __future__ import annotations


class SerkitError(Exception):
    """A user-facing problem: bad input file, bad config value, missing extra.

    The message is one line that names the file, key or value and what is wrong.
    The CLI prints it without a traceback; library callers can catch it.
    """

    exit_code = 1


class MissingExtraError(SerkitError):
    """A subcommand needs an optional dependency group that is not installed."""

    exit_code = 2


def require_extra(extra: str, *modules: str) -> None:
    """Fail with one line when an optional dependency group is not installed."""
    import importlib.util  # here: only the commands that need an extra pay for it

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtraError(
            f"this command needs the '{extra}' extra ({', '.join(missing)} not installed): "
            f"pip install 'serkit[{extra}]'"
        )


def first_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
