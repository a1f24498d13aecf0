"""Streaming classification: audio chunks in, one result per window out.

Features are computed incrementally (FeatureExtractor.push), never recomputed for
the overlap between windows, and windows start where edge.windows puts them
offline, so a streamed file gives the same probabilities window by window as
`clip_windows(spec.normalise(mfcc(signal)))` run through the same model.
"""

import time
from typing import NamedTuple

import numpy as np

from serkit.edge.features import FeatureExtractor
from serkit.edge.runtime import TFLiteModel
from serkit.edge.spec import ModelSpec

_EPS = 1e-12


class GateSettings(NamedTuple):
    """Energy gate: a window is speech when enough of its frames stand out from the noise floor."""

    enabled: bool = True
    floor_dbfs: float = -55.0  # quieter than this is silence, whatever the noise floor
    snr_db: float = 10.0  # a frame is active this far above the tracked noise floor
    active_fraction: float = 0.2  # share of active frames a window needs
    floor_s: float = 10.0  # the noise floor is a low percentile of the last floor_s of frames
    floor_percentile: float = 10.0


class WindowResult(NamedTuple):
    """One classification window: where it lies in the stream, whether it held speech, and what the model said."""

    seq: int  # window number since the stream began
    start_s: float  # window start, seconds of audio since the stream began
    end_s: float
    speech: bool  # passed the gate
    level_dbfs: float  # RMS level of the window
    probabilities: np.ndarray | None  # None for gated windows: silence is not classified
    floor_dbfs: float = -120.0  # the tracked noise floor under the window
    threshold_dbfs: float = -120.0  # a frame above this counted as active


class FrameLevels:
    """RMS level (dBFS) of each frame step's block of samples, and the noise floor under them."""

    def __init__(self, block: int, keep_blocks: int) -> None:
        self.block = block
        self.keep = keep_blocks
        self._rem = np.empty(0)
        self._levels = np.empty(0)
        self._base = 0  # block number of _levels[0]

    def push(self, samples: np.ndarray) -> None:
        x = np.concatenate([self._rem, np.asarray(samples, dtype=np.float64).ravel()])
        n = x.size // self.block
        self._rem = x[n * self.block :]
        if n:
            power = np.mean(x[: n * self.block].reshape(n, self.block) ** 2, axis=1)
            self._levels = np.concatenate([self._levels, 10 * np.log10(power + _EPS)])
            extra = self._levels.size - self.keep
            if extra > 0:
                self._levels = self._levels[extra:]
                self._base += extra

    def flush(self) -> None:
        """The trailing partial block counts as a block, as the zero-padded last frame does."""
        if self._rem.size:
            padded = np.zeros(self.block)
            padded[: self._rem.size] = self._rem
            self._rem = np.empty(0)
            self.push(padded)

    def window(self, first: int, count: int, history: int) -> tuple[np.ndarray, np.ndarray]:
        """(levels of blocks first..first+count-1, levels of the `history` blocks ending there)."""
        end = first + count - self._base
        lo = max(0, first - self._base)
        return self._levels[lo : max(lo, end)], self._levels[max(0, end - history) : max(0, end)]


def percentile(x: np.ndarray, q: float) -> float:
    """np.percentile(x, q) (linear interpolation), the same float, by partition alone: np.percentile's first
    call imports numpy.ma, a tenth of numpy's own import time, into every agent's start-up."""
    k = (x.size - 1) * q / 100.0
    lo = int(np.floor(k))
    hi = min(lo + 1, x.size - 1)
    part = np.partition(x, [lo, hi])
    a, b, t = float(part[lo]), float(part[hi]), k - lo
    # numpy's _lerp: from the nearer end, so the result is exact at t = 0 and t = 1.
    return b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t


def gate_window(levels: np.ndarray, history: np.ndarray, g: GateSettings) -> tuple[bool, float, float, float]:
    """(speech?, window level, noise floor, activity threshold), levels in dBFS, from the window's block
    levels and the recent history."""
    floor = percentile(history, g.floor_percentile) if history.size else g.floor_dbfs
    threshold = max(g.floor_dbfs, floor + g.snr_db)
    if levels.size == 0:
        return False, -120.0, floor, threshold
    level = float(10 * np.log10(np.mean(10 ** (levels / 10)) + _EPS))
    if not g.enabled:
        return True, level, floor, threshold
    active = float(np.mean(levels > threshold))
    return level >= g.floor_dbfs and active >= g.active_fraction, level, floor, threshold


class StreamClassifier:
    """Push audio at the model's sample rate; get a WindowResult every hop."""

    def __init__(self, model: TFLiteModel, spec: ModelSpec, hop_frames: int, gate: GateSettings) -> None:
        self.model = model
        self.spec = spec
        self.hop = hop_frames
        self.gate = gate
        self.T = spec.frames_per_window
        cfg = spec.features
        self._extractor = FeatureExtractor(cfg)
        self._step_s = cfg.winstep
        self._history_blocks = cfg.frames(gate.floor_s)
        self._levels = FrameLevels(cfg.frame_step, self._history_blocks + self.T + hop_frames)
        self.feature_ms = 0.0  # totals, for stats and benchmarks
        self.inference_ms = 0.0
        self.windows = 0
        self._reset_frames()

    def _reset_frames(self) -> None:
        self._frames = np.empty((self.T + self.hop + 64, self.spec.features.num_features), np.float32)
        self._n = 0  # rows in _frames
        self._base = 0  # frame number of _frames[0]
        self._next = 0  # frame number of the next window's start
        self._seq = 0

    def push(self, samples: np.ndarray) -> list[WindowResult]:
        t0 = time.perf_counter()
        rows = self._extractor.push(samples)
        self._levels.push(samples)
        self._append(rows)
        self.feature_ms += (time.perf_counter() - t0) * 1e3
        return self._emit()

    def flush(self) -> list[WindowResult]:
        """End of stream: the last frames, and one zero-padded window if the stream was shorter than one."""
        t0 = time.perf_counter()
        rows = self._extractor.flush()
        self._levels.flush()
        self._append(rows)
        self.feature_ms += (time.perf_counter() - t0) * 1e3
        out = self._emit()
        total = self._base + self._n
        if self._seq == 0 and total > 0:
            window = np.zeros((self.T, self._frames.shape[1]), np.float32)
            window[: self._n] = self._frames[: self._n]
            out.append(self._classify(window, 0))
        elif self._seq > 0 and self._next - self.hop + self.T < total:
            # The closing window of edge.windows.window_starts: the frames after the last hop.
            start = total - self.T
            i = start - self._base
            out.append(self._classify(self._frames[i : i + self.T], start))
        self._reset_frames()
        return out

    def _append(self, rows: np.ndarray) -> None:
        if not len(rows):
            return
        rows = self.spec.normalise(rows)
        need = self._n + len(rows)
        if need > len(self._frames):
            grown = np.empty((max(need, 2 * len(self._frames)), self._frames.shape[1]), np.float32)
            grown[: self._n] = self._frames[: self._n]
            self._frames = grown
        self._frames[self._n : need] = rows
        self._n = need

    def _emit(self) -> list[WindowResult]:
        out = []
        while self._next + self.T <= self._base + self._n:
            i = self._next - self._base
            out.append(self._classify(self._frames[i : i + self.T], self._next))
            self._next += self.hop
        # Drop frames no future window needs; the closing window may start anywhere after the last one.
        keep_from = self._next - self.hop if self._seq else self._next
        drop = min(keep_from - self._base, self._n)
        if drop > 0:
            self._frames[: self._n - drop] = self._frames[drop : self._n]
            self._n -= drop
            self._base += drop
        return out

    def _classify(self, window: np.ndarray, start: int) -> WindowResult:
        levels, history = self._levels.window(start, self.T, self._history_blocks)
        speech, level, floor, threshold = gate_window(levels, history, self.gate)
        probs = None
        if speech:
            t0 = time.perf_counter()
            probs = self.model.predict_window(window)
            self.inference_ms += (time.perf_counter() - t0) * 1e3
        result = WindowResult(
            seq=self._seq,
            start_s=start * self._step_s,
            end_s=start * self._step_s + self.spec.window_s,
            speech=speech,
            level_dbfs=round(level, 1),
            probabilities=probs,
            floor_dbfs=round(floor, 1),
            threshold_dbfs=round(threshold, 1),
        )
        self._seq += 1
        self.windows += 1
        return result
