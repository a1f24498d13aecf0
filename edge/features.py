"""MFCC features in numpy alone: the contract between training and the Pi.

The arithmetic follows python_speech_features 0.6 (pre-emphasis, framing with
a zero-padded last frame, power spectrum / NFFT, triangular mel filterbank,
orthonormal DCT-II, sinusoidal lifter, optional log frame energy in c0, and its
regression deltas with edge padding), so a user can map one onto the other and
the tests can hold this module to it.
"""

import math
from typing import Any, NamedTuple, Self

import numpy as np

from serkit.edge.errors import SerkitError

WINDOWS = ("hamming", "hann", "rectangular")
_EPS = float(np.finfo(float).eps)  # python_speech_features' floor before log


class FeatureConfig(NamedTuple):
    """Everything that determines the features; saved beside every model. `checked()` refuses settings the
    features cannot be computed with: a spec's are checked as it is read, and every extractor checks its own."""

    sample_rate: int = 16000
    winlen: float = 0.025
    winstep: float = 0.01
    numcep: int = 13
    nfilt: int = 26
    nfft: int = 512
    lowfreq: float = 0.0
    highfreq: float | None = None
    preemph: float = 0.97
    ceplifter: int = 22
    append_energy: bool = True
    window: str = "hamming"
    delta_order: int = 0
    delta_width: int = 2

    def checked(self) -> Self:
        """This config, if the features can be computed with it; else a SerkitError naming the key."""
        _validate(self)
        return self

    @property
    def frame_len(self) -> int:
        return _round_half_up(self.winlen * self.sample_rate)

    @property
    def frame_step(self) -> int:
        return _round_half_up(self.winstep * self.sample_rate)

    def frames(self, seconds: float) -> int:
        """How many frame steps make `seconds` (at least one): a hop or a gate span in frames."""
        return max(1, round(seconds / self.winstep))

    @property
    def num_features(self) -> int:
        return self.numcep * (1 + self.delta_order)

    @property
    def lookahead_frames(self) -> int:
        """Frames of future audio a delta row needs before it can be emitted."""
        return self.delta_order * self.delta_width

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()

    @classmethod
    def from_dict(cls, data: Any, where: str = "features") -> Self:
        """Build from a dict (e.g. a model spec); every field is required.

        Missing keys are refused rather than defaulted: a default that changed
        between versions would silently make the Pi compute other features
        than training saw.
        """
        if not isinstance(data, dict):
            raise SerkitError(f"{where}: expected a table of feature settings, got {type(data).__name__}")
        names = cls._fields
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise SerkitError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(names)}")
        missing = [n for n in names if n not in data]
        if missing:
            raise SerkitError(f"{where}: missing key(s) {', '.join(missing)}")
        try:
            return cls(**data).checked()
        except SerkitError as exc:
            raise SerkitError(f"{where}: {exc}") from None


def _round_half_up(x: float) -> int:
    """x >= 0 rounded half up, exactly as python_speech_features' decimal route rounds it. A float's fractional
    part is exact in binary, so comparing it with 0.5 decides what floor(x + 0.5) gets wrong on rare floats."""
    whole = math.floor(x)
    return whole + (x - whole >= 0.5)


def _check_number(name: str, value: Any, kind: type, lo: float | None = None, hi: float | None = None) -> None:
    ok_types = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_types):
        raise SerkitError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise SerkitError(f"{name} must be finite, got {value!r}")
    if lo is not None and value < lo:
        raise SerkitError(f"{name} must be >= {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise SerkitError(f"{name} must be <= {hi}, got {value!r}")


def _validate(c: FeatureConfig) -> None:
    _check_number("sample_rate", c.sample_rate, int, 1000, 384000)
    _check_number("winlen", c.winlen, float, 1e-4, 1.0)
    _check_number("winstep", c.winstep, float, 1e-4, 1.0)
    if c.winlen <= 0 or c.winstep <= 0:
        raise SerkitError("winlen and winstep must be positive")
    _check_number("numcep", c.numcep, int, 1)
    _check_number("nfilt", c.nfilt, int, 1, 512)
    _check_number("nfft", c.nfft, int, 2, 65536)
    _check_number("lowfreq", c.lowfreq, float, 0)
    if c.highfreq is not None:
        _check_number("highfreq", c.highfreq, float, 0, c.sample_rate / 2)
    _check_number("preemph", c.preemph, float, 0, 0.9999)
    _check_number("ceplifter", c.ceplifter, int, 0)
    if not isinstance(c.append_energy, bool):
        raise SerkitError(f"append_energy must be true or false, got {c.append_energy!r}")
    if c.window not in WINDOWS:
        raise SerkitError(f"window must be one of {', '.join(WINDOWS)}, got {c.window!r}")
    _check_number("delta_order", c.delta_order, int, 0, 2)
    _check_number("delta_width", c.delta_width, int, 1, 10)
    if c.numcep > c.nfilt:
        raise SerkitError(f"numcep ({c.numcep}) must not exceed nfilt ({c.nfilt})")
    if c.frame_len < 2 or c.frame_step < 1:
        raise SerkitError(f"winlen/winstep give frames of {c.frame_len}/{c.frame_step} samples; too short")
    if c.frame_len > c.nfft:
        raise SerkitError(
            f"nfft ({c.nfft}) is smaller than the frame ({c.frame_len} samples = winlen * sample_rate); "
            "frames would be truncated"
        )
    high = c.sample_rate / 2 if c.highfreq is None else c.highfreq
    if c.lowfreq >= high:
        raise SerkitError(f"lowfreq ({c.lowfreq}) must be below highfreq ({high})")


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595 * np.log10(1 + np.asarray(hz) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700 * (10 ** (np.asarray(mel) / 2595.0) - 1)


def mel_points(config: FeatureConfig) -> np.ndarray:
    """The nfilt + 2 equally spaced mel points: each filter's lower edge, centre and upper edge."""
    c = config
    high = c.sample_rate / 2 if c.highfreq is None else c.highfreq
    return np.linspace(hz_to_mel(c.lowfreq), hz_to_mel(high), c.nfilt + 2)


def mel_filterbank(config: FeatureConfig) -> np.ndarray:
    """(nfilt, nfft // 2 + 1) triangular filters on FFT bins, as python_speech_features builds them."""
    c = config
    melpoints = mel_points(c)
    bins = np.floor((c.nfft + 1) * mel_to_hz(melpoints) / c.sample_rate)
    fb = np.zeros((c.nfilt, c.nfft // 2 + 1))
    i = np.arange(c.nfft // 2 + 1)
    for j in range(c.nfilt):
        lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
        rising = (i >= lo) & (i < mid)
        falling = (i >= mid) & (i < hi)
        fb[j, rising] = (i[rising] - lo) / (mid - lo)
        fb[j, falling] = (hi - i[falling]) / (hi - mid)
    return fb


def _window(config: FeatureConfig) -> np.ndarray:
    n = config.frame_len
    if config.window == "hamming":
        return np.hamming(n)
    if config.window == "hann":
        return np.hanning(n)
    return np.ones(n)


def dct_lifter_matrix(config: FeatureConfig) -> np.ndarray:
    """(nfilt, numcep): orthonormal DCT-II rows times the cepstral lifter, applied as one matmul."""
    n, k = config.nfilt, np.arange(config.numcep)
    d = np.cos(np.pi * k[:, None] * (2 * np.arange(n)[None, :] + 1) / (2 * n)) * math.sqrt(2.0 / n)
    d[0] *= math.sqrt(0.5)
    if config.ceplifter > 0:
        d *= (1 + (config.ceplifter / 2.0) * np.sin(np.pi * k / config.ceplifter))[:, None]
    return np.ascontiguousarray(d.T)


def num_frames(n_samples: int, config: FeatureConfig) -> int:
    """Frames a one-shot extraction yields for n_samples (the last one zero-padded)."""
    if n_samples <= 0:
        return 0
    if n_samples <= config.frame_len:
        return 1
    return 1 + math.ceil((n_samples - config.frame_len) / config.frame_step)


_BLOCK_FRAMES = 128  # frames per FFT batch: bounds the padded-frame buffer for long files


class FeatureExtractor:
    """MFCC (+ deltas) with window, filterbank and DCT precomputed once.

    `extract(signal)` is one-shot. `push(samples)` streams: it takes any number
    of samples and returns the rows that became complete; `flush()` ends the
    stream, returning the zero-padded last frame(s) and the rows whose deltas
    were waiting for look-ahead, then starts over. push* + flush equals extract
    for any chunking, because both run the same code on the same frames.

    Rows live in one assembly buffer indexed by frame number: static cepstra in
    the first numcep columns, each delta order in the next block, so a delta
    stage reads its input in place and a row leaves once its last block is set.
    """

    def __init__(self, config: FeatureConfig, dtype: type | np.dtype = np.float32) -> None:
        self.config = config.checked()
        self.dtype = np.dtype(dtype)
        self._flen = config.frame_len
        self._fstep = config.frame_step
        self._ncep = config.numcep
        self._nfeat = config.num_features
        self._preemph = config.preemph
        self._append_energy = config.append_energy
        self._win = _window(config)
        self._fb = np.ascontiguousarray(mel_filterbank(config).T / config.nfft)
        self._energy_scale = 1.0 / config.nfft
        self._dct = dct_lifter_matrix(config)
        n = config.delta_width
        self._dwidth = n
        self._dcoef = np.arange(-n, n + 1, dtype=np.float64) / (2.0 * sum(k * k for k in range(1, n + 1)))
        self._pad = np.zeros((_BLOCK_FRAMES, config.nfft))  # columns past frame_len stay zero
        self.reset()

    def reset(self) -> None:
        self._sbuf = np.empty(4 * self._flen + 4096)  # pre-emphasised samples not yet framed
        self._fill = 0
        self._prev: float | None = None  # last raw sample, for pre-emphasis across pushes
        self._n_samples = 0
        self._set_rows(np.empty((64, self._nfeat)))
        self._base = 0  # frame number of self._rows[0]
        self._done = [0] * (1 + self.config.delta_order)  # rows completed per level
        self._emitted = 0

    def extract(self, signal: np.ndarray) -> np.ndarray:
        """One-shot features of a whole signal: (frames, num_features)."""
        self.reset()
        head = self.push(signal)
        tail = self.flush()
        return np.concatenate([head, tail]) if len(head) else tail

    def push(self, samples: np.ndarray) -> np.ndarray:
        x = np.asarray(samples, dtype=np.float64).ravel()
        if x.size:
            self._append_samples(x)
            n = 0 if self._fill < self._flen else 1 + (self._fill - self._flen) // self._fstep
            if n:
                self._add_static(self._sbuf, n)
                used = n * self._fstep
                self._sbuf[: self._fill - used] = self._sbuf[used : self._fill]
                self._fill -= used
        return self._advance(final=False)

    def flush(self) -> np.ndarray:
        """End the stream: the zero-padded last frame(s) and all held-back delta rows; then reset."""
        if self._n_samples == 0:
            return np.empty((0, self._nfeat), self.dtype)
        remaining = num_frames(self._n_samples, self.config) - self._done[0]
        if remaining > 0:
            need = (remaining - 1) * self._fstep + self._flen
            buf = np.zeros(max(need, self._fill))
            buf[: self._fill] = self._sbuf[: self._fill]
            self._add_static(buf, remaining)
        out = self._advance(final=True)
        self.reset()
        return out

    def _append_samples(self, x: np.ndarray) -> None:
        end = self._fill + x.size
        if end > self._sbuf.size:
            grown = np.empty(max(end, 2 * self._sbuf.size))
            grown[: self._fill] = self._sbuf[: self._fill]
            self._sbuf = grown
        seg = self._sbuf[self._fill : end]
        c = self._preemph
        np.multiply(x[:-1], -c, out=seg[1:])
        seg[0] = 0.0 if self._prev is None else -c * self._prev
        seg += x
        self._prev = float(x[-1])
        self._fill = end
        self._n_samples += x.size

    def _add_static(self, buf: np.ndarray, n: int) -> None:
        """Cepstra of the first n frames of buf, into the assembly buffer."""
        row = self._reserve(n)
        flen, step = self._flen, self._fstep
        for start in range(0, n, _BLOCK_FRAMES):
            m = min(_BLOCK_FRAMES, n - start)
            # A strided view of overlapping frames; np.ndarray is ~10x cheaper than as_strided per call.
            frames = np.ndarray((m, flen), np.float64, buf, start * step * 8, (step * 8, 8))
            pad = self._pad[:m]
            np.multiply(frames, self._win, out=pad[:, :flen])
            spec = np.fft.rfft(pad)
            power = spec.real**2
            power += spec.imag**2
            fbe = power @ self._fb
            np.copyto(fbe, _EPS, where=fbe == 0)  # python_speech_features floors exact zeros (only) at eps
            np.log(fbe, out=fbe)
            cep = self._levels[0][row + start : row + start + m]
            np.matmul(fbe, self._dct, out=cep)
            if self._append_energy:
                energy = power.sum(axis=1)
                energy *= self._energy_scale
                np.copyto(energy, _EPS, where=energy == 0)
                np.log(energy, out=cep[:, 0])
        self._done[0] += n

    def _set_rows(self, rows: np.ndarray) -> None:
        self._rows = rows
        self._levels = [rows[:, i * self._ncep : (i + 1) * self._ncep] for i in range(1 + self.config.delta_order)]

    def _reserve(self, n: int) -> int:
        """Room for n more frames in the assembly buffer; returns the row of the next frame."""
        keep = self._emitted
        for level in range(1, len(self._done)):
            keep = min(keep, self._done[level] - self._dwidth)  # delta stages look back N rows
        keep = max(keep, 0)
        used = self._done[0] - self._base
        if used + n > len(self._rows):
            drop = keep - self._base
            live = self._rows[drop:used]
            if len(live) + n > len(self._rows):
                grown = np.empty((max(len(live) + n, 2 * len(self._rows)), self._nfeat))
                grown[: len(live)] = live
                self._set_rows(grown)
            else:
                self._rows[: len(live)] = live.copy()
            self._base = keep
        return self._done[0] - self._base

    def _advance(self, final: bool) -> np.ndarray:
        n = self._dwidth
        for level in range(1, len(self._done)):
            n_in, n_out = self._done[level - 1], self._done[level]
            limit = n_in if final else n_in - n
            if limit <= n_out or n_in == 0:
                continue
            lo, hi, m = n_out - n, limit + n, limit - n_out
            src = self._levels[level - 1]
            if lo >= 0 and hi <= n_in:
                window = src[lo - self._base : hi - self._base]
            else:  # edge padding: frame 0 repeats before the start, the last frame after the end
                window = src[np.clip(np.arange(lo, hi), 0, n_in - 1) - self._base]
            dst = self._levels[level][n_out - self._base : limit - self._base]
            if m == 1:
                np.matmul(self._dcoef, window, out=dst[0])
            else:
                np.multiply(window[0:m], self._dcoef[0], out=dst)
                for j in range(1, 2 * n + 1):
                    if j != n:
                        dst += self._dcoef[j] * window[j : j + m]
            self._done[level] = limit
        ready = self._done[-1]
        out = self._rows[self._emitted - self._base : ready - self._base].astype(self.dtype)
        self._emitted = ready
        return out


def mfcc(signal: np.ndarray, config: FeatureConfig, dtype: type | np.dtype = np.float32) -> np.ndarray:
    """One-shot MFCC (+ deltas per config) of a mono signal: (frames, config.num_features)."""
    return FeatureExtractor(config, dtype=dtype).extract(signal)


def delta(feat: np.ndarray, width: int) -> np.ndarray:
    """Regression deltas of a (frames, dims) array, edge-padded like python_speech_features.delta."""
    feat = np.asarray(feat, dtype=np.float64)
    if feat.ndim != 2:
        raise SerkitError(f"delta expects a (frames, dims) array, got shape {feat.shape}")
    n = len(feat)
    idx = np.clip(np.arange(-width, n + width), 0, max(n - 1, 0))
    padded = feat[idx]
    out = np.zeros_like(feat)
    for k in range(1, width + 1):
        out += k * (padded[width + k : width + k + n] - padded[width - k : width - k + n])
    return out / (2.0 * sum(k * k for k in range(1, width + 1)))
