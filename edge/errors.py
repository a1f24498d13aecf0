"""The one exception type the CLI turns into a single line and a non-zero exit."""


class SerkitError(Exception):
    """A user-facing problem: bad input file, bad config value, missing extra.

    The message is one line that names the file, key or value and what is wrong.
    The CLI prints it without a traceback; library callers can catch it.
    """

    exit_code = 1


class MissingExtraError(SerkitError):
    """A subcommand needs an optional dependency group that is not installed."""

    exit_code = 2
