"""Band-limited rational resampling in numpy alone (the edge has no scipy).

The filter and alignment are those of scipy.signal.resample_poly with its
defaults (Kaiser window, beta 5, half length 10 * max(up, down)), so the
trainer, the edge and the test reference agree to rounding.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

_BLOCK = 1 << 15  # output samples per gather, bounding the temporary (block x taps) matrix


def rational_ratio(from_rate: int, to_rate: int) -> tuple[int, int]:
    g = math.gcd(int(from_rate), int(to_rate))
    return int(to_rate) // g, int(from_rate) // g


@lru_cache(maxsize=16)
def _design(up: int, down: int) -> tuple[np.ndarray, int]:
    """Polyphase taps (up, K) and the pre-padding of the prototype filter."""
    max_rate = max(up, down)
    half_len = 10 * max_rate
    numtaps = 2 * half_len + 1
    m = np.arange(numtaps) - 0.5 * (numtaps - 1)
    cutoff = 1.0 / max_rate
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(numtaps, 5.0)
    h = h / h.sum() * up
    n_pre_pad = down - half_len % down
    h = np.concatenate([np.zeros(n_pre_pad), h])
    k = -(-len(h) // up)
    h = np.concatenate([h, np.zeros(k * up - len(h))])
    # phases[r, i] = h[r + i * up]: the taps that meet input samples for outputs in phase r
    phases = h.reshape(k, up).T.copy()
    return phases, n_pre_pad


def resample_poly(x: np.ndarray, up: int, down: int) -> np.ndarray:
    """Resample a 1-D signal by up/down; matches scipy.signal.resample_poly(x, up, down)."""
    x = np.asarray(x, dtype=np.float64)
    g = math.gcd(up, down)
    up, down = up // g, down // g
    if up == down:
        return x.copy()
    phases, n_pre_pad = _design(up, down)
    k = phases.shape[1]
    half_len = 10 * max(up, down)
    n_out = -(-(len(x) * up) // down)
    n_pre_remove = (half_len + n_pre_pad) // down
    # Output j is sample (j + n_pre_remove) * down of the full upsample-filter-downsample chain:
    # y[n] = sum_i h[n % up + i * up] * x[n // up - i].
    xpad = np.concatenate([np.zeros(k), x, np.zeros(k)])
    out = np.empty(n_out)
    taps = np.arange(k)
    for start in range(0, n_out, _BLOCK):
        n = (np.arange(start, min(start + _BLOCK, n_out)) + n_pre_remove) * down
        base = n // up + k  # index into xpad
        gathered = xpad[base[:, None] - taps[None, :]]
        out[start : start + len(n)] = np.einsum("ij,ij->i", gathered, phases[n % up])
    return out


def resample(x: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample from from_rate to to_rate (Hz); float32 out."""
    if from_rate == to_rate:
        return np.asarray(x, dtype=np.float32)
    up, down = rational_ratio(from_rate, to_rate)
    return resample_poly(x, up, down).astype(np.float32)
