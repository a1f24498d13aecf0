"""Silence C libraries that print straight to file descriptor 2 (PortAudio/ALSA probing, TFLite's
"Created TensorFlow Lite XNNPACK delegate" banner), so our own stderr stays one line per event."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
