"""Fixed-length classification windows over a clip's feature frames.

The same starts are used offline (evaluate, convert's parity gate) and by the
streaming agent, so results agree window by window.
"""

from __future__ import annotations

import numpy as np


def window_starts(n_frames: int, frames_per_window: int, hop_frames: int) -> list[int]:
    """Starts of full windows at 0, hop, 2*hop, ..., then one ending on the last frame if the hop grid stops short.

    The closing window matters: a 3 s window every 0.5 s leaves up to 0.49 s of a
    clip in no window, and adding it scored 19 of 25 RAVDESS fold models better on
    their held-out speakers (+0.9 points on average; docs/experiments.md).
    A clip shorter than one window gets one padded window.
    """
    if n_frames <= frames_per_window:
        return [0]
    last = n_frames - frames_per_window
    starts = list(range(0, last + 1, hop_frames))
    if starts[-1] != last:
        starts.append(last)
    return starts


def clip_windows(feats: np.ndarray, frames_per_window: int, hop_frames: int) -> np.ndarray:
    """(windows, frames_per_window, features); short clips are zero-padded (zero = the mean after normalising)."""
    n, f = feats.shape
    if n < frames_per_window:
        out = np.zeros((1, frames_per_window, f), dtype=np.float32)
        out[0, :n] = feats
        return out
    starts = window_starts(n, frames_per_window, hop_frames)
    return np.stack([feats[s : s + frames_per_window] for s in starts]).astype(np.float32, copy=False)
