"""Reading a user's text file (config, spec, recipe) with every failure as one line naming the file."""

from __future__ import annotations

import os
from typing import Any


def read_text(path: str | os.PathLike[str], what: str, missing: str | None = None, encoding: str = "utf-8") -> str:
    """The file's text (UTF-8 unless told), or a SerkitError: "<path>: no such <what>", "is a directory", "cannot read"...

    `missing` replaces the "no such" line where a hint helps (a spec that must sit beside its model).
    """
    from serkit.edge.errors import SerkitError

    p = os.fspath(path)
    try:
        with open(p, encoding=encoding) as f:
            return f.read()
    except FileNotFoundError:
        raise SerkitError(f"{p}: {missing or f'no such {what}'}") from None
    except IsADirectoryError:
        raise SerkitError(f"{p}: is a directory, expected a {what}") from None
    except UnicodeDecodeError as exc:
        raise SerkitError(f"{p}: not a text file, expected a {what} ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise SerkitError(f"{p}: cannot read {what} ({exc.strerror or exc})") from None


def read_json_object(path: str | os.PathLike[str], what: str, missing: str | None = None) -> dict[str, Any]:
    """The file's JSON object, or one SerkitError line: the read_text failures, "<what> is not valid JSON",
    "expected a JSON object"."""
    import json

    from serkit.edge.errors import SerkitError

    text = read_text(path, what, missing)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SerkitError(f"{path}: {what} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise SerkitError(f"{path}: expected a JSON object")
    return data
