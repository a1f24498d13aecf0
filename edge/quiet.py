"""Silence C libraries that print straight to file descriptor 2 (PortAudio/ALSA probing, TFLite's
"Created TensorFlow Lite XNNPACK delegate" banner, TensorFlow's start-up lines), so our own stderr stays
one line per event."""

from __future__ import annotations

import contextlib
import faulthandler
import os
import sys
from collections.abc import Callable, Iterator
from typing import BinaryIO


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


@contextlib.contextmanager
def captured_stderr() -> Iterator[Callable[[], str]]:
    """Send file descriptor 2 to a temporary file for the block; the callable yielded returns what was
    written to it (inside the block: so far; after it: all).

    For libraries whose start-up chatter bypasses every log-level setting (TensorFlow's absl and oneDNN
    lines): the caller decides what, if anything, of it reaches the user. Python's fault handler writes
    to the real stderr meanwhile (unless one was enabled already), so a crash inside is not silent.
    """
    sys.stderr.flush()
    kept: list[str] = []
    with _scratch_file() as capture:
        try:
            saved = os.dup(2)
        except OSError:
            yield lambda: ""
            return
        # A fault handler someone else enabled stays as it is (its file cannot be read back to restore it).
        ours = not faulthandler.is_enabled()
        if ours:
            faulthandler.enable(file=saved)
        os.dup2(capture.fileno(), 2)
        try:
            yield lambda: kept[0] if kept else _read_all(capture)
        finally:
            os.dup2(saved, 2)
            if ours:
                faulthandler.disable()
            os.close(saved)
            kept.append(_read_all(capture))


def _scratch_file() -> BinaryIO:
    """An anonymous file: in memory on Linux (memfd), else a temporary file. tempfile is imported only
    there, since it brings shutil, random and the compressors into every start-up."""
    if hasattr(os, "memfd_create"):
        return os.fdopen(os.memfd_create("serkit-stderr"), "w+b")
    import tempfile

    return tempfile.TemporaryFile()


def _read_all(capture: BinaryIO) -> str:
    capture.seek(0)
    return capture.read().decode(errors="replace")
