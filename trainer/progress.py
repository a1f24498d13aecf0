"""Progress bars for long loops over clips, rooms or runs: tqdm on stderr when installed and worth it."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence


def progress(items: Sequence, desc: str, unit: str = "clip") -> Iterator:
    """The items, with a progress bar on stderr when there are many and tqdm is installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        return iter(items)
    return iter(tqdm(items, desc=desc, unit=unit, file=sys.stderr, leave=False, disable=len(items) < 30))
