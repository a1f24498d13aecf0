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


class StreamResampler:
    """resample_poly for a stream: push chunks of any size, then flush.

    The concatenated output equals resample_poly over the whole signal, because each
    output sample is computed from the same taps and input samples, just once its
    newest input sample has arrived. Only the last K input samples are kept.
    """

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self.up, self.down = rational_ratio(from_rate, to_rate)
        self.identity = self.up == self.down
        if not self.identity:
            self._phases, n_pre_pad = _design(self.up, self.down)
            self._k = self._phases.shape[1]
            self._n_pre_remove = (10 * max(self.up, self.down) + n_pre_pad) // self.down
            self._taps = np.arange(self._k)
        self.reset()

    def reset(self) -> None:
        self._n_in = 0  # input samples seen
        self._n_out = 0  # output samples produced
        if not self.identity:
            self._buf = np.zeros(self._k)  # xpad's leading zeros, then input
            self._x0 = -self._k  # input index of _buf[0]

    def push(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).ravel()
        if self.identity:
            self._n_in += x.size
            return x.astype(np.float32)
        self._buf = np.concatenate([self._buf, x])
        self._n_in += x.size
        # Output j needs inputs up to index ((j + n_pre_remove) * down) // up.
        ready = (self._n_in * self.up - 1) // self.down - self._n_pre_remove + 1
        return self._emit(max(ready, self._n_out))

    def flush(self) -> np.ndarray:
        """The remaining outputs (the filter's tail over trailing zeros); then reset."""
        if self.identity:
            self.reset()
            return np.empty(0, np.float32)
        total = -(-(self._n_in * self.up) // self.down)
        self._buf = np.concatenate([self._buf, np.zeros(self._k)])
        out = self._emit(total)
        self.reset()
        return out

    def _emit(self, until: int) -> np.ndarray:
        j = np.arange(self._n_out, until)
        if not j.size:
            return np.empty(0, np.float32)
        n = (j + self._n_pre_remove) * self.down
        base = n // self.up - self._x0  # index into _buf of the newest input each output uses
        gathered = self._buf[base[:, None] - self._taps[None, :]]
        out = np.einsum("ij,ij->i", gathered, self._phases[n % self.up])
        self._n_out = until
        # Keep the K inputs the next output starts from.
        nxt = ((until + self._n_pre_remove) * self.down) // self.up - self._k + 1
        drop = max(0, min(nxt - self._x0, self._buf.size))
        if drop:
            self._buf = self._buf[drop:]
            self._x0 += drop
        return out.astype(np.float32)
