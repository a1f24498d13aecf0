"""Keras and TensorFlow, imported without the lines their C++ start-up prints.

TensorFlow 2.21 writes absl and oneDNN notices straight to file descriptor 2 while it loads
(`WARNING: All log messages before absl::InitializeLog() ...`, `oneDNN custom operations are on`),
and TF_CPP_MIN_LOG_LEVEL no longer hides them: they would bury a command's one-line error. After the
import nothing more is printed, so capturing the import alone is enough. Every package module
imports Keras through here.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

from serkit.edge.errors import SerkitError, first_line
from serkit.edge.quiet import captured_stderr


def import_keras() -> ModuleType:
    """The keras module (TensorFlow backend), loaded quietly; a failure to load is one SerkitError line."""
    loaded = sys.modules.get("keras")
    if loaded is not None:
        return loaded
    # Python-side TensorFlow logging still honours this; set it to 0 to see TensorFlow's notices again.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with captured_stderr() as printed:
        try:
            import keras
        except Exception as exc:  # noqa: BLE001 - any failure inside TensorFlow's import is reported as one line
            raise SerkitError(f"TensorFlow/Keras did not load: {_reason(exc, printed())}") from None
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        sys.stderr.write(printed())
    return keras


def _reason(exc: BaseException, printed: str) -> str:
    """The exception's first line, or else the last error line TensorFlow printed while failing."""
    if str(exc).strip():
        return first_line(exc)
    errors = [ln for ln in printed.splitlines() if ln[:1] in ("E", "F")]
    return errors[-1] if errors else type(exc).__name__
