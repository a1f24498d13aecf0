"""Number types for command-line options: a bad value is argparse's one usage line, naming the option."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def _finite(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return v


def positive_float(text: str) -> float:
    v = _finite(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def non_negative_float(text: str) -> float:
    v = _finite(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return v


def share(text: str) -> float:
    """A share from 0 to 1 inclusive."""
    v = non_negative_float(text)
    if v > 1:
        raise argparse.ArgumentTypeError(f"must be at most 1, got {text}")
    return v


def int_at_least(lo: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {text}")
        return v

    return parse


def port(text: str) -> int:
    v = int_at_least(1)(text)
    if v > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number, 1 to 65535, got {text}")
    return v
